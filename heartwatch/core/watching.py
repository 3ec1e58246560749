"""When a check alerts: pure decisions over (spec, watch, what changed, now, hold), for pings and deadlines.

Expectations:
- A start (or the first step or finish of a run whose start was not seen) satisfies the pending
  expectation when it comes no earlier than start_grace before it (at most half-way back to the previous
  schedule time); the next expectation is the next schedule time after it (cron) or start + period.
- At the start deadline with no such start, a `missed` run is recorded; expectations that fell due while
  heartwatch was down are coalesced into that one run. While the check is down, further missed starts are
  folded into its newest missed run (a count and the last time), not a run each.
- A running run past its finish or step deadline becomes `timed_out`. Without max_runtime, a run still
  open when the next expected start's grace ends (and no new start came) is `timed_out` too, "still
  running when the next run was due", instead of that start counting as missed.

Alerts follow the check, not each run (README "Alert rules"):
- The watch keeps the truth (`down_since`, `trouble`: what is wrong) and what the last alert said (`told`).
  Bad runs (failed, timed_out, interrupted, missed) extend `bad_streak`; from `alert_after` on the check is
  down. Good runs extend `good_streak`; from `recover_after` on a down check is up again.
- An alert goes out when the truth differs from what was told: down (or down for another reason: another
  kind, exit status or step), or recovered. The same trouble again is not news; it is summed up in `since`,
  and a reminder every `remind_every` while down says so.
- A hold (paused, a maintenance window, a `depends_on` parent that is down, paused or in maintenance, or
  recovered less than the child's start_grace ago) records the truth but sends nothing; when it ends, what is
  still true goes out once. Muted: no reminders. A check's down alerts name the checks that depend on it.
- `after`: a check expected within start_grace after each good finish of its parent (`after_parent_run`);
  after a parent run that did not finish well, nothing is expected ("not expected, parent failed").
- At most ALERTS_PER_HOUR alerts per check in any hour; past that, the truth waits until the hour allows one
  more, which then says what is true at that moment.
- A paused check expects nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from croniter import croniter

from heartwatch.core import schedule
from heartwatch.core.model import CheckSpec, Run, RunFlag, RunState, Since, Trouble, Watch

#: Bound on how many missed expectations one evaluation walks through before jumping to `now`.
MAX_COALESCE = 10_000
#: Alerts one check may send in any hour, whatever its pings do.
ALERTS_PER_HOUR = 10
_HOUR = timedelta(hours=1)


class AlertKind(StrEnum):
    MISSED = "missed"
    TIMED_OUT = "timed_out"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    TOO_FAST = "too_fast"
    RECOVERED = "recovered"
    REMINDER = "reminder"


class Hold(StrEnum):
    """Why a check's alerts are held back (its runs are still judged)."""

    PAUSED = "paused"
    MAINTENANCE = "maintenance"
    PARENT = "parent"  # a depends_on parent is down, paused or in maintenance (or recovered within the grace)


class TimeoutLimit(StrEnum):
    """Which limit a timed-out run passed."""

    MAX_RUNTIME = "max_runtime"
    STEP_MAX = "step_max"
    NEXT_RUN_DUE = "next_run_due"


_BAD_KIND = {RunState.FAILED: AlertKind.FAILED, RunState.TIMED_OUT: AlertKind.TIMED_OUT,
             RunState.INTERRUPTED: AlertKind.INTERRUPTED, RunState.MISSED: AlertKind.MISSED}


@dataclass(frozen=True)
class Context:
    """What the shell knows about the check beside its spec and watch."""

    remind_every: timedelta = timedelta(0)  # resolved: the check's own, else the server's; 0 = never
    hold: Hold | None = None
    hold_until: datetime | None = None  # when the hold ends, if known (a maintenance window)
    muted: bool = False
    waiting_on: tuple[str, ...] = ()  # Hold.PARENT: the parents (slugs) holding it back
    dependents: tuple[str, ...] = ()  # the checks that depend on this one (display names), for its down alerts


@dataclass(frozen=True)
class AlertIntent:
    kind: AlertKind
    run: Run | None
    at: datetime
    down_since: datetime | None = None  # for recovered and reminder: how long it has been down
    missed: int = 1  # for missed: how many expected starts the one missed run stands for
    expected_at: datetime | None = None  # for missed: the expected start
    trouble: Trouble | None = None  # for reminders and catch-ups: what is wrong
    since: Since | None = None  # what happened since the previous alert (reminders, catch-ups)
    limit: TimeoutLimit | None = None  # for timed_out: which limit was passed
    previous: Trouble | None = None  # for a change while down: what was wrong before
    dependents: tuple[str, ...] = ()  # for down alerts: the checks that depend on this one, held back with it
    waited_on: int | None = None  # for missed of an `after` check: the parent's run it was expected after


