"""watching: when a check alerts, as pure decisions with the time passed in (no clock, no sleeping).

`Sim` drives the pure functions the way the scheduler does: pings go through `runs.apply_ping` and then
`watching.after_ping`; the passing of time is `watching.on_due` at the moments the test names.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from heartwatch.core import alert_text, schedule
from heartwatch.core.model import CheckSpec, Ping, PingKind, Run, RunState, StepSpec, Watch
from heartwatch.core.runs import apply_ping
from heartwatch.core.watching import (
    AlertIntent,
    AlertKind,
    Context,
    Hold,
    after_ping,
    fresh_watch,
    next_deadline,
    on_change,
    on_due,
    satisfies,
)

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
CHECK_ID = 1
HOUR = timedelta(hours=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Sim:
    """One check: its watch and runs, fed pings and ticks like the scheduler feeds them."""

    def __init__(self, spec: CheckSpec, now: datetime = T0, remind_every: timedelta = timedelta(0)) -> None:
        self.spec, self.remind_every = spec, remind_every
        self.watch: Watch = fresh_watch(spec, now)
        self.runs: list[Run] = []
        self.alerts: list[AlertIntent] = []
        self.paused = False

    def _keep(self, run: Run) -> None:
        if run.id is None:
            run.id = len(self.runs) + 1
            self.runs.append(run)
        else:
            self.runs[run.id - 1] = run

    def ping(self, kind: PingKind, now: datetime, step: str | None = None, rid: str | None = None,
             exit_code: int | None = None) -> list[AlertIntent]:
        open_runs = [r for r in self.runs if r.ended_at is None]
        applied = apply_ping(CHECK_ID, self.spec, open_runs,
                             Ping(kind=kind, at=now, step=step, rid=rid, exit_code=exit_code))
        for run in applied.changed:
            self._keep(run)
        decision = after_ping(self.spec, self.watch, applied.opened, applied.closed, now, self.ctx())
        self.watch = decision.watch
        self.alerts += decision.alerts
        return decision.alerts

    def tick(self, now: datetime) -> list[AlertIntent]:
        running = [r for r in self.runs if r.state is RunState.RUNNING]
        newest = self.runs[-1] if self.runs else None
        decision = on_due(CHECK_ID, self.spec, self.watch, running, now, self.ctx(), newest)
        for run in decision.runs:
            self._keep(run)
        self.watch = decision.watch
        self.alerts += decision.alerts
        return decision.alerts

    def ctx(self) -> Context:
        return Context(self.remind_every, Hold.PAUSED if self.paused else None)

    def resume(self, now: datetime) -> list[AlertIntent]:
        self.paused = False
        decision = on_change(self.spec, self.watch, now, self.ctx())
        self.watch = decision.watch
        self.alerts += decision.alerts
        return decision.alerts

    def good_run(self, start: datetime, took: timedelta = timedelta(minutes=1)) -> list[AlertIntent]:
        return self.ping(PingKind.START, start) + self.ping(PingKind.SUCCESS, start + took)

    def deadline(self) -> datetime | None:
        return next_deadline(self.watch, [schedule.run_deadline(self.spec, r) for r in self.runs
                                          if r.ended_at is None])

    def kinds(self) -> list[AlertKind]:
        return [a.kind for a in self.alerts]

    def states(self) -> list[RunState]:
        return [r.state for r in self.runs]


DAILY = CheckSpec(slug="nightly", schedule="0 2 * * *", start_grace=timedelta(minutes=15))
HOURLY = CheckSpec(slug="hourly", period=HOUR, start_grace=timedelta(minutes=5))


# --- missed ------------------------------------------------------------------------------------------------


def test_a_new_cron_check_whose_first_expected_start_passes_without_a_ping_is_missed() -> None:
    sim = Sim(DAILY, now=datetime(2024, 5, 1, 1, 0, tzinfo=UTC))
    expected = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    assert sim.watch.expected_at == expected
    assert sim.deadline() == expected + timedelta(minutes=15)

    assert sim.tick(expected + timedelta(minutes=14, seconds=59)) == []  # late, not yet missed
    [alert] = sim.tick(expected + timedelta(minutes=15))

    assert alert.kind is AlertKind.MISSED
    assert alert.expected_at == expected and alert.missed == 1
    [missed] = sim.runs
    assert (missed.state, missed.started_at, missed.ended_at) == (RunState.MISSED, expected,
                                                                   expected + timedelta(minutes=15))
    assert alert.run is missed
    assert sim.watch.down_since == expected + timedelta(minutes=15)
    assert sim.watch.expected_at == expected + timedelta(days=1)  # and on to the next night
    assert alert_text.title(CheckSpec(slug="nightly"), alert) == "DOWN nightly: did not start"
    assert "Expected a start at 2024-05-01 02:00:00 UTC (15m ago, grace 15m); none came." in alert_text.body(
        DAILY, alert, None)


def test_a_start_inside_the_grace_satisfies_the_expectation() -> None:
    sim = Sim(DAILY, now=datetime(2024, 5, 1, 1, 0, tzinfo=UTC))
    expected = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    sim.good_run(expected + timedelta(minutes=14))
    assert sim.watch.expected_at == expected + timedelta(days=1)
    assert sim.tick(expected + timedelta(hours=12)) == []
    assert sim.states() == [RunState.OK]
    assert sim.alerts == []


def test_an_early_start_satisfies_and_causes_no_false_missed() -> None:
    sim = Sim(DAILY, now=datetime(2024, 5, 1, 1, 0, tzinfo=UTC))
    expected = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    assert satisfies(DAILY, expected, expected - timedelta(seconds=5))
    sim.ping(PingKind.START, expected - timedelta(seconds=5))  # the job's clock runs a little fast
    sim.ping(PingKind.SUCCESS, expected + timedelta(minutes=3))

    assert sim.watch.expected_at == expected + timedelta(days=1)
    for hours in (0.25, 1, 12, 24):
        assert sim.tick(expected + timedelta(hours=hours)) == []
    assert sim.alerts == [] and sim.states() == [RunState.OK]


def test_a_manual_run_hours_before_the_schedule_does_not_stand_for_it() -> None:
    sim = Sim(DAILY, now=datetime(2024, 5, 1, 1, 0, tzinfo=UTC))
    expected = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    assert not satisfies(DAILY, expected, expected - timedelta(hours=20))
    sim = Sim(DAILY, now=datetime(2024, 4, 30, 5, 0, tzinfo=UTC))
    sim.good_run(datetime(2024, 4, 30, 6, 0, tzinfo=UTC))
    assert sim.watch.expected_at == expected
    assert [a.kind for a in sim.tick(expected + timedelta(minutes=15))] == [AlertKind.MISSED]


def test_an_outage_coalesces_many_missed_slots_into_one_missed_run_and_one_alert() -> None:
    sim = Sim(HOURLY)  # expects a start at T0+1h, missed after T0+1h05
    [alert] = sim.tick(at(10 * 60))  # nobody looked for ten hours

    assert alert.kind is AlertKind.MISSED
    assert alert.missed == 9  # the slots at 1h ... 9h; the 10h slot is still inside its grace
    assert alert.expected_at == at(60)
    assert sim.states() == [RunState.MISSED]
    assert sim.watch.expected_at == at(10 * 60)
    assert sim.watch.start_deadline == at(10 * 60 + 5)
    assert "8 more expected starts passed" in alert_text.body(HOURLY, alert, None)
    assert sim.tick(at(10 * 60 + 1)) == []


def test_a_period_check_expects_the_next_start_one_period_after_the_last() -> None:
    sim = Sim(HOURLY)
    sim.good_run(at(30))  # early for a period check is simply the new rhythm
    assert sim.watch.expected_at == at(90)
    assert sim.tick(at(94)) == []
    assert [a.kind for a in sim.tick(at(95))] == [AlertKind.MISSED]


# --- runs that go wrong -------------------------------------------------------------------------------------


STEPPED = CheckSpec(slug="backup", max_runtime=2 * HOUR,
                    steps=(StepSpec("dump"), StepSpec("upload", timedelta(minutes=45)), StepSpec("verify")))


def test_timed_out_names_the_last_step_and_when() -> None:
    sim = Sim(STEPPED)
    sim.ping(PingKind.START, at(0))
    sim.ping(PingKind.STEP, at(10), step="dump")
    sim.ping(PingKind.STEP, at(50), step="upload")
    assert sim.deadline() == at(120)

    assert sim.tick(at(119)) == []
    [alert] = sim.tick(at(120))

    assert alert.kind is AlertKind.TIMED_OUT
    assert sim.states() == [RunState.TIMED_OUT]
    assert alert.run is not None and alert.run.last_step is not None
    assert alert.run.last_step.name == "upload"
    assert alert_text.title(CheckSpec(slug="backup"), alert) == 'DOWN backup: timed out at step "upload", still running'
    body = alert_text.body(STEPPED, alert, "http://hw/checks/backup/runs/1")
    assert 'Last step: "upload" at 2024-05-01 10:50:00 UTC' in body
    assert "Limit passed: max_runtime 2h." in body and "It is still running" in body
    assert sim.tick(at(240)) == []  # a timed-out run does not time out twice
    assert sim.deadline() is None


def test_a_step_over_its_max_times_out_before_the_finish_deadline() -> None:
    sim = Sim(STEPPED)
    sim.ping(PingKind.START, at(0))
    sim.ping(PingKind.STEP, at(10), step="dump")
    assert sim.deadline() == at(55)  # "upload" is allowed 45m after "dump"

    assert sim.tick(at(54)) == []
    [alert] = sim.tick(at(55))
    assert alert.kind is AlertKind.TIMED_OUT
    assert alert_text.title(CheckSpec(slug="backup"), alert) == 'DOWN backup: timed out at step "dump", still running'


def test_a_late_finish_of_a_timed_out_run_does_not_recover() -> None:
    # Issue 12, defect 3: the late finish said "UP ... recovered" while the check was still down.
    sim = Sim(STEPPED)
    sim.ping(PingKind.START, at(0))
    sim.tick(at(120))
    assert sim.ping(PingKind.SUCCESS, at(130)) == []
    assert sim.states() == [RunState.TIMED_OUT]
    assert sim.watch.down_since == at(120) and sim.watch.since.late == 0  # the store counts late finishes
    [alert] = sim.good_run(at(200))  # the next good run recovers
    assert alert.kind is AlertKind.RECOVERED


def test_failed_carries_the_exit_status_and_the_output_tail() -> None:
    sim = Sim(STEPPED)
    sim.ping(PingKind.START, at(0))
    sim.ping(PingKind.STEP, at(5), step="dump")
    [alert] = sim.ping(PingKind.FAIL, at(7), exit_code=3)

    assert alert.kind is AlertKind.FAILED
    assert alert.run is not None and alert.run.exit_code == 3
    assert alert_text.title(CheckSpec(slug="backup"), alert) == 'DOWN backup: failed with exit status 3 at step "dump"'
    output = b"x" * 5000 + b"pg_dump: error: connection refused"
    body = alert_text.body(STEPPED, alert, None, output)
    assert "Exit status: 3" in body
    assert body.endswith("pg_dump: error: connection refused")
    assert len(body) < alert_text.OUTPUT_TAIL + 500  # the tail, not the whole output


def test_a_second_failure_while_down_is_news_too() -> None:
    sim = Sim(STEPPED)
    sim.ping(PingKind.FAIL, at(0), exit_code=3)
    sim.ping(PingKind.FAIL, at(10), exit_code=4)
    assert sim.kinds() == [AlertKind.FAILED, AlertKind.FAILED]
    assert sim.watch.down_since == at(0)  # down since the first one


def test_a_new_start_interrupts_the_open_run() -> None:
    sim = Sim(STEPPED)
    sim.ping(PingKind.START, at(0))
    sim.ping(PingKind.STEP, at(5), step="dump")
    [alert] = sim.ping(PingKind.START, at(30))

    assert alert.kind is AlertKind.INTERRUPTED
    assert sim.states() == [RunState.INTERRUPTED, RunState.RUNNING]
    assert alert_text.title(CheckSpec(slug="backup"), alert) == 'DOWN backup: interrupted at step "dump" by a new start'


def test_too_fast_warns_without_marking_the_check_down() -> None:
    spec = CheckSpec(slug="sync", min_runtime=timedelta(minutes=5))
    sim = Sim(spec)
    [alert] = sim.good_run(at(0), took=timedelta(seconds=3))
    assert alert.kind is AlertKind.TOO_FAST
    assert sim.watch.down_since is None and sim.watch.bad_streak == 0
    assert alert_text.title(CheckSpec(slug="sync"), alert) == "WARN sync: finished suspiciously fast (3s)"
    assert sim.good_run(at(10), took=timedelta(minutes=6)) == []


# --- down, recovered, reminders, alert_after --------------------------------------------------------------


def test_recovered_comes_only_after_down_and_says_how_long() -> None:
    sim = Sim(STEPPED)
    assert sim.good_run(at(0)) == []  # up all along: nothing to say

    sim.ping(PingKind.FAIL, at(10), exit_code=1)
    [alert] = sim.good_run(at(10 + 150))

    assert alert.kind is AlertKind.RECOVERED
    assert alert.down_since == at(10)
    assert alert_text.title(CheckSpec(slug="backup"), alert) == "UP backup: recovered after 2h31m down"
    assert "Down for 2h31m, since 2024-05-01 10:10:00 UTC." in alert_text.body(STEPPED, alert, None)
    assert sim.watch.down_since is None
    assert sim.good_run(at(200)) == []  # once


def test_reminders_every_remind_every_while_down() -> None:
    sim = Sim(STEPPED, remind_every=HOUR)
    sim.ping(PingKind.FAIL, at(0), exit_code=1)
    assert sim.deadline() == at(60)

    assert sim.tick(at(59)) == []
    assert [a.kind for a in sim.tick(at(60))] == [AlertKind.REMINDER]
    assert sim.tick(at(61)) == []
    [reminder] = sim.tick(at(120))
    assert reminder.down_since == at(0)
    assert alert_text.title(CheckSpec(slug="backup"), reminder) == "STILL DOWN backup: failed with exit status 1"
    assert "Down for 2h" in alert_text.body(STEPPED, reminder, None)

    sim.good_run(at(130))
    assert sim.watch.next_reminder is None
    assert sim.tick(at(500)) == []
    assert sim.kinds() == [AlertKind.FAILED, AlertKind.REMINDER, AlertKind.REMINDER, AlertKind.RECOVERED]


def test_after_an_outage_only_one_reminder_then_back_on_the_beat() -> None:
    sim = Sim(STEPPED, remind_every=HOUR)
    sim.ping(PingKind.FAIL, at(0), exit_code=1)
    assert len(sim.tick(at(5 * 60 + 30))) == 1  # five reminders fell due while nobody looked
    assert sim.watch.next_reminder == at(6 * 60)
    assert sim.tick(at(6 * 60 - 1)) == []
    assert len(sim.tick(at(6 * 60))) == 1


def test_no_reminders_when_remind_every_is_zero() -> None:
    sim = Sim(STEPPED, remind_every=timedelta(0))
    sim.ping(PingKind.FAIL, at(0), exit_code=1)
    assert sim.watch.next_reminder is None
    assert sim.deadline() is None
    assert sim.tick(at(10_000)) == []


def test_alert_after_three_alerts_from_the_third_bad_run_then_on_each() -> None:
    spec = CheckSpec(slug="flaky", alert_after=3)
    sim = Sim(spec)
    assert sim.ping(PingKind.FAIL, at(0), exit_code=1) == []
    assert sim.ping(PingKind.FAIL, at(10), exit_code=1) == []
    assert sim.watch.down_since is None
    assert [a.kind for a in sim.ping(PingKind.FAIL, at(20), exit_code=1)] == [AlertKind.FAILED]
    assert sim.watch.down_since == at(20)
    assert [a.kind for a in sim.ping(PingKind.FAIL, at(30), exit_code=2)] == [AlertKind.FAILED]
    assert [a.kind for a in sim.good_run(at(40))] == [AlertKind.RECOVERED]

    # A good run resets the streak: two bad runs after it say nothing yet.
    assert sim.ping(PingKind.FAIL, at(50), exit_code=1) == []
    assert sim.good_run(at(60)) == []
    assert sim.ping(PingKind.FAIL, at(70), exit_code=1) == []
    assert sim.ping(PingKind.FAIL, at(80), exit_code=1) == []
    assert len(sim.ping(PingKind.FAIL, at(90), exit_code=1)) == 1


def test_missed_starts_count_towards_alert_after() -> None:
    spec = CheckSpec(slug="hourly", period=HOUR, start_grace=timedelta(minutes=5), alert_after=2)
    sim = Sim(spec)
    assert sim.tick(at(65)) == []  # first missed: below the threshold
    assert sim.states() == [RunState.MISSED]
    [alert] = sim.tick(at(125))
    assert alert.kind is AlertKind.MISSED


# --- pause and resume ----------------------------------------------------------------------------------------


def test_a_paused_check_raises_nothing_and_resume_expects_afresh_from_now() -> None:
    sim = Sim(HOURLY)
    sim.paused = True
    assert sim.ping(PingKind.FAIL, at(10), exit_code=1) == []  # recorded, but no alert
    assert sim.states() == [RunState.FAILED]
    assert sim.watch.bad_streak == 1 and sim.watch.down_since == at(10)  # the truth is kept, the alert held
    assert sim.good_run(at(20)) == []  # and recovered while paused: nothing was said, nothing to take back
    assert sim.watch.down_since is None
    assert sim.watch.expected_at == at(60)  # a paused check's pings do not move the expectation

    resumed = fresh_watch(HOURLY, at(300), sim.watch)  # what the scheduler does on resume
    assert resumed.expected_at == at(360)
    assert resumed.start_deadline == at(365)
    sim.paused, sim.watch = False, resumed
    assert sim.tick(at(364)) == []  # the hours while paused are not missed
    assert [a.kind for a in sim.tick(at(365))] == [AlertKind.MISSED]


def test_resume_keeps_the_streak_and_the_down_state() -> None:
    sim = Sim(STEPPED)
    sim.ping(PingKind.FAIL, at(0), exit_code=1)
    resumed = fresh_watch(STEPPED, at(100), sim.watch)
    assert (resumed.down_since, resumed.bad_streak) == (at(0), 1)


# --- overlapping runs --------------------------------------------------------------------------------------


def test_overlapping_runs_with_rids_each_time_out_on_their_own() -> None:
    spec = CheckSpec(slug="worker", max_runtime=HOUR)
    sim = Sim(spec)
    sim.ping(PingKind.START, at(0), rid="a")
    sim.ping(PingKind.STEP, at(5), step="fetch", rid="a")
    sim.ping(PingKind.START, at(20), rid="b")
    sim.ping(PingKind.STEP, at(25), step="parse", rid="b")
    assert sim.deadline() == at(60)

    [first] = sim.tick(at(60))
    assert first.kind is AlertKind.TIMED_OUT and first.run is not None
    assert (first.run.rid, first.run.last_step and first.run.last_step.name) == ("a", "fetch")
    assert sim.states() == [RunState.TIMED_OUT, RunState.RUNNING]
    assert sim.deadline() == at(80)

    assert sim.tick(at(79)) == []
    [second] = sim.tick(at(80))
    assert second.run is not None and second.run.rid == "b"
    assert "(rid b)" in alert_text.body(spec, second, None)
    assert sim.states() == [RunState.TIMED_OUT, RunState.TIMED_OUT]


def test_overlapping_runs_finishing_do_not_disturb_each_other() -> None:
    spec = CheckSpec(slug="worker", max_runtime=HOUR)
    sim = Sim(spec)
    sim.ping(PingKind.START, at(0), rid="a")
    sim.ping(PingKind.START, at(20), rid="b")
    sim.ping(PingKind.SUCCESS, at(30), rid="a")
    [alert] = sim.tick(at(80))
    assert alert.run is not None and alert.run.rid == "b"
    assert sim.states() == [RunState.OK, RunState.TIMED_OUT]


def test_two_runs_timing_out_at_once_for_the_same_reason_alert_once() -> None:
    spec = CheckSpec(slug="worker", max_runtime=HOUR)
    sim = Sim(spec)
    sim.ping(PingKind.START, at(0), rid="a")
    sim.ping(PingKind.START, at(1), rid="b")
    assert [a.run.rid for a in sim.tick(at(90)) if a.run] == ["a"]  # the same trouble again is not news
    assert sim.states() == [RunState.TIMED_OUT, RunState.TIMED_OUT] and sim.watch.since.bad == 1


# --- daylight saving time ----------------------------------------------------------------------------------


def _job_instant(day: date, local: time, zone: ZoneInfo) -> datetime:
    """When cron actually runs a `M H * * *` job on `day`: a time in the skipped hour runs at the first
    valid minute after it, a time in the repeated hour runs once, at its first occurrence."""
    naive = datetime.combine(day, local)
    while True:
        aware = naive.replace(tzinfo=zone, fold=0)
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive:
            return aware.astimezone(UTC)
        naive += timedelta(minutes=1)  # inside the gap: the clock jumps over it


@pytest.mark.parametrize("zone_name", ["Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize("local", [time(0, 30), time(1, 30), time(2, 0), time(2, 30), time(3, 0), time(12, 0)])
@pytest.mark.parametrize("change_day", ["spring", "fall"])
def test_a_daily_job_across_dst_is_never_missed_and_never_expected_twice(
        zone_name: str, local: time, change_day: str) -> None:
    zone = ZoneInfo(zone_name)
    change = {("Europe/Berlin", "spring"): date(2024, 3, 31), ("Europe/Berlin", "fall"): date(2024, 10, 27),
              ("America/New_York", "spring"): date(2024, 3, 10),
              ("America/New_York", "fall"): date(2024, 11, 3)}[zone_name, change_day]
    spec = CheckSpec(slug="daily", schedule=f"{local.minute} {local.hour} * * *", timezone=zone_name,
                     start_grace=timedelta(minutes=10), max_runtime=timedelta(minutes=30))
    days = [change + timedelta(days=d) for d in range(-3, 4)]
    instants = [_job_instant(d, local, zone) for d in days]

    sim = Sim(spec, now=instants[0] - timedelta(hours=1))
    assert sim.watch.expected_at == instants[0]
    for i, start in enumerate(instants):
        assert sim.watch.expected_at == start, f"day {days[i]}: expected {sim.watch.expected_at}, job at {start}"
        # Look at the check every 20 minutes of the day before the job comes, and just before it.
        previous = instants[i - 1] + timedelta(minutes=15) if i else start - timedelta(hours=1)
        t = previous
        while t < start:
            assert sim.tick(t) == [], f"alert at {t} before the job of {days[i]}"
            t += timedelta(minutes=20)
        sim.good_run(start + timedelta(seconds=20), took=timedelta(minutes=5))
        assert sim.tick(start + timedelta(minutes=15)) == []
        if i + 1 < len(instants):
            assert sim.watch.expected_at == instants[i + 1]
    assert sim.alerts == []
    assert sim.states() == [RunState.OK] * len(days)  # one run a day, no missed run in between


def test_the_repeated_hour_does_not_expect_a_second_run() -> None:
    # 01:30 in New York happens twice on 2024-11-03; the job runs at the first, 05:30 UTC.
    spec = CheckSpec(slug="daily", schedule="30 1 * * *", timezone="America/New_York",
                     start_grace=timedelta(minutes=10))
    first = datetime(2024, 11, 3, 5, 30, tzinfo=UTC)
    sim = Sim(spec, now=first - HOUR)
    sim.good_run(first)
    assert sim.tick(first + HOUR + timedelta(minutes=10)) == []  # the second 01:30 + grace
    assert sim.watch.expected_at == datetime(2024, 11, 4, 6, 30, tzinfo=UTC)


def test_the_skipped_hour_expects_the_job_once_right_after_the_gap() -> None:
    # 02:30 does not exist in Berlin on 2024-03-31; cron runs the job at 03:00 CEST (01:00 UTC).
    spec = CheckSpec(slug="daily", schedule="30 2 * * *", timezone="Europe/Berlin",
                     start_grace=timedelta(minutes=10))
    sim = Sim(spec, now=datetime(2024, 3, 30, 12, 0, tzinfo=UTC))
    assert sim.watch.expected_at == datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    sim.good_run(datetime(2024, 3, 31, 1, 0, 5, tzinfo=UTC))
    assert sim.alerts == []
    assert sim.watch.expected_at == datetime(2024, 4, 1, 0, 30, tzinfo=UTC)
