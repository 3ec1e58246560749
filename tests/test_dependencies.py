"""Dependencies and pipelines (issue 19), as pure decisions with the time passed in: `depends_on` holds a
child's alerts while a parent is down, `after` expects a check when its parent finishes well, and the graph
refuses unknown parents and cycles. End to end on a real server: test_dependencies_e2e.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from heartwatch.config import load_settings
from heartwatch.core import alert_text, schedule
from heartwatch.core.dependencies import ParentState, check_change, check_graph, pipeline, status_note, waiting_on
from heartwatch.core.model import CheckSpec, Ping, PingKind, Run, RunState, Watch
from heartwatch.core.runs import apply_ping
from heartwatch.core.settings import parse_check
from heartwatch.core.values import ConfigError
from heartwatch.core.watching import (
    AlertIntent,
    AlertKind,
    Context,
    Hold,
    after_parent_run,
    after_ping,
    fresh_watch,
    next_deadline,
    on_change,
    on_due,
)

T0 = datetime(2024, 5, 1, 0, 0, 0, tzinfo=UTC)
SEC, MIN, HOUR = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1)


class Sim:
    def __init__(self, spec: CheckSpec, now: datetime) -> None:
        self.spec = spec
        self.watch: Watch = fresh_watch(spec, now)
        self.runs: list[Run] = []
        self.alerts: list[AlertIntent] = []
        self.deadline: datetime | None = None  # as the store keeps it: computed when the check is saved


class World:
    """Several checks driven as the store (store/watches.py) drives them: pings through apply_ping + after_ping,
    deadlines through on_due when the saved next_deadline says, each check's context built from its parents'
    states; after a check changed, its children are told (an `after` child of each run of its parent that
    ended) and saved again."""

    def __init__(self, *specs: CheckSpec, now: datetime = T0) -> None:
        self.now = now
        self.checks = {s.slug: Sim(s, now) for s in specs}
        self.paused: set[str] = set()
        check_graph({s.slug: s for s in specs})
        for sim in self.checks.values():
            self._save(sim, now)

    def state(self, slug: str) -> ParentState:
        sim = self.checks[slug]
        return ParentState(slug, sim.spec.display_name, paused=slug in self.paused,
                           down=sim.watch.down_since is not None, released_at=sim.watch.released_at)

    def ctx(self, slug: str, now: datetime) -> Context:
        spec = self.checks[slug].spec
        dependents = tuple(s.spec.display_name for s in self.checks.values() if slug in s.spec.depends_on)
        if slug in self.paused:
            return Context(hold=Hold.PAUSED, dependents=dependents)
        waiting, until = waiting_on(spec, {p: self.state(p) for p in spec.depends_on}, now)
        if waiting:
            return Context(hold=Hold.PARENT, hold_until=until, waiting_on=waiting, dependents=dependents)
        return Context(dependents=dependents)

    def note(self, slug: str) -> str | None:
        sim = self.checks[slug]
        return status_note(sim.spec, sim.watch, self.ctx(slug, self.now).waiting_on)

    def _keep(self, sim: Sim, run: Run) -> None:
        if run.id is None:
            run.id = len(sim.runs) + 1
            sim.runs.append(run)
        else:
            sim.runs[run.id - 1] = run

    def _save(self, sim: Sim, now: datetime) -> None:
        sim.deadline = next_deadline(sim.watch, [schedule.run_deadline(sim.spec, r) for r in sim.runs
                                                 if r.ended_at is None], self.ctx(sim.spec.slug, now))

    def _changed(self, slug: str, runs: list[Run], now: datetime) -> None:
        self._save(self.checks[slug], now)
        ended = [r for r in runs if r.state is not RunState.RUNNING]
        for child in self.checks.values():
            if slug not in child.spec.depends_on and child.spec.after != slug:
                continue
            if child.spec.after == slug and ended:
                child.watch = after_parent_run(child.spec, child.watch, ended[-1])
            decision = on_change(child.spec, child.watch, now, self.ctx(child.spec.slug, now), expect=False)
            child.watch = decision.watch
            child.alerts += decision.alerts
            self._save(child, now)

    def set_paused(self, slug: str, paused: bool, at: datetime) -> None:
        self.run_until(at)
        (self.paused.add if paused else self.paused.discard)(slug)
        self._changed(slug, [], at)

    def ping(self, slug: str, kind: PingKind, at: datetime, exit_code: int | None = None) -> None:
        self.run_until(at)
        sim = self.checks[slug]
        applied = apply_ping(1, sim.spec, [r for r in sim.runs if r.ended_at is None],
                             Ping(kind=kind, at=at, exit_code=exit_code))
        for run in applied.changed:
            self._keep(sim, run)
        decision = after_ping(sim.spec, sim.watch, applied.opened, applied.closed, at, self.ctx(slug, at))
        sim.watch = decision.watch
        sim.alerts += decision.alerts
        self._changed(slug, applied.closed, at)

    def job(self, slug: str, at: datetime, took: timedelta = MIN, exit_code: int = 0) -> None:
        self.ping(slug, PingKind.START, at)
        self.ping(slug, PingKind.SUCCESS if exit_code == 0 else PingKind.FAIL, at + took, exit_code=exit_code)

    def run_until(self, end: datetime) -> None:
        for _ in range(100_000):
            due = [(sim.deadline, slug) for slug, sim in self.checks.items() if sim.deadline is not None]
            if not due or min(due)[0] > end:
                break
            at, slug = min(due)
            sim = self.checks[slug]
            decision = on_due(1, sim.spec, sim.watch, [r for r in sim.runs if r.ended_at is None], at,
                              self.ctx(slug, at), sim.runs[-1] if sim.runs else None)
            for run in decision.runs:
                self._keep(sim, run)
            sim.watch = decision.watch
            sim.alerts += decision.alerts
            self.now = max(self.now, at)
            self._changed(slug, decision.runs, at)
        self.now = max(self.now, end)

    def titles(self, slug: str) -> list[str]:
        sim = self.checks[slug]
        return [alert_text.title(sim.spec, a) for a in sim.alerts]


# --- depends_on: a parent's outage holds its children's alerts ---------------------------------------------------

ROUTER = CheckSpec(slug="router", schedule="* * * * *", start_grace=30 * SEC)


def _job(slug: str) -> CheckSpec:
    return CheckSpec(slug=slug, schedule="*/5 * * * *", start_grace=2 * MIN, depends_on=("router",))


def _router_world() -> World:
    return World(ROUTER, _job("a"), _job("b"), _job("c"))


def _all_well(world: World, start: datetime, end: datetime, skip: tuple[str, ...] = ()) -> None:
    t = start
    while t < end:
        if "router" not in skip:
            world.job("router", t + 5 * SEC, took=SEC)
        if t.minute % 5 == 0:
            for slug in ("a", "b", "c"):
                if slug not in skip:
                    world.job(slug, t + 10 * SEC, took=SEC)
        t += MIN


def test_parent_down_child_silent_then_parent_up_child_alerts_once() -> None:
    world = _router_world()
    _all_well(world, T0, T0 + 10 * MIN)
    assert all(not sim.alerts for sim in world.checks.values())
    # The router goes down at 00:10 and everything behind it misses for 30 minutes.
    world.run_until(T0 + 40 * MIN)
    assert world.titles("router") == ["DOWN router: did not start (3 checks depend on it)"]
    body = alert_text.body(ROUTER, world.checks["router"].alerts[0], None)
    assert "3 checks depend on it: a, b, c (their alerts are held until it recovers)." in body
    for slug in ("a", "b", "c"):
        sim = world.checks[slug]
        assert sim.alerts == []  # silent
        assert sim.watch.down_since is not None  # but the bad runs are recorded: down, held
        assert [r.state for r in sim.runs][-1] is RunState.MISSED
        assert world.note(slug) == "waiting on router"
    # 00:40 the router is back; a runs well at its next slot, b and c stay down.
    _all_well(world, T0 + 40 * MIN, T0 + 50 * MIN, skip=("b", "c"))
    assert world.titles("router") == ["DOWN router: did not start (3 checks depend on it)",
                                      "UP router: recovered after 29m36s down"]
    assert world.checks["a"].alerts == []  # it recovered within its grace: nothing to say
    for slug in ("b", "c"):
        assert world.titles(slug) == [f"DOWN {slug}: did not start"], slug  # once, after its own grace
        assert world.note(slug) is None
        alert = world.checks[slug].alerts[0]
        assert alert.at == T0 + 40 * MIN + 5 * SEC + SEC + 2 * MIN  # the router's recovery + b's start_grace
    _all_well(world, T0 + 50 * MIN, T0 + 3 * HOUR, skip=("b", "c"))  # b and c stay down: nothing new
    assert [len(world.checks[s].alerts) for s in ("router", "a", "b", "c")] == [2, 0, 1, 1]


def test_a_paused_parent_holds_too_and_its_resume_releases() -> None:
    world = World(CheckSpec(slug="nas", period=HOUR), CheckSpec(slug="job", period=10 * MIN, start_grace=MIN,
                                                                depends_on=("nas",)))
    world.set_paused("nas", True, T0)
    world.run_until(T0 + 30 * MIN)
    assert world.checks["job"].alerts == [] and world.note("job") == "waiting on nas"
    world.set_paused("nas", False, T0 + 30 * MIN)
    assert world.checks["job"].alerts[0].at == T0 + 30 * MIN  # the resume releases it at once
    world.run_until(T0 + 32 * MIN)
    assert [a.kind for a in world.checks["job"].alerts] == [AlertKind.MISSED]


def test_waiting_on_lists_each_holding_parent_and_when_the_hold_ends() -> None:
    spec = CheckSpec(slug="job", start_grace=5 * MIN, depends_on=("router", "nas", "gone"))
    states = {"router": ParentState("router", "router", down=True),
              "nas": ParentState("nas", "nas", in_maintenance=True, maintenance_until=T0 + HOUR)}
    assert waiting_on(spec, states, T0) == (("router", "nas"), None)
    states["router"] = ParentState("router", "router", released_at=T0)
    assert waiting_on(spec, states, T0 + MIN) == (("router", "nas"), T0 + HOUR)
    states["nas"] = ParentState("nas", "nas")
    assert waiting_on(spec, states, T0 + 2 * HOUR) == ((), None)


# --- after: pipelines ------------------------------------------------------------------------------------------

DUMP = CheckSpec(slug="dump", schedule="0 2 * * *", start_grace=10 * MIN)
UPLOAD = CheckSpec(slug="upload", after="dump", start_grace=5 * MIN)
VERIFY = CheckSpec(slug="verify", after="upload", start_grace=5 * MIN)
NIGHT = T0 + 2 * HOUR


def test_an_after_chain_of_three_runs_quietly_and_each_waits_for_the_one_before() -> None:
    world = World(DUMP, UPLOAD, VERIFY)
    assert world.checks["upload"].watch.expected_at is None  # nothing expected before its parent finishes
    world.job("dump", NIGHT, took=20 * MIN)
    assert world.checks["upload"].watch.expected_at == NIGHT + 20 * MIN
    assert world.checks["upload"].watch.start_deadline == NIGHT + 25 * MIN
    assert world.checks["verify"].watch.expected_at is None
    world.job("upload", NIGHT + 21 * MIN, took=30 * MIN)
    assert world.checks["verify"].watch.expected_at == NIGHT + 51 * MIN
    world.job("verify", NIGHT + 52 * MIN, took=5 * MIN)
    world.run_until(NIGHT + 20 * HOUR)
    assert all(sim.alerts == [] for sim in world.checks.values())
    assert world.checks["verify"].watch.expected_at is None  # satisfied: nothing more until upload runs again


def test_a_pipeline_stopping_in_the_middle_alerts_for_the_one_that_stopped_only() -> None:
    world = World(DUMP, UPLOAD, VERIFY)
    world.job("dump", NIGHT, took=20 * MIN)
    world.run_until(NIGHT + 20 * HOUR)  # upload never starts
    assert world.titles("dump") == []
    assert world.titles("upload") == ["DOWN upload: did not start after dump"]
    missed = world.checks["upload"].alerts[0]
    assert missed.waited_on == 1 and missed.expected_at == NIGHT + 20 * MIN  # dump's run #1 and its finish
    body = alert_text.body(UPLOAD, missed, None)
    assert "Expected a start within 5m after dump's run #1 finished well at 2024-05-01 02:20:00 UTC" in body
    assert world.titles("verify") == []  # nothing expected: upload never finished


def test_a_failed_parent_means_the_child_is_not_expected() -> None:
    world = World(DUMP, UPLOAD, VERIFY)
    world.job("dump", NIGHT, took=20 * MIN)
    world.job("upload", NIGHT + 21 * MIN, took=MIN, exit_code=3)
    world.run_until(NIGHT + 20 * HOUR)
    assert world.titles("upload") == ["DOWN upload: failed with exit status 3"]
    assert world.checks["verify"].alerts == []
    assert world.note("verify") == "not expected, upload failed"
    # The next night goes well: upload recovers, verify is expected again and comes.
    world.job("dump", NIGHT + 24 * HOUR, took=20 * MIN)
    world.job("upload", NIGHT + 24 * HOUR + 21 * MIN, took=MIN)
    assert world.note("verify") is None
    world.job("verify", NIGHT + 24 * HOUR + 23 * MIN)
    world.run_until(NIGHT + 48 * HOUR)
    assert world.titles("upload") == ["DOWN upload: failed with exit status 3", "UP upload: recovered after 1d down"]
    assert world.checks["verify"].alerts == []


def test_after_parent_run_expects_only_after_a_good_finish() -> None:
    spec = UPLOAD
    good = Run(1, RunState.OK, NIGHT, id=7, ended_at=NIGHT + MIN)
    w = after_parent_run(spec, Watch(), good)
    assert (w.expected_at, w.start_deadline, w.parent_run, w.parent_failed) == (good.ended_at, NIGHT + 6 * MIN, 7,
                                                                                 False)
    for state in (RunState.FAILED, RunState.TIMED_OUT, RunState.MISSED, RunState.INTERRUPTED):
        w = after_parent_run(spec, w, Run(1, state, NIGHT, id=8, ended_at=NIGHT + MIN))
        assert (w.expected_at, w.start_deadline, w.parent_run, w.parent_failed) == (None, None, 8, True), state


# --- the graph -------------------------------------------------------------------------------------------------


def _specs(tables: dict[str, dict[str, object]]) -> dict[str, CheckSpec]:
    return {slug: parse_check(slug, table) for slug, table in tables.items()}


@pytest.mark.parametrize(("tables", "message"), [
    ({"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}},
     "checks.a.depends_on = ['b']: a cycle: a -> b -> a (each waits on the next)"),
    ({"a": {"after": "c"}, "b": {"after": "a"}, "c": {"depends_on": ["x", "b"]}, "x": {}},
     "checks.a.after = 'c': a cycle: a -> c -> b -> a (each waits on the next)"),
    ({"a": {"depends_on": ["router"]}}, "checks.a.depends_on = ['router']: no check is called 'router'"),
    ({"a": {"after": "dump"}}, "checks.a.after = 'dump': no check is called 'dump'"),
])
def test_cycles_and_unknown_parents_are_refused(tables: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        check_graph(_specs(tables))
    assert str(e.value) == message


@pytest.mark.parametrize(("table", "message"), [
    ({"after": "a"}, "checks.a.after = 'a': a check cannot depend on itself"),
    ({"depends_on": ["b", "a"]}, "checks.a.depends_on = ['b', 'a']: a check cannot depend on itself"),
    ({"after": "b", "schedule": "0 2 * * *"}, "checks.a.after = 'b': give either schedule or after, not both"),
    ({"after": "b", "period": "1h"}, "checks.a.after = 'b': give either period or after, not both"),
    ({"depends_on": ["b", "b"]}, "checks.a.depends_on = ['b', 'b']: 'b' is named twice"),
    ({"depends_on": ["Router"]}, "checks.a.depends_on = ['Router']: a slug is 1-64 characters of a-z, 0-9, - and _"),
])
def test_bad_values_are_refused(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_check("a", table)
    assert str(e.value) == message


def test_a_change_that_closes_a_cycle_is_refused_and_others_pass() -> None:
    specs = _specs({"dump": {"schedule": "0 2 * * *"}, "upload": {"after": "dump"}, "verify": {"after": "upload"}})
    check_change(parse_check("report", {"after": "verify", "depends_on": ["dump"]}), specs.get)
    with pytest.raises(ConfigError, match=r"dump.depends_on = \['verify'\]: a cycle: dump -> verify -> upload -> dump"):
        check_change(parse_check("dump", {"depends_on": ["verify"]}), specs.get)
    with pytest.raises(ConfigError, match="no check is called 'nas'"):
        check_change(parse_check("report", {"depends_on": ["nas"]}), specs.get)


def test_a_long_chain_is_checked_without_recursion() -> None:
    n = 5000
    specs = {"c0": CheckSpec(slug="c0", period=HOUR),
             **{f"c{i}": CheckSpec(slug=f"c{i}", after=f"c{i - 1}") for i in range(1, n)}}
    check_graph(specs)
    specs["c0"] = CheckSpec(slug="c0", depends_on=(f"c{n - 1}",))
    with pytest.raises(ConfigError, match="a cycle"):
        check_graph(specs)


def test_the_config_refuses_a_cycle(tmp_path: object) -> None:
    from pathlib import Path
    assert isinstance(tmp_path, Path)
    path = tmp_path / "heartwatch.toml"
    path.write_text('[checks.a]\nafter = "b"\n[checks.b]\ndepends_on = ["a"]\n')
    with pytest.raises(ConfigError, match=r"checks\.a\.after = 'b': a cycle: a -> b -> a"):
        load_settings(path, environ={})


def test_a_change_keeps_a_pending_after_expectation_and_drops_one_that_passed() -> None:
    pending = after_parent_run(UPLOAD, Watch(), Run(1, RunState.OK, NIGHT, id=3, ended_at=NIGHT + MIN))
    assert fresh_watch(UPLOAD, NIGHT + 2 * MIN, pending).expected_at == NIGHT + MIN  # a reload in between
    assert fresh_watch(UPLOAD, NIGHT + HOUR, pending).expected_at is None  # a resume long after


def test_the_pipeline_view_lists_ancestors_the_check_and_descendants_once() -> None:
    specs = _specs({"router": {}, "dump": {"schedule": "0 2 * * *", "depends_on": ["router"]},
                    "upload": {"after": "dump"}, "verify": {"after": "upload"}, "report": {"after": "upload"},
                    "other": {}})
    rows = [(r.slug, r.depth, r.via, r.of) for r in pipeline("upload", specs)]
    assert rows == [("router", -2, "depends_on", "dump"), ("dump", -1, "after", "upload"), ("upload", 0, "", ""),
                    ("report", 1, "after", "upload"), ("verify", 1, "after", "upload")]


def test_the_watch_keeps_what_dependencies_need_across_a_restart() -> None:
    from heartwatch.store import codec
    w = Watch(released_at=NIGHT, parent_run=42, parent_failed=True)
    assert codec.watch_from_row(codec.watch_values(w)) == w
    assert codec.watch_values(Watch())[-1] is None  # a check that is fine still stores nothing extra
