"""The job chain: how one ping changes the runs of a check. Pure: (spec, open runs, ping) -> changes.

Rules (DESIGN.md section 4):
- start opens a run. Without a rid it interrupts the open rid-less run (which keeps its last step);
  with a rid it opens a run of its own, so overlapping runs are tracked separately.
- a step is recorded on its run in arrival order, flagged when undeclared or out of order, never rejected.
- finish (or exit status 0) closes the run `ok`; fail (or a non-zero exit status) closes it `failed`.
- a step or finish with no open run opens one ("start not seen").
- a late finish of a timed-out run closes it and counts as a recovery (state `ok`, flag late_finish).
- log pings change nothing; they are stored as events of the run they name (or the newest open one).
The store persists what `apply_ping` returns; deadlines are the scheduler's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from heartwatch.core.model import CheckSpec, Ping, PingKind, Run, RunFlag, RunState, StepMark

#: Step marks a run keeps (see _drop_one).
MAX_MARKS = 200


@dataclass
class Applied:
    run: Run | None  # the run the ping belongs to (None: a log ping with no open run)
    changed: list[Run] = field(default_factory=list)  # runs to insert (id None) or update


def find_open_run(open_runs: Sequence[Run], rid: str | None) -> Run | None:
    """The run a ping addresses: the open run with its rid, or else the newest open rid-less run."""
    candidates = [r for r in open_runs if r.is_open and r.rid == rid]
    return max(candidates, key=lambda r: r.started_at) if candidates else None


def apply_ping(check_id: int, spec: CheckSpec, open_runs: Sequence[Run], ping: Ping) -> Applied:
    """Apply one ping to the check's open runs. Returns copies; the inputs are left untouched."""
    target = find_open_run(open_runs, ping.rid)
    run = target.copy() if target else None

    if ping.kind is PingKind.LOG:
        return Applied(run=run)

    changed: list[Run] = []
    if ping.kind is PingKind.START:
        if run is not None and ping.rid is not None:
            run.flags.add(RunFlag.DUPLICATE_START)  # the same rid started twice: keep one run
            return Applied(run=run, changed=[run])
        if run is not None:
            changed.append(_interrupt(run, ping))
        run = Run(check_id=check_id, state=RunState.RUNNING, started_at=ping.at, rid=ping.rid)
        changed.append(run)
        if ping.step:
            _record_step(spec, run, ping.step, ping)
        return Applied(run=run, changed=changed)

    if run is None:
        run = Run(check_id=check_id, state=RunState.RUNNING, started_at=ping.at, rid=ping.rid,
                  flags={RunFlag.START_NOT_SEEN})
    changed.append(run)
    if ping.step:
        _record_step(spec, run, ping.step, ping)
    if ping.kind is PingKind.SUCCESS:
        _finish(spec, run, ping)
    elif ping.kind is PingKind.FAIL:
        _close(run, ping, RunState.FAILED)
    return Applied(run=run, changed=changed)


def _interrupt(run: Run, ping: Ping) -> Run:
    if run.state is RunState.RUNNING:
        run.state = RunState.INTERRUPTED
    # A timed-out run keeps its state (it already alerted as such); either way it takes no more pings.
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
    if run.state is RunState.TIMED_OUT:
        run.flags.add(RunFlag.LATE_FINISH)
    state = RunState.OK
    if missing_steps(spec, run):
        run.flags.add(RunFlag.SKIPPED_STEPS)
        if spec.strict_steps:
            state = RunState.FAILED
    _close(run, ping, state)
    too_soon = spec.min_runtime is not None and ping.at - run.started_at < spec.min_runtime
    if too_soon and RunFlag.START_NOT_SEEN not in run.flags:
        run.flags.add(RunFlag.TOO_FAST)


def _close(run: Run, ping: Ping, state: RunState) -> None:
    run.state = state
    run.ended_at = ping.at
    run.exit_code = ping.exit_code