@dataclass
class Decision:
    watch: Watch
    runs: list[Run] = field(default_factory=list)  # runs changed (timed out, folded) or new (missed)
    alerts: list[AlertIntent] = field(default_factory=list)
    recovered: bool = False  # the check came back up (a mute ends here)


def resolve_remind_every(spec: CheckSpec, server_default: timedelta) -> timedelta:
    return server_default if spec.remind_every is None else spec.remind_every


def fresh_watch(spec: CheckSpec, now: datetime, previous: Watch | None = None) -> Watch:
    """The watch for a new, changed or resumed check: expect the next start from `now`; keep the rest."""
    expected, deadline = _fresh_expectation(spec.schedule, spec.period, spec.timezone, spec.start_grace, now)
    if (spec.after is not None and previous is not None and previous.expected_at is not None
            and schedule.start_deadline(spec, previous.expected_at) > now):
        # An `after` check's expectation comes from its parent's finish, not from `now`: a change keeps it while
        # it is pending (a resume long after it passed expects nothing until the parent finishes again).
        expected, deadline = previous.expected_at, schedule.start_deadline(spec, previous.expected_at)
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
    return _previous_cron(spec.schedule, spec.timezone, expected)


@functools.lru_cache(maxsize=8192)
def _previous_cron(cron: str, timezone: str, expected: datetime) -> datetime:
    # Remembered: every start of a cron check asks it about the same pending expectation until that moves, and
    # a croniter step was a sixth of a ping's CPU (bench/pings.py, py-spy).
    prev: datetime = croniter(cron, expected.astimezone(ZoneInfo(timezone))).get_prev(datetime)
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


# --- the decisions --------------------------------------------------------------------------------------


def after_ping(spec: CheckSpec, watch: Watch, opened: Run | None, closed: list[Run], now: datetime,
               ctx: Context) -> Decision:
    """What one ping's changes (the run it opened, the runs it closed: `runs.Applied`) mean for alerts."""
    w = replace(watch)
    decision = Decision(watch=w)
    if opened is not None and spec.after is not None:
        w.parent_failed = False  # it runs after all: its runs are judged as any check's
    if opened is not None and ctx.hold is not Hold.PAUSED:
        pending = w.expected_at
        if spec.period is not None or (pending is not None and satisfies(spec, pending, opened.started_at)):
            _expect_after(spec, w, opened.started_at, now)
    for run in closed:
        if run.state is RunState.OK:
            if RunFlag.TOO_FAST in run.flags and not _held(w, now, ctx):
                _send(w, decision, AlertIntent(AlertKind.TOO_FAST, run, now))
            _judge_good(spec, w, run, now, ctx, decision)
        elif run.state in _BAD_KIND:
            _judge_bad(spec, w, run, now, ctx, decision)
    _publish(w, now, ctx, decision, None)
    return decision


def on_change(spec: CheckSpec, watch: Watch, now: datetime, ctx: Context, expect: bool = True) -> Decision:
    """A check created, changed, paused, resumed, muted or put in maintenance: expect afresh (unless `expect`
    is False); when nothing holds it any more, say once what is still true."""
    w = fresh_watch(spec, now, watch) if expect else replace(watch)
    if w.next_reminder is None and w.down_since is not None and w.told is not None:
        _plan_reminder(w, now, ctx)
    decision = Decision(watch=w)
    _publish(w, now, ctx, decision, None)
    return decision


