"""The engine: the scheduler that wakes when a deadline falls due, and the sender that delivers alerts via Apprise."""
