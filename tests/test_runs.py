"""apply_ping: every rule of the job chain (DESIGN.md section 4), as pure functions with the time passed in."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from heartwatch.core.model import CheckSpec, Ping, PingKind, Run, RunFlag, RunState, StepMark, StepSpec
from heartwatch.core.runs import MAX_MARKS, MAX_OPEN_RUNS, Applied, apply_ping, find_open_run, make_room, missing_steps

T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
CHECK_ID = 7
SPEC = CheckSpec(slug="backup", steps=(StepSpec("dump"), StepSpec("upload", timedelta(minutes=45)),
                                       StepSpec("verify")))
PLAIN = CheckSpec(slug="plain")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ping(kind: PingKind, minutes: float, step: str | None = None, rid: str | None = None,
         exit_code: int | None = None) -> Ping:
    return Ping(kind=kind, at=at(minutes), step=step, rid=rid, exit_code=exit_code)


class Chain:
    """Feeds pings through apply_ping the way the store does: persist changes, give ids to new runs."""

    def __init__(self, spec: CheckSpec = SPEC) -> None:
        self.spec = spec
        self.runs: list[Run] = []

    def send(self, p: Ping) -> Applied:
        applied = apply_ping(CHECK_ID, self.spec, [r for r in self.runs if r.ended_at is None], p)
        for run in applied.changed:
            if run.id is None:
                run.id = len(self.runs) + 1
                self.runs.append(run)
            else:
                self.runs[run.id - 1] = run
        return applied

    def run(self, rid: str | None = None) -> Run:
        [match] = [r for r in self.runs if r.rid == rid]
        return match


def open_run(rid: str | None = None, started: float = 0, state: RunState = RunState.RUNNING,
             steps: Sequence[tuple[str, float]] = (), run_id: int = 1) -> Run:
    return Run(check_id=CHECK_ID, state=state, started_at=at(started), id=run_id, rid=rid,
               steps=[StepMark(name, at(m)) for name, m in steps])


# --- start ---------------------------------------------------------------------------------------------


def test_start_opens_a_running_run() -> None:
    applied = apply_ping(CHECK_ID, SPEC, [], ping(PingKind.START, 0))
    run = applied.run
    assert run is not None
    assert applied.changed == [run]
    assert (run.id, run.check_id, run.state, run.started_at, run.ended_at) == (None, CHECK_ID, RunState.RUNNING,
                                                                               T0, None)
    assert run.steps == [] and run.flags == set() and run.rid is None
    assert run.is_open


def test_start_with_a_step_name_records_that_step() -> None:
    run = apply_ping(CHECK_ID, SPEC, [], ping(PingKind.START, 0, step="dump")).run
    assert run is not None
    assert [(s.name, s.at) for s in run.steps] == [("dump", T0)]
    assert run.state is RunState.RUNNING


# --- steps ---------------------------------------------------------------------------------------------


def test_steps_are_recorded_in_order_with_their_times() -> None:
    chain = Chain()
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.STEP, 5, "dump"))
    applied = chain.send(ping(PingKind.STEP, 30, "upload"))
    run = chain.run()
    assert [(s.name, s.at, s.flags) for s in run.steps] == [("dump", at(5), ()), ("upload", at(30), ())]
    assert run.last_step == StepMark("upload", at(30))
    assert run.state is RunState.RUNNING and run.flags == set()
    assert len(chain.runs) == 1 and applied.changed == [run]


def test_undeclared_step_is_recorded_and_flagged_not_rejected() -> None:
    chain = Chain()
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.STEP, 1, "compress"))
    run = chain.run()
    assert [s.name for s in run.steps] == ["compress"]
    assert run.steps[0].flags == (RunFlag.UNDECLARED_STEP,)
    assert RunFlag.UNDECLARED_STEP in run.flags
    assert run.state is RunState.RUNNING


def test_steps_of_a_check_without_declared_steps_are_not_flagged() -> None:
    chain = Chain(PLAIN)
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.STEP, 1, "anything"))
    assert chain.run().steps[0].flags == ()
    assert chain.run().flags == set()


def test_out_of_order_step_is_recorded_and_flagged() -> None:
    chain = Chain()
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.STEP, 1, "upload"))
    chain.send(ping(PingKind.STEP, 2, "dump"))  # dump is declared before upload
    chain.send(ping(PingKind.STEP, 3, "verify"))
    run = chain.run()
    assert [(s.name, s.flags) for s in run.steps] == [
        ("upload", ()), ("dump", (RunFlag.OUT_OF_ORDER,)), ("verify", ())]
    assert run.flags == {RunFlag.OUT_OF_ORDER}
    assert run.state is RunState.RUNNING


def test_skipping_ahead_is_not_out_of_order() -> None:
    chain = Chain()
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.STEP, 1, "verify"))
    assert chain.run().flags == set()


# --- finish and fail ----------------------------------------------------------------------------------


def test_finish_closes_ok_with_its_duration() -> None:
    chain = Chain(PLAIN)
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.SUCCESS, 90))
    run = chain.run()
    assert (run.state, run.ended_at, run.duration, run.exit_code) == (RunState.OK, at(90), timedelta(minutes=90),
                                                                      None)
    assert not run.is_open


def test_exit_status_zero_closes_ok_and_keeps_the_code() -> None:
    chain = Chain(PLAIN)
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.SUCCESS, 2, exit_code=0))
    run = chain.run()
    assert (run.state, run.exit_code, run.duration) == (RunState.OK, 0, timedelta(minutes=2))


def test_fail_closes_failed() -> None:
    chain = Chain()
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.STEP, 1, "dump"))
    chain.send(ping(PingKind.FAIL, 3))
    run = chain.run()
    assert (run.state, run.ended_at, run.exit_code) == (RunState.FAILED, at(3), None)
    assert run.last_step is not None and run.last_step.name == "dump"  # where it failed


def test_non_zero_exit_status_closes_failed_with_the_code() -> None:
    chain = Chain()
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.FAIL, 4, exit_code=3))
    run = chain.run()
    assert (run.state, run.exit_code, run.duration) == (RunState.FAILED, 3, timedelta(minutes=4))


def test_fail_at_a_named_step_records_the_step() -> None:
    chain = Chain()
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.FAIL, 2, step="upload", exit_code=12))
    run = chain.run()
    assert run.state is RunState.FAILED and run.exit_code == 12
    assert [s.name for s in run.steps] == ["upload"]


def test_a_closed_run_takes_no_more_pings_the_next_ping_opens_a_new_run() -> None:
    chain = Chain(PLAIN)
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.SUCCESS, 1))
    chain.send(ping(PingKind.STEP, 2, "late-step"))
    assert [r.state for r in chain.runs] == [RunState.OK, RunState.RUNNING]
    assert chain.runs[0].steps == []
    assert RunFlag.START_NOT_SEEN in chain.runs[1].flags


# --- rids: overlapping runs -----------------------------------------------------------------------------


def test_rid_pings_go_to_their_own_run_two_overlapping_runs() -> None:
    chain = Chain()
    chain.send(ping(PingKind.START, 0, rid="a"))
    chain.send(ping(PingKind.START, 1, rid="b"))  # does not interrupt run a
    chain.send(ping(PingKind.STEP, 2, "dump", rid="b"))
    chain.send(ping(PingKind.STEP, 3, "dump", rid="a"))
    chain.send(ping(PingKind.STEP, 4, "upload", rid="a"))
    chain.send(ping(PingKind.FAIL, 5, rid="b", exit_code=2))
    chain.send(ping(PingKind.STEP, 6, "verify", rid="a"))
    chain.send(ping(PingKind.SUCCESS, 7, rid="a"))
    a, b = chain.run("a"), chain.run("b")
    assert len(chain.runs) == 2
    assert (a.state, a.started_at, a.ended_at, [s.name for s in a.steps]) == (
        RunState.OK, at(0), at(7), ["dump", "upload", "verify"])
    assert (b.state, b.started_at, b.ended_at, b.exit_code, [s.name for s in b.steps]) == (
        RunState.FAILED, at(1), at(5), 2, ["dump"])
    assert a.flags == set() and b.flags == set()


def test_start_without_rid_does_not_touch_runs_with_a_rid() -> None:
    chain = Chain()
    chain.send(ping(PingKind.START, 0, rid="a"))
    chain.send(ping(PingKind.START, 1))
    assert chain.run("a").state is RunState.RUNNING
    assert chain.run(None).state is RunState.RUNNING


def test_second_start_with_the_same_rid_keeps_one_run_and_flags_it() -> None:
    chain = Chain()
    chain.send(ping(PingKind.START, 0, rid="a"))
    chain.send(ping(PingKind.STEP, 1, "dump", rid="a"))
    applied = chain.send(ping(PingKind.START, 2, rid="a"))
    assert len(chain.runs) == 1
    run = chain.run("a")
    assert applied.run == run
    assert run.flags == {RunFlag.DUPLICATE_START}
    assert (run.state, run.started_at, [s.name for s in run.steps]) == (RunState.RUNNING, at(0), ["dump"])


def test_find_open_run_takes_the_newest_open_run_with_that_rid() -> None:
    older = open_run(started=0, run_id=1)
    newer = open_run(started=5, run_id=2)
    closed = Run(check_id=CHECK_ID, state=RunState.OK, started_at=at(9), id=3, ended_at=at(10))
    with_rid = open_run("x", started=8, run_id=4)
    runs = [older, newer, closed, with_rid]
    assert find_open_run(runs, None) is newer
    assert find_open_run(runs, "x") is with_rid
    assert find_open_run(runs, "y") is None


# --- interruption ----------------------------------------------------------------------------------------


def test_start_without_rid_interrupts_the_open_run_which_keeps_its_last_step() -> None:
    chain = Chain()
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.STEP, 10, "dump"))
    chain.send(ping(PingKind.STEP, 20, "upload"))
    applied = chain.send(ping(PingKind.START, 60))
    old, new = chain.runs
    assert [r.id for r in applied.changed] == [old.id, new.id]
    assert applied.run is new
    assert (old.state, old.ended_at) == (RunState.INTERRUPTED, at(60))
    assert old.last_step == StepMark("upload", at(20))  # where it stopped
    assert (new.state, new.started_at, new.steps) == (RunState.RUNNING, at(60), [])


def test_start_closes_a_timed_out_run_without_relabelling_it() -> None:
    timed_out = open_run(started=0, state=RunState.TIMED_OUT, steps=[("dump", 1)])
    applied = apply_ping(CHECK_ID, SPEC, [timed_out], ping(PingKind.START, 200))
    old, new = applied.changed
    assert old.id == timed_out.id
    assert (old.state, old.ended_at, old.last_step) == (RunState.TIMED_OUT, at(200), StepMark("dump", at(1)))
    assert new.state is RunState.RUNNING


# --- runs opened without a start --------------------------------------------------------------------------


def test_step_with_no_open_run_opens_one_start_not_seen() -> None:
    applied = apply_ping(CHECK_ID, SPEC, [], ping(PingKind.STEP, 3, "upload", rid="r9"))
    run = applied.run
    assert run is not None and applied.changed == [run]
    assert (run.state, run.started_at, run.rid, run.flags) == (RunState.RUNNING, at(3), "r9",
                                                               {RunFlag.START_NOT_SEEN})
    assert [(s.name, s.at) for s in run.steps] == [("upload", at(3))]


def test_finish_with_no_open_run_opens_and_closes_one_start_not_seen() -> None:
    applied = apply_ping(CHECK_ID, PLAIN, [], ping(PingKind.SUCCESS, 3))
    run = applied.run
    assert run is not None and applied.changed == [run] and run.id is None
    assert (run.state, run.started_at, run.ended_at, run.flags) == (RunState.OK, at(3), at(3),
                                                                    {RunFlag.START_NOT_SEEN})


def test_fail_with_no_open_run_opens_and_closes_one_failed() -> None:
    run = apply_ping(CHECK_ID, PLAIN, [], ping(PingKind.FAIL, 3, exit_code=1)).run
    assert run is not None
    assert (run.state, run.exit_code, run.flags) == (RunState.FAILED, 1, {RunFlag.START_NOT_SEEN})


# --- timed out, strict steps, too fast --------------------------------------------------------------------


def test_late_finish_of_a_timed_out_run_closes_it_but_it_stays_timed_out() -> None:
    # Issue 12, defect 3: the late finish turned the run `ok` (green) and counted as a recovery.
    timed_out = open_run(started=0, state=RunState.TIMED_OUT, steps=[("dump", 1), ("upload", 2), ("verify", 3)])
    applied = apply_ping(CHECK_ID, SPEC, [timed_out], ping(PingKind.SUCCESS, 300))
    run = applied.run
    assert run is not None and applied.changed == [run] and run.id == timed_out.id
    assert (run.state, run.ended_at, run.duration) == (RunState.TIMED_OUT, at(300), timedelta(minutes=300))
    assert run.flags == {RunFlag.LATE_FINISH}
    assert applied.late == [run] and applied.closed == []  # not a new outcome: no recovery from it


def test_a_timed_out_run_still_takes_steps() -> None:
    timed_out = open_run(started=0, state=RunState.TIMED_OUT, steps=[("dump", 1)])
    run = apply_ping(CHECK_ID, SPEC, [timed_out], ping(PingKind.STEP, 100, "upload")).run
    assert run is not None and run.id == timed_out.id
    assert run.state is RunState.TIMED_OUT
    assert [s.name for s in run.steps] == ["dump", "upload"]


def test_late_fail_of_a_timed_out_run_closes_it_failed() -> None:
    timed_out = open_run(started=0, state=RunState.TIMED_OUT)
    run = apply_ping(CHECK_ID, SPEC, [timed_out], ping(PingKind.FAIL, 300, exit_code=9)).run
    assert run is not None
    assert (run.state, run.exit_code, run.ended_at) == (RunState.FAILED, 9, at(300))


def test_finish_that_skipped_a_step_is_flagged_but_ok_when_not_strict() -> None:
    chain = Chain()
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.STEP, 1, "dump"))
    chain.send(ping(PingKind.STEP, 2, "verify"))
    chain.send(ping(PingKind.SUCCESS, 3))
    run = chain.run()
    assert run.state is RunState.OK
    assert run.flags == {RunFlag.SKIPPED_STEPS}
    assert missing_steps(SPEC, run) == ["upload"]


def test_strict_steps_finish_that_skipped_a_step_is_failed() -> None:
    strict = CheckSpec(slug="strict", steps=SPEC.steps, strict_steps=True)
    chain = Chain(strict)
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.STEP, 1, "dump"))
    chain.send(ping(PingKind.STEP, 2, "verify"))
    chain.send(ping(PingKind.SUCCESS, 3, exit_code=0))
    run = chain.run()
    assert (run.state, run.exit_code, run.ended_at) == (RunState.FAILED, 0, at(3))
    assert run.flags == {RunFlag.SKIPPED_STEPS}


def test_strict_steps_finish_with_every_step_is_ok() -> None:
    strict = CheckSpec(slug="strict", steps=SPEC.steps, strict_steps=True)
    chain = Chain(strict)
    chain.send(ping(PingKind.START, 0))
    for i, name in enumerate(["dump", "upload", "verify"], 1):
        chain.send(ping(PingKind.STEP, i, name))
    chain.send(ping(PingKind.SUCCESS, 5))
    assert chain.run().state is RunState.OK
    assert chain.run().flags == set()


def test_finish_sooner_than_min_runtime_is_flagged_too_fast() -> None:
    spec = CheckSpec(slug="fast", min_runtime=timedelta(minutes=10))
    chain = Chain(spec)
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.SUCCESS, 9.5))
    run = chain.run()
    assert run.state is RunState.OK  # suspicious, not failed: the alerting layer decides
    assert run.flags == {RunFlag.TOO_FAST}


def test_finish_at_or_after_min_runtime_is_not_too_fast() -> None:
    spec = CheckSpec(slug="fast", min_runtime=timedelta(minutes=10))
    chain = Chain(spec)
    chain.send(ping(PingKind.START, 0))
    chain.send(ping(PingKind.SUCCESS, 10))
    assert chain.run().flags == set()


def test_too_fast_is_not_claimed_when_the_start_was_not_seen() -> None:
    spec = CheckSpec(slug="fast", min_runtime=timedelta(minutes=10))
    run = apply_ping(CHECK_ID, spec, [], ping(PingKind.SUCCESS, 0)).run
    assert run is not None
    assert run.flags == {RunFlag.START_NOT_SEEN}


# --- log pings, purity ---------------------------------------------------------------------------------------


def test_log_changes_nothing() -> None:
    running = open_run(steps=[("dump", 1)])
    snapshot = copy.deepcopy(running)
    applied = apply_ping(CHECK_ID, SPEC, [running], ping(PingKind.LOG, 2, step="upload"))
    assert applied.changed == []
    assert applied.run == snapshot  # the event is attached to the open run, which is not changed
    assert running == snapshot


def test_log_with_no_open_run_belongs_to_no_run() -> None:
    applied = apply_ping(CHECK_ID, SPEC, [], ping(PingKind.LOG, 2))
    assert applied == Applied(run=None, changed=[])


def test_log_with_a_rid_addresses_that_run() -> None:
    a, b = open_run("a", run_id=1), open_run("b", run_id=2)
    assert apply_ping(CHECK_ID, SPEC, [a, b], ping(PingKind.LOG, 2, rid="b")).run == b


def test_inputs_are_not_mutated() -> None:
    runs = [open_run(None, started=0, steps=[("dump", 1)], run_id=1),
            open_run("a", started=0, state=RunState.TIMED_OUT, run_id=2)]
    snapshot = copy.deepcopy(runs)
    pings = [ping(PingKind.STEP, 2, "upload"), ping(PingKind.STEP, 2, "dump"), ping(PingKind.START, 3),
             ping(PingKind.SUCCESS, 4), ping(PingKind.FAIL, 4, exit_code=1),
             ping(PingKind.SUCCESS, 5, rid="a"), ping(PingKind.START, 5, rid="a")]
    for p in pings:
        applied = apply_ping(CHECK_ID, SPEC, runs, p)
        assert applied.changed  # each of these changes a run ...
        assert runs == snapshot  # ... but only a copy of it
        for changed in applied.changed:
            assert all(changed is not r for r in runs)
            assert all(changed.steps is not r.steps and changed.flags is not r.flags for r in runs)


def test_a_flood_of_step_pings_keeps_the_run_bounded_and_where_it_stopped() -> None:
    spec = CheckSpec(slug="job", steps=(StepSpec("dump"), StepSpec("upload")))
    t = T0
    applied = apply_ping(1, spec, [], Ping(PingKind.START, t))
    run = applied.run
    assert run is not None
    for i in range(3 * MAX_MARKS):
        t += timedelta(seconds=1)
        name = "dump" if i % 2 else f"noise-{i}"
        run = apply_ping(1, spec, [run], Ping(PingKind.STEP, t, step=name)).run
        assert run is not None
    run = apply_ping(1, spec, [run], Ping(PingKind.STEP, t + timedelta(seconds=1), step="upload")).run
    assert run is not None
    assert len(run.steps) == MAX_MARKS
    assert RunFlag.STEPS_TRUNCATED in run.flags
    assert run.last_step is not None and run.last_step.name == "upload"  # where it stopped survives
    assert [s.name for s in run.steps].count("dump") >= 1  # a declared step seen is never forgotten


# --- at most MAX_OPEN_RUNS open runs (issue 14, finding 3) ------------------------------------------------


def test_a_start_past_the_open_run_cap_closes_the_oldest_as_interrupted() -> None:
    oldest = open_run("r0", run_id=7)
    p = ping(PingKind.START, 5, rid="new")
    applied = apply_ping(CHECK_ID, SPEC, [], p)
    make_room(applied, MAX_OPEN_RUNS, oldest, p)
    closed = applied.changed[0]
    assert (closed.id, closed.state, closed.ended_at) == (7, RunState.INTERRUPTED, at(5))
    assert closed in applied.closed and oldest.state is RunState.RUNNING  # a copy: the input is untouched
    assert applied.opened is not None and applied.opened.rid == "new"


def test_below_the_cap_or_without_a_new_run_nothing_is_closed() -> None:
    oldest = open_run("r0", run_id=7)
    p = ping(PingKind.START, 5, rid="new")
    applied = apply_ping(CHECK_ID, SPEC, [], p)
    make_room(applied, MAX_OPEN_RUNS - 1, oldest, p)
    assert [r.id for r in applied.changed] == [None]
    log = ping(PingKind.LOG, 5, rid="r0")
    applied = apply_ping(CHECK_ID, SPEC, [oldest], log)
    make_room(applied, MAX_OPEN_RUNS, oldest, log)
    assert applied.changed == []