def on_due(check_id: int, spec: CheckSpec, watch: Watch, open_runs: list[Run], now: datetime, ctx: Context,
           newest: Run | None = None) -> Decision:
    """Everything that has fallen due by `now`: timeouts, a missed start, a reminder, a hold that ended.

    `newest`: the check's newest run, when the check is down and a start is due (a further missed start
    folds into it when it is a missed run).
    """
    w = replace(watch)
    decision = Decision(watch=w)
    for run in open_runs:
        if run.state is not RunState.RUNNING:
            continue
        deadline = schedule.run_deadline(spec, run)
        if deadline is not None and deadline <= now:
            _time_out(spec, w, run, now, ctx, decision, _limit_passed(spec, run, deadline))

    if w.start_deadline is not None and w.expected_at is not None and w.start_deadline <= now:
        expected, deadline = w.expected_at, w.start_deadline
        count = 1
        _expect_after(spec, w, expected, now)
        while w.start_deadline is not None and w.start_deadline <= now and count < MAX_COALESCE:
            count += 1
            _expect_after(spec, w, w.expected_at or now, now)
        if w.start_deadline is not None and w.start_deadline <= now:  # a very long outage: start afresh
            w.expected_at = schedule.next_expectation(spec, None, None, now)
            w.start_deadline = schedule.start_deadline(spec, w.expected_at) if w.expected_at else None
        # Without max_runtime, a run still open when this start was due explains the missing start: it hangs.
        done = {(r.rid, r.started_at) for r in decision.runs}
        hung = [r for r in open_runs if r.state is RunState.RUNNING and r.started_at < expected
                and spec.max_runtime is None and (r.rid, r.started_at) not in done]
        # A run that timed out and is still open (no finish yet) explains the later missing starts as well.
        still_open = any(r.state is RunState.TIMED_OUT and r.ended_at is None and r.started_at < expected
                         for r in open_runs) or bool(done)
        if hung:
            for run in hung:
                _time_out(spec, w, run, now, ctx, decision, TimeoutLimit.NEXT_RUN_DUE)
        elif still_open:
            w.since = replace(w.since, missed=w.since.missed + count)
        elif (w.down_since is not None and newest is not None and newest.state is RunState.MISSED
              and newest.id is not None):
            folded = newest.copy()  # down already, and nothing ran since: the same outage goes on
            folded.missed += count
            folded.ended_at = deadline
            decision.runs.append(folded)
            _judge_bad(spec, w, folded, now, ctx, decision, missed=count, expected_at=expected)
        else:
            missed = Run(check_id=check_id, state=RunState.MISSED, started_at=expected, ended_at=deadline,
                         missed=count)
            decision.runs.append(missed)
            _judge_bad(spec, w, missed, now, ctx, decision, missed=count, expected_at=expected)
    _publish(w, now, ctx, decision, None)
    return decision


def after_parent_run(spec: CheckSpec, watch: Watch, parent: Run) -> Watch:
    """An `after` check's parent run ended (closed by a ping, or timed out or missed by the scheduler): a good
    finish makes the next start due at its end, within start_grace; any other end expects nothing."""
    w = replace(watch, parent_run=parent.id)
    if parent.state is RunState.OK and parent.ended_at is not None:
        w.expected_at, w.start_deadline = parent.ended_at, schedule.start_deadline(spec, parent.ended_at)
        w.parent_failed = False
    else:
        w.expected_at = w.start_deadline = None
        w.parent_failed = True
    return w


def next_deadline(watch: Watch, run_deadlines: list[datetime | None], ctx: Context | None = None) -> datetime | None:
    """When the scheduler must look at this check again: a start or run deadline, a reminder, or the moment
    a held alert may go out (the hourly limit frees up, a maintenance window ends). Never a time already
    past that could not fire: that would wake the scheduler in a loop."""
    times = [watch.start_deadline, *run_deadlines]
    # A resume looks at a paused check again, and a parent's recovery at the children it held back.
    if ctx is None or not (ctx.hold is Hold.PAUSED or (ctx.hold is Hold.PARENT and ctx.hold_until is None)):
        gate = [t for t in (_limit_frees(watch), ctx.hold_until if ctx is not None and ctx.hold else None)
                if t is not None]
        if _unsaid(watch) and gate:
            times.append(max(gate))
        if watch.next_reminder is not None and (ctx is None or not ctx.muted):
            times.append(max([watch.next_reminder, *gate]))
    found = [t for t in times if t is not None]
    return min(found) if found else None


# --- the rules -------------------------------------------------------------------------------------------


def _limit_passed(spec: CheckSpec, run: Run, deadline: datetime) -> TimeoutLimit:
    step = schedule.step_deadline(spec, run)
    return TimeoutLimit.STEP_MAX if step is not None and step[0] == deadline else TimeoutLimit.MAX_RUNTIME


def _time_out(spec: CheckSpec, w: Watch, run: Run, now: datetime, ctx: Context, decision: Decision,
              limit: TimeoutLimit) -> None:
    timed_out = run.copy()
    timed_out.state = RunState.TIMED_OUT
    if limit is TimeoutLimit.NEXT_RUN_DUE:
        timed_out.flags.add(RunFlag.NEXT_RUN_DUE)
    decision.runs.append(timed_out)
    _judge_bad(spec, w, timed_out, now, ctx, decision, limit=limit)


def trouble_of(run: Run) -> Trouble:
    step = run.last_step
    kind = _BAD_KIND[run.state]
    return Trouble(kind.value, run.exit_code if kind is AlertKind.FAILED else None,
                   step.name if step and kind is not AlertKind.MISSED else None)


