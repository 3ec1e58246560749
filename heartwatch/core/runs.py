"""The job chain: how one ping changes the runs of a check. Pure: (spec, open runs, ping) -> changes.

Rules (DESIGN.md section 4):
- start opens a run. Without a rid it interrupts the open rid-less run (which keeps its last step);
  with a rid it opens a run of its own, so overlapping runs are tracked separately.
- a step is recorded on its run in arrival order, flagged when undeclared or out of order, never rejected.
- finish (or exit status 0) closes the run `ok`; fail (or a non-zero exit status) closes it `failed`.
- a step or finish with no open run opens one ("start not seen").
- a late finish of a timed-out run closes it but it stays `timed_out` (flag late_finish): it already
  counted as bad, and a late finish is not a good run.
- a finish whose body holds one of the check's `fail_keywords` closes the run `failed` (flag fail_keyword).
- with `strict_steps`, a finish that skipped a declared step, or saw one out of order or an undeclared one,
  closes the run `failed`.
- a ping whose HTTP method is not in the check's `methods` changes nothing (it is logged as ignored).
- log pings change nothing; they are stored as events of the run they name (or the newest open one).
`apply_ping` says what changed (`Applied`: the run opened, the runs closed and how); the alert decision
(`watching.after_ping`) reads that, and the store persists both in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from heartwatch.core.model import CheckSpec, Ping, PingKind, Run, RunFlag, RunState, StepMark

#: Step marks a run keeps (see _drop_one).
MAX_MARKS = 200
#: Open runs a check keeps: a flood of starts with new rids cannot pile them up (issue 14: 11,112 open runs
#: slowed every ping to the check to ~10 ms); past it, the oldest is closed as interrupted.
MAX_OPEN_RUNS = 100


@dataclass
class Applied:
    """What one ping changed."""

    run: Run | None  # the run the ping belongs to (None: a log ping with no open run)
    changed: list[Run] = field(default_factory=list)  # runs to insert (id None) or update
    opened: Run | None = None  # the run this ping opened (by start, or by a step or finish without one)
    closed: list[Run] = field(default_factory=list)  # runs this ping ended with an outcome: ok, failed, interrupted
    late: list[Run] = field(default_factory=list)  # timed-out runs this ping finished late (no new outcome)
    ignored: bool = False  # the ping's method is not one the check counts: nothing changed


def fail_keyword_line(spec: CheckSpec, body: bytes) -> str | None:
    """The first line of `body` holding one of the check's fail_keywords, or None."""
    if not spec.fail_keywords or not body:
        return None
    text = body.decode("utf-8", "replace")
    for line in text.splitlines():
        if any(k in line for k in spec.fail_keywords):
            return line.strip()
    return None


def find_open_run(open_runs: Sequence[Run], rid: str | None) -> Run | None:
    """The run a ping addresses: the open run with its rid, or else the newest open rid-less run."""
    candidates = [r for r in open_runs if r.is_open and r.rid == rid]
    return max(candidates, key=lambda r: r.started_at) if candidates else None


def apply_ping(check_id: int, spec: CheckSpec, open_runs: Sequence[Run], ping: Ping) -> Applied:
    """Apply one ping to the check's open runs. Returns copies; the inputs are left untouched."""
    if spec.methods and ping.method not in spec.methods:
        return Applied(run=None, ignored=True)  # a link previewer's GET is not a success
    target = find_open_run(open_runs, ping.rid)
    run = target.copy() if target else None

    if ping.kind is PingKind.LOG:
        return Applied(run=run)

    applied = Applied(run=run)
    if ping.kind is PingKind.START:
        if run is not None and ping.rid is not None:
            run.flags.add(RunFlag.DUPLICATE_START)  # the same rid started twice: keep one run
            applied.changed.append(run)
            return applied
        if run is not None:
            applied.changed.append(_interrupt(run, ping, applied))
        run = Run(check_id=check_id, state=RunState.RUNNING, started_at=ping.at, rid=ping.rid)
        applied.run = applied.opened = run
        applied.changed.append(run)
        if ping.step:
            _record_step(spec, run, ping.step, ping)
        return applied

    if run is None:
        run = Run(check_id=check_id, state=RunState.RUNNING, started_at=ping.at, rid=ping.rid,
                  flags={RunFlag.START_NOT_SEEN})
        applied.run = applied.opened = run
    applied.changed.append(run)
    if ping.step:
        _record_step(spec, run, ping.step, ping)
    if ping.kind is PingKind.SUCCESS or ping.kind is PingKind.FAIL:
        was_timed_out = run.state is RunState.TIMED_OUT
        if ping.kind is PingKind.SUCCESS:
            _finish(spec, run, ping)
        else:
            _close(run, ping, RunState.FAILED)
        # A timed-out run finishing late already counted as bad: not a new outcome, unless it now says it failed.
        (applied.late if was_timed_out and run.state is RunState.TIMED_OUT else applied.closed).append(run)
    return applied


