"""When a check alerts: pure decisions over (spec, watch, runs, now), for pings and for deadlines.

- A start (or the first step or finish of a run whose start was not seen) satisfies the pending
  expectation when it comes no earlier than start_grace before it (at most half-way back to the previous
  schedule time); the next expectation is the next schedule time after it (cron) or start + period.
- At the start deadline with no such start, a `missed` run is recorded. Expectations that fell due while
  heartwatch was down are coalesced into that one missed run and one alert, never one per slot.
- A running run past its finish or step deadline becomes `timed_out`; each rid run on its own.
- Every bad run (failed, timed_out, interrupted, missed) extends the streak; from `alert_after` on, each
  bad run alerts and the first one marks the check down. A good run after down alerts `recovered`.
  While down, a reminder goes out every `remind_every`. A too-fast finish alerts but is not "down".
- A paused check records runs but raises nothing and expects nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from croniter import croniter

from heartwatch.core import schedule
from heartwatch.core.model import CheckSpec, Run, RunFlag, RunState, Watch

#: Bound on how many missed expectations one evaluation walks through before jumping to `now`.
MAX_COALESCE = 10_000


class AlertKind(StrEnum):
    MISSED = "missed"
    TIMED_OUT = "timed_out"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    TOO_FAST = "too_fast"
    RECOVERED = "recovered"
    REMINDER = "reminder"


_BAD_KIND = {RunState.FAILED: AlertKind.FAILED, RunState.TIMED_OUT: AlertKind.TIMED_OUT,
             RunState.INTERRUPTED: AlertKind.INTERRUPTED, RunState.MISSED: AlertKind.MISSED}


@dataclass(frozen=True)
class AlertIntent:
    kind: AlertKind
    run: Run | None
    at: datetime
    down_since: datetime | None = None  # for recovered and reminder: how long it has been down
    missed: int = 1  # for missed: how many expected starts the one missed run stands for
    expected_at: datetime | None = None  # for missed: the expected start


@dataclass
class Decision:
    watch: Watch
    runs: list[Run] = field(default_factory=list)  # runs changed (timed out) or new (missed)
    alerts: list[AlertIntent] = field(default_factory=list)


def fresh_watch(spec: CheckSpec, now: datetime, previous: Watch | None = None) -> Watch:
    """The watch for a new, changed or resumed check: expect the next start from `now`; keep the streak."""
    expected, deadline = _fresh_expectation(spec.schedule, spec.period, spec.timezone, spec.start_grace, now)
    if previous is None:
        return Watch(expected_at=expected, start_deadline=deadline)
    return replace(previous, expected_at=expected, start_deadline=deadline)


@functools.lru_cache(maxsize=4096)
def _fresh_expectation(cron: str | None, period: timedelta | None, timezone: str, start_grace: timedelta,
                       now: datetime) -> tuple[datetime | None, datetime | None]:
    # Remembered: the checks created at a first start (100,000 of them) share `now` and, mostly, a schedule.
    spec = CheckSpec(slug="", schedule=cron, period=period, timezone=timezone, start_grace=start_grace)
    expected = schedule.next_expectation(spec, None, None, now)
    return expected, schedule.start_deadline(spec, expected) if expected else None


def _previous_slot(spec: CheckSpec, expected: datetime) -> datetime | None:
    if spec.schedule is None:
        return None
    zone = ZoneInfo(spec.timezone)
    prev: datetime = croniter(spec.schedule, expected.astimezone(zone)).get_prev(datetime)
    return prev.astimezone(UTC)


def satisfies(spec: CheckSpec, expected: datetime, started_at: datetime) -> bool:
    """Does a start at `started_at` stand for the expected start (rather than an extra, early run)?"""
    if spec.period is not None:
        return True
    early = spec.start_grace if spec.start_grace > timedelta(minutes=1) else timedelta(minutes=1)
    prev = _previous_slot(spec, expected)
    if prev is not None:
        early = min(early, (expected - prev) / 2)
    return started_at >= expected - early


def _expect_after(spec: CheckSpec, watch: Watch, start: datetime, now: datetime) -> None:
    expected = schedule.next_expectation(spec, watch.expected_at, start, now)
    watch.expected_at = expected
    watch.start_deadline = schedule.start_deadline(spec, expected) if expected else None


def after_ping(spec: CheckSpec, watch: Watch, changed: list[Run], now: datetime,
               remind_every: timedelta, paused: bool = False) -> Decision:
    """What the runs a ping changed mean for the watch and for alerts."""
    w = replace(watch)
    decision = Decision(watch=w)
    for run in changed:
        opened_now = run.started_at == now and run.state is not RunState.MISSED
        if opened_now and not paused:
            pending = w.expected_at
            if spec.period is not None or (pending is not None and satisfies(spec, pending, run.started_at)):
                _expect_after(spec, w, run.started_at, now)
        if run.ended_at is None or run.ended_at != now or paused:
            continue  # only runs this ping closed count as outcomes
        if run.state is RunState.OK:
            if RunFlag.TOO_FAST in run.flags:
                decision.alerts.append(AlertIntent(AlertKind.TOO_FAST, run, now))
            _good(w, run, now, decision)
        elif run.state in _BAD_KIND and run.state is not RunState.TIMED_OUT:  # timeouts alert in on_due
            _bad(spec, w, run, _BAD_KIND[run.state], now, remind_every, decision)
    return decision


def _good(w: Watch, run: Run, now: datetime, decision: Decision) -> None:
    w.bad_streak = 0
    if w.down_since is not None:
        decision.alerts.append(AlertIntent(AlertKind.RECOVERED, run, now, down_since=w.down_since))
        w.down_since = None
        w.next_reminder = None


def _bad(spec: CheckSpec, w: Watch, run: Run, kind: AlertKind, now: datetime, remind_every: timedelta,
         decision: Decision, missed: int = 1, expected_at: datetime | None = None) -> None:
    w.bad_streak += 1
    if w.bad_streak < spec.alert_after:
        return
    decision.alerts.append(AlertIntent(kind, run, now, down_since=w.down_since, missed=missed,
                                       expected_at=expected_at))
    if w.down_since is None:
        w.down_since = now
        w.next_reminder = now + remind_every if remind_every > timedelta(0) else None


def on_due(check_id: int, spec: CheckSpec, watch: Watch, open_runs: list[Run], now: datetime,
           remind_every: timedelta) -> Decision:
    """Everything that has fallen due by `now`: timeouts, a missed start, a reminder."""
    w = replace(watch)
    decision = Decision(watch=w)
    for run in open_runs:
        deadline = schedule.run_deadline(spec, run)
        if deadline is not None and deadline <= now:
            timed_out = run.copy()
            timed_out.state = RunState.TIMED_OUT
            decision.runs.append(timed_out)
            _bad(spec, w, timed_out, AlertKind.TIMED_OUT, now, remind_every, decision)

    if w.start_deadline is not None and w.expected_at is not None and w.start_deadline <= now:
        expected, deadline = w.expected_at, w.start_deadline
        missed = Run(check_id=check_id, state=RunState.MISSED, started_at=expected, ended_at=deadline)
        count = 1
        _expect_after(spec, w, expected, now)
        while w.start_deadline is not None and w.start_deadline <= now and count < MAX_COALESCE:
            count += 1
            _expect_after(spec, w, w.expected_at or now, now)
        if w.start_deadline is not None and w.start_deadline <= now:  # a very long outage: start afresh
            w.expected_at = schedule.next_expectation(spec, None, None, now)
            w.start_deadline = schedule.start_deadline(spec, w.expected_at) if w.expected_at else None
        decision.runs.append(missed)
        _bad(spec, w, missed, AlertKind.MISSED, now, remind_every, decision, missed=count, expected_at=expected)

    if w.down_since is not None and w.next_reminder is not None and w.next_reminder <= now:
        decision.alerts.append(AlertIntent(AlertKind.REMINDER, None, now, down_since=w.down_since))
        while w.next_reminder <= now:  # after an outage: one reminder, then back on the beat
            w.next_reminder += remind_every
    return decision


def next_deadline(watch: Watch, run_deadlines: list[datetime | None]) -> datetime | None:
    """When the scheduler must look at this check again."""
    times = [t for t in (watch.start_deadline, watch.next_reminder, *run_deadlines) if t is not None]
    return min(times) if times else None