def _judge_bad(spec: CheckSpec, w: Watch, run: Run, now: datetime, ctx: Context, decision: Decision,
               missed: int = 1, expected_at: datetime | None = None, limit: TimeoutLimit | None = None) -> None:
    trouble = trouble_of(run)
    w.bad_streak += 1
    w.good_streak = 0
    s = w.since
    w.since = replace(s, bad=s.bad + (run.state is not RunState.MISSED),
                      missed=s.missed + (missed if run.state is RunState.MISSED else 0), last=trouble, last_at=now)
    if w.bad_streak < spec.alert_after and w.down_since is None:
        return
    if w.down_since is None:
        w.down_since = now
    w.trouble = trouble
    intent = AlertIntent(_BAD_KIND[run.state], run, now, down_since=w.down_since, missed=missed,
                         expected_at=expected_at, trouble=trouble, limit=limit, previous=w.told,
                         waited_on=w.parent_run if spec.after is not None and run.state is RunState.MISSED else None)
    _publish(w, now, ctx, decision, intent)


def _judge_good(spec: CheckSpec, w: Watch, run: Run, now: datetime, ctx: Context, decision: Decision) -> None:
    w.bad_streak = 0
    w.good_streak += 1
    w.since = replace(w.since, good=w.since.good + 1)
    if w.down_since is None or w.good_streak < spec.recover_after:
        return
    down_since = w.down_since
    w.down_since, w.trouble, w.next_reminder = None, None, None
    w.released_at = now  # its depends_on children are held back until their own grace has passed since
    decision.recovered = True
    if w.told is None:  # held all along: nothing was said, nothing to take back
        return
    _publish(w, now, ctx, decision, AlertIntent(AlertKind.RECOVERED, run, now, down_since=down_since,
                                                since=w.since, previous=w.told))


def _unsaid(w: Watch) -> bool:
    """Does the truth differ from what the last alert said?"""
    if w.down_since is None:
        return w.told is not None
    return w.trouble is not None and w.told != w.trouble


def _limit_frees(w: Watch) -> datetime | None:
    """When the hourly limit allows the next alert, if it is reached."""
    if len(w.recent) < ALERTS_PER_HOUR:
        return None
    return w.recent[-ALERTS_PER_HOUR] + _HOUR


def _held(w: Watch, now: datetime, ctx: Context) -> bool:
    if ctx.hold is not None:
        return True
    frees = _limit_frees(w)
    return frees is not None and frees > now


def _send(w: Watch, decision: Decision, intent: AlertIntent) -> None:
    decision.alerts.append(intent)
    cutoff = intent.at - _HOUR
    w.recent = (*[t for t in w.recent if t > cutoff][-(ALERTS_PER_HOUR - 1):], intent.at)


def _plan_reminder(w: Watch, now: datetime, ctx: Context) -> None:
    w.next_reminder = now + ctx.remind_every if ctx.remind_every > timedelta(0) else None


def _publish(w: Watch, now: datetime, ctx: Context, decision: Decision, intent: AlertIntent | None) -> None:
    """Send what the truth says and the last alert did not, unless held; else a reminder when one is due.

    `intent`: the alert for the run just judged, if it is the news (its own words: step, exit status,
    output); a catch-up after a hold or the hourly limit speaks from the watch instead.
    """
    pending: AlertIntent
    if _unsaid(w):
        if intent is not None and (intent.trouble == w.trouble if w.down_since is not None
                                   else intent.kind is AlertKind.RECOVERED):
            pending = intent
        elif w.down_since is None:
            pending = AlertIntent(AlertKind.RECOVERED, None, now, since=w.since, previous=w.told)
        else:
            assert w.trouble is not None
            pending = AlertIntent(AlertKind(w.trouble.kind), None, now, down_since=w.down_since, trouble=w.trouble,
                                  since=w.since, previous=w.told)
    elif (w.down_since is not None and w.told is not None and w.next_reminder is not None
          and w.next_reminder <= now and not ctx.muted):
        pending = AlertIntent(AlertKind.REMINDER, None, now, down_since=w.down_since, trouble=w.trouble,
                              since=w.since)
    else:
        return
    if _held(w, now, ctx):
        if pending is intent:
            w.since = replace(w.since, held=w.since.held + 1)
        return
    if ctx.dependents and w.down_since is not None:
        pending = replace(pending, dependents=ctx.dependents)
    _send(w, decision, pending)
    w.told = w.trouble if w.down_since is not None else None
    w.since = Since()
    if w.down_since is None:
        w.next_reminder = None
    elif pending.kind is AlertKind.REMINDER and w.next_reminder is not None and ctx.remind_every > timedelta(0):
        while w.next_reminder <= now:  # after an outage: one reminder, then back on the beat
            w.next_reminder += ctx.remind_every
    else:
        _plan_reminder(w, now, ctx)