def make_room(applied: Applied, open_count: int, oldest: Run | None, ping: Ping) -> None:
    """After `apply_ping`: when it opened a run while the check already had MAX_OPEN_RUNS open (`open_count`,
    the oldest being `oldest`), the oldest is closed as interrupted, in `applied`."""
    if applied.opened is None or oldest is None or open_count < MAX_OPEN_RUNS:
        return
    if any(r.id == oldest.id for r in applied.changed):
        return  # this ping already closed it
    applied.changed.insert(0, _interrupt(oldest.copy(), ping, applied))


def _interrupt(run: Run, ping: Ping, applied: Applied) -> Run:
    if run.state is RunState.RUNNING:
        run.state = RunState.INTERRUPTED
        applied.closed.append(run)
    # A timed-out run keeps its state (it already counted as such); either way it takes no more pings.
    run.ended_at = ping.at
    return run


def _record_step(spec: CheckSpec, run: Run, name: str, ping: Ping) -> None:
    flags: list[RunFlag] = []
    index = spec.step_index(name)
    if spec.steps and index is None:
        flags.append(RunFlag.UNDECLARED_STEP)
    elif index is not None:
        seen = [i for s in run.steps if (i := spec.step_index(s.name)) is not None]
        if seen and index < max(seen):
            flags.append(RunFlag.OUT_OF_ORDER)
    run.steps.append(StepMark(name=name, at=ping.at, flags=tuple(flags)))
    run.flags.update(flags)
    if len(run.steps) > MAX_MARKS:
        _drop_one(spec, run)


def _drop_one(spec: CheckSpec, run: Run) -> None:
    """Keep a run's marks bounded under a flood of step pings (the row is rewritten on every ping).

    The first mark of each name and the newest mark are kept, so where the run stopped, the skipped-step and
    out-of-order checks stay right; an older repeat goes first, else the oldest undeclared name.
    """
    run.flags.add(RunFlag.STEPS_TRUNCATED)
    seen: set[str] = set()
    for i, mark in enumerate(run.steps[:-1]):
        if mark.name in seen:
            del run.steps[i]
            return
        seen.add(mark.name)
    undeclared = (i for i, m in enumerate(run.steps[:-1]) if spec.step_index(m.name) is None)
    del run.steps[next(undeclared, 0)]


def missing_steps(spec: CheckSpec, run: Run) -> list[str]:
    seen = {s.name for s in run.steps}
    return [s.name for s in spec.steps if s.name not in seen]


def _finish(spec: CheckSpec, run: Run, ping: Ping) -> None:
    state = RunState.OK
    if missing_steps(spec, run):
        run.flags.add(RunFlag.SKIPPED_STEPS)
    if spec.strict_steps and run.flags & _STRICT_FLAGS:
        state = RunState.FAILED
    if fail_keyword_line(spec, ping.body) is not None:
        run.flags.add(RunFlag.FAIL_KEYWORD)
        state = RunState.FAILED
    if run.state is RunState.TIMED_OUT:
        run.flags.add(RunFlag.LATE_FINISH)
        if state is RunState.OK:
            state = RunState.TIMED_OUT  # it stays what it was: a late finish is not a good run
    _close(run, ping, state)
    too_soon = spec.min_runtime is not None and ping.at - run.started_at < spec.min_runtime
    if too_soon and RunFlag.START_NOT_SEEN not in run.flags:
        run.flags.add(RunFlag.TOO_FAST)


#: What strict_steps turns into a failure: a skipped, an out-of-order or an undeclared step.
_STRICT_FLAGS = frozenset({RunFlag.SKIPPED_STEPS, RunFlag.OUT_OF_ORDER, RunFlag.UNDECLARED_STEP})


def strict_step_problem(spec: CheckSpec, run: Run) -> str | None:
    """What strict_steps found wrong with a run, in words naming the step: for the alert."""
    for mark in run.steps:
        if RunFlag.UNDECLARED_STEP in mark.flags:
            return f'undeclared step "{mark.name}"'
    for mark in run.steps:
        if RunFlag.OUT_OF_ORDER in mark.flags:
            return f'step "{mark.name}" out of order'
    missing = missing_steps(spec, run)
    if missing:
        return "skipped " + ", ".join(f'"{m}"' for m in missing)
    return None


def _close(run: Run, ping: Ping, state: RunState) -> None:
    run.state = state
    run.ended_at = ping.at
    run.exit_code = ping.exit_code
