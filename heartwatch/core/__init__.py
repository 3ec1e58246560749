"""The pure core: checks, schedules, durations, run transitions, alert decisions and their words.

Nothing here does I/O or reads the clock: every function that needs the time takes `now`. The other rooms
(store, engine, web, cli) import from here; the core imports nothing of theirs.
"""
