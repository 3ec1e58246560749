"""A check's status in one word, derived from its runs and its expectation. Pure."""

from __future__ import annotations

from datetime import datetime

from heartwatch.core.model import BAD_STATES, Check, CheckStatus, Run, RunState, Watch

#: The overview's order: what needs attention first.
SEVERITY = {CheckStatus.DOWN: 0, CheckStatus.LATE: 1, CheckStatus.RUNNING: 2, CheckStatus.NEW: 3,
            CheckStatus.UP: 4, CheckStatus.PAUSED: 5}


def check_status(check: Check, last_run: Run | None, now: datetime, watch: Watch | None = None) -> CheckStatus:
    """`watch`: the scheduler's expectation (next expected start and start + grace), when there is one.

    new: nothing seen and nothing overdue yet; running: the newest run is open; late: a start is overdue but
    still inside its grace; down: the newest run is bad, or the watch says the check has not recovered yet
    (recover_after good runs; a timed-out run finished late); up: the newest run finished well.
    The watch's down state is what the alerts follow, so an alert never contradicts the status.
    """
    return status_of_parts(check.paused, last_run.state if last_run else None, now,
                           watch.expected_at if watch else None, watch.start_deadline if watch else None,
                           down=watch is not None and watch.down_since is not None)


def status_of_parts(paused: bool, last_state: RunState | None, now: datetime, expected_at: datetime | None,
                    deadline: datetime | None, down: bool = False) -> CheckStatus:
    """`check_status` from the few values it looks at (the overview reads only these for every check)."""
    if paused:
        return CheckStatus.PAUSED
    if last_state is RunState.RUNNING:
        return CheckStatus.RUNNING
    if last_state in BAD_STATES or down:
        return CheckStatus.DOWN
    if expected_at is not None and expected_at <= now and (deadline is None or now < deadline):
        return CheckStatus.LATE
    if last_state is None:
        return CheckStatus.NEW
    return CheckStatus.UP


def matches(query: str, slug: str, name: str, tags: tuple[str, ...]) -> bool:
    """The overview's search box: `query` (lower case) is part of the check's slug, display name or one of its tags."""
    return query in slug or query in name.lower() or any(query in t.lower() for t in tags)
