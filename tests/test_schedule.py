"""Schedules and deadlines: pure functions with explicit times, including the DST transitions.

The 2025 transitions used below: Europe/Berlin springs forward on 30 March (02:00 CET -> 03:00 CEST,
01:00 UTC) and falls back on 26 October (03:00 CEST -> 02:00 CET, 01:00 UTC); America/New_York
springs forward on 9 March (02:00 EST -> 03:00 EDT, 07:00 UTC) and falls back on 2 November
(02:00 EDT -> 01:00 EST, 06:00 UTC).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from heartwatch.core.model import CheckSpec, Run, RunFlag, RunState, StepMark, StepSpec
from heartwatch.core.schedule import (
    describe_schedule,
    expected_after_start,
    finish_deadline,
    is_too_fast,
    next_expectation,
    next_expected_start,
    run_deadline,
    start_deadline,
    step_deadline,
    validate_schedule,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def cron(expr: str, tz: str = "UTC", **kwargs: object) -> CheckSpec:
    return CheckSpec("job", schedule=expr, timezone=tz, **kwargs)  # type: ignore[arg-type]


def expectations(spec: CheckSpec, after: datetime, until: datetime) -> list[datetime]:
    """Every expected start in (after, until], stepping the way the scheduler does."""
    out: list[datetime] = []
    current = next_expected_start(spec, after)
    while current is not None and current <= until:
        out.append(current)
        current = next_expected_start(spec, current)
    return out


# --- croniter's own behaviour, pinned: the rules in heartwatch.core.schedule build on it -------------


def croniter_next(expr: str, zone: ZoneInfo, after: datetime, n: int) -> list[datetime]:
    times = croniter(expr, after.astimezone(zone))
    return [times.get_next(datetime).astimezone(UTC) for _ in range(n)]


def test_croniter_runs_a_job_in_the_skipped_hour_once_at_the_end_of_the_gap() -> None:
    # 02:30 does not exist in Berlin on 30 March 2025; croniter moves it to 03:00 CEST (01:00 UTC).
    assert croniter_next("30 2 * * *", BERLIN, utc(2025, 3, 29, 12), 3) == [
        utc(2025, 3, 30, 1, 0),
        utc(2025, 3, 31, 0, 30),
        utc(2025, 4, 1, 0, 30),
    ]


def test_croniter_alone_would_expect_a_job_in_the_repeated_hour_twice() -> None:
    # This is why next_expected_start skips the second occurrence of a fixed-time schedule.
    assert croniter_next("30 2 * * *", BERLIN, utc(2025, 10, 25, 12), 3) == [
        utc(2025, 10, 26, 0, 30),  # 02:30 CEST
        utc(2025, 10, 26, 1, 30),  # 02:30 CET, the same wall-clock time again
        utc(2025, 10, 27, 1, 30),
    ]


# --- spring forward -----------------------------------------------------------------------------


def test_berlin_job_in_the_skipped_hour_is_expected_once_at_03_00() -> None:
    spec = cron("30 2 * * *", "Europe/Berlin")
    assert expectations(spec, utc(2025, 3, 28, 12), utc(2025, 4, 1, 12)) == [
        utc(2025, 3, 29, 1, 30),  # 02:30 CET
        utc(2025, 3, 30, 1, 0),  # 03:00 CEST: the first valid time after the gap
        utc(2025, 3, 31, 0, 30),  # 02:30 CEST
        utc(2025, 4, 1, 0, 30),
    ]


def test_new_york_job_in_the_skipped_hour_is_expected_once_at_03_00() -> None:
    spec = cron("30 2 * * *", "America/New_York")
    assert expectations(spec, utc(2025, 3, 8, 12), utc(2025, 3, 10, 12)) == [
        utc(2025, 3, 9, 7, 0),  # 03:00 EDT
        utc(2025, 3, 10, 6, 30),  # 02:30 EDT
    ]


def test_job_just_after_the_gap_is_not_doubled_by_one_moved_into_it() -> None:
    # 02:00 moves to 03:00 on the spring-forward day and coincides with the 03:00 run: expected once.
    spec = cron("0 2,3 * * *", "Europe/Berlin")
    assert expectations(spec, utc(2025, 3, 29, 12), utc(2025, 3, 31, 12)) == [
        utc(2025, 3, 30, 1, 0),
        utc(2025, 3, 31, 0, 0),
        utc(2025, 3, 31, 1, 0),
    ]


@pytest.mark.parametrize(
    ("tz", "after"),
    [("Europe/Berlin", utc(2025, 3, 29, 20)), ("America/New_York", utc(2025, 3, 9, 2))],
)
def test_hourly_job_over_spring_forward_expects_each_real_hour_once(tz: str, after: datetime) -> None:
    found = expectations(cron("15 * * * *", tz), after, after + timedelta(hours=12))
    assert len(found) == 12
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(found))
    assert all(t.minute == 15 for t in found)


def local_times(spec: CheckSpec, zone: ZoneInfo, day: date) -> list[str]:
    """The expected starts that fall on local `day`, as local wall-clock times with their offset."""
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return [t.astimezone(zone).strftime("%H:%M%z") for t in expectations(spec, start - timedelta(seconds=1), end)
            if t < end]


@pytest.mark.parametrize("expr", ["*/15 2 * * *", "* 2 * * *", "*/30 2 * * 0"])
def test_a_wildcard_job_in_the_skipped_hour_is_not_expected_at_all_berlin(expr: str) -> None:
    """Debian's cron: a job whose minute (or hour) field starts with `*` follows the new time, so it has no
    run in the missing hour, and none at 03:00 CEST either (30 March 2025 is a Sunday)."""
    spec = cron(expr, "Europe/Berlin")
    assert local_times(spec, BERLIN, date(2025, 3, 30)) == []
    assert "02:00+0100" in local_times(spec, BERLIN, date(2025, 3, 23))  # the Sundays before and after: normal
    assert "02:30+0200" in local_times(spec, BERLIN, date(2025, 4, 6))


def test_every_15_minutes_in_hour_2_over_both_berlin_transitions() -> None:
    spec = cron("*/15 2 * * *", "Europe/Berlin")
    assert local_times(spec, BERLIN, date(2025, 3, 29)) == ["02:00+0100", "02:15+0100", "02:30+0100", "02:45+0100"]
    assert local_times(spec, BERLIN, date(2025, 3, 30)) == []  # was ["03:00+0200"]: cron never runs that
    assert local_times(spec, BERLIN, date(2025, 3, 31)) == ["02:00+0200", "02:15+0200", "02:30+0200", "02:45+0200"]
    # Fall back: both 02:xx hours are real and the job runs in both, as Debian's cron runs wildcard jobs.
    assert local_times(spec, BERLIN, date(2025, 10, 26)) == [
        "02:00+0200", "02:15+0200", "02:30+0200", "02:45+0200",
        "02:00+0100", "02:15+0100", "02:30+0100", "02:45+0100"]


def test_every_15_minutes_in_the_changed_hours_over_both_new_york_transitions() -> None:
    spring = cron("*/15 2 * * *", "America/New_York")  # 02:00-03:00 is skipped on 9 March 2025
    assert local_times(spring, NEW_YORK, date(2025, 3, 8)) == ["02:00-0500", "02:15-0500", "02:30-0500", "02:45-0500"]
    assert local_times(spring, NEW_YORK, date(2025, 3, 9)) == []
    assert local_times(spring, NEW_YORK, date(2025, 3, 10)) == ["02:00-0400", "02:15-0400", "02:30-0400",
                                                                 "02:45-0400"]
    fall = cron("*/15 1 * * *", "America/New_York")  # 01:00-02:00 happens twice on 2 November 2025
    assert local_times(fall, NEW_YORK, date(2025, 11, 2)) == [
        "01:00-0400", "01:15-0400", "01:30-0400", "01:45-0400",
        "01:00-0500", "01:15-0500", "01:30-0500", "01:45-0500"]
    # And the fixed-time job in the same hours: once after the spring gap, once (the first) in the fall.
    assert local_times(cron("30 2 * * *", "America/New_York"), NEW_YORK, date(2025, 3, 9)) == ["03:00-0400"]
    assert local_times(cron("30 1 * * *", "America/New_York"), NEW_YORK, date(2025, 11, 2)) == ["01:30-0400"]


def test_the_fixed_or_wildcard_decision_reads_the_first_character_as_debian_does() -> None:
    # `0-59/15` names the same minutes as `*/15`, but Debian's cron sets MIN_STAR only for a leading `*`:
    # it is a fixed-time job, run once right after the gap; so it is expected once, at 03:00 CEST.
    assert local_times(cron("0-59/15 2 * * *", "Europe/Berlin"), BERLIN, date(2025, 3, 30)) == ["03:00+0200"]
    assert local_times(cron("0,30 2 * * *", "Europe/Berlin"), BERLIN, date(2025, 3, 30)) == ["03:00+0200"]
    # @hourly is `0 * * * *` (a wildcard hour): 01:00 CET then 03:00 CEST, each a real hour.
    assert local_times(cron("@hourly", "Europe/Berlin"), BERLIN, date(2025, 3, 30))[:3] == [
        "00:00+0100", "01:00+0100", "03:00+0200"]


# --- fall back ----------------------------------------------------------------------------------


def test_berlin_job_in_the_repeated_hour_is_expected_once() -> None:
    spec = cron("30 2 * * *", "Europe/Berlin")
    assert expectations(spec, utc(2025, 10, 25, 12), utc(2025, 10, 27, 12)) == [
        utc(2025, 10, 26, 0, 30),  # 02:30 CEST, the first occurrence
        utc(2025, 10, 27, 1, 30),  # 02:30 CET the next day; 02:30 CET on the 26th is skipped
    ]


def test_new_york_job_in_the_repeated_hour_is_expected_once() -> None:
    spec = cron("30 1 * * *", "America/New_York")
    assert expectations(spec, utc(2025, 11, 1, 12), utc(2025, 11, 3, 12)) == [
        utc(2025, 11, 2, 5, 30),  # 01:30 EDT
        utc(2025, 11, 3, 6, 30),  # 01:30 EST the next day
    ]


def test_looking_from_inside_the_repeated_hour_does_not_expect_the_repeat() -> None:
    # A scheduler (re)started at 02:10 CET, after 02:30 CEST already came: next is tomorrow.
    spec = cron("30 2 * * *", "Europe/Berlin")
    assert next_expected_start(spec, utc(2025, 10, 26, 1, 10)) == utc(2025, 10, 27, 1, 30)
    # From 02:10 CEST, the first occurrence is still ahead.
    assert next_expected_start(spec, utc(2025, 10, 26, 0, 10)) == utc(2025, 10, 26, 0, 30)


@pytest.mark.parametrize(
    ("tz", "after"),
    [("Europe/Berlin", utc(2025, 10, 25, 20)), ("America/New_York", utc(2025, 11, 2, 2))],
)
def test_hourly_job_over_fall_back_expects_each_real_hour_once(tz: str, after: datetime) -> None:
    # The repeated wall-clock hour is a real hour the job runs in, so it is expected in both.
    found = expectations(cron("15 * * * *", tz), after, after + timedelta(hours=12))
    assert len(found) == 12
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(found))


def test_every_ten_minutes_over_fall_back_keeps_a_ten_minute_rhythm() -> None:
    after = utc(2025, 10, 26, 0, 0)
    found = expectations(cron("*/10 * * * *", "Europe/Berlin"), after, after + timedelta(hours=2))
    assert found == [after + timedelta(minutes=10 * i) for i in range(1, 13)]


@pytest.mark.parametrize(
    ("zone", "around"),
    [
        (BERLIN, date(2025, 3, 30)),
        (BERLIN, date(2025, 10, 26)),
        (NEW_YORK, date(2025, 3, 9)),
        (NEW_YORK, date(2025, 11, 2)),
    ],
)
def test_daily_job_is_expected_once_every_local_day_at_its_time(zone: ZoneInfo, around: date) -> None:
    """Never twice, never skipped: for every hour of the day, one expectation per local date, at the
    scheduled wall-clock time when it exists that day, else at the end of the gap."""
    second = timedelta(seconds=1)
    first_day = datetime.combine(around - timedelta(days=2), time(0), zone).astimezone(UTC)
    after_last_day = datetime.combine(around + timedelta(days=4), time(0), zone).astimezone(UTC)
    for hour in range(24):
        for minute in (0, 30, 59):
            spec = cron(f"{minute} {hour} * * *", str(zone))
            local = [t.astimezone(zone) for t in expectations(spec, first_day - second, after_last_day - second)]
            assert [d.date() for d in local] == [around + timedelta(days=i) for i in range(-2, 4)], spec
            for when in local:
                wall = datetime.combine(when.date(), time(hour, minute), zone)
                exists = wall.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall.replace(tzinfo=None)
                if exists:
                    assert (when.hour, when.minute, when.fold) == (hour, minute, 0), spec
                else:
                    # Inside the spring-forward gap: the end of the gap, 03:00 in both zones.
                    assert (when.hour, when.minute) == (3, 0), spec


# --- which schedules are accepted --------------------------------------------------------------


@pytest.mark.parametrize("expr", ["0 2 * * *", " */5 * * * * ", "0 9-17 * * 1-5", "0 0 29 2 *", "30 4 1,15 * 5",
                                  "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@midnight", "@annually",
                                  "@Daily", "0 0 L * *", "0 0 * * 1#5"])
def test_standard_schedules_are_accepted(expr: str) -> None:
    assert validate_schedule(expr) == expr.strip()


@pytest.mark.parametrize(("expr", "words"), [
    ("0 */5 * * * *", "6 fields; expected five (minute hour day month weekday): seconds and years"),
    ("0 2 * * * 2030", "6 fields"),
    ("0 0 2 * * * 2030", "7 fields"),
    ("0 2 * *", "4 fields"),
    ("", "empty"),
    ("@reboot", "@reboot runs when the machine boots"),
    ("@every_5m", "unknown nickname"),
    ("61 * * * *", "not a valid cron expression"),
    ("0 0 31 2 *", "never fires: no month in '2' has a day in '31'"),
    ("0 0 30 2 *", "never fires"),
    ("0 0 30,31 2 *", "never fires"),
    ("15 3 31 4,6,9,11 *", "never fires: no month in '4,6,9,11' has a day in '31'"),
])
def test_other_schedules_are_refused_with_a_reason(expr: str, words: str) -> None:
    with pytest.raises(ValueError, match="^" + words.replace("(", r"\(").replace(")", r"\)")) as refused:
        validate_schedule(expr)
    assert "\n" not in str(refused.value)


def test_rare_schedules_are_not_mistaken_for_never() -> None:
    # 29 February comes every four years (and 2100 is not a leap year: eight years from 2096 to 2104);
    # the fifth Monday of a February only when a leap-year February starts on a Monday (2044, then 2072).
    for expr in ("0 0 29 2 *", "0 0 * 2 1#5"):
        assert validate_schedule(expr) == expr
    assert next_expected_start(cron("0 0 29 2 *"), utc(2097, 1, 1)) == utc(2104, 2, 29)


# --- next_expectation: the scheduler's entry point ----------------------------------------------


def test_cron_expectation_steps_from_the_previous_expectation() -> None:
    spec = cron("0 2 * * *", "Europe/Berlin")
    now = utc(2025, 6, 10, 12)
    # No previous expectation (new or resumed check): the next time after now.
    assert next_expectation(spec, None, None, now) == utc(2025, 6, 11, 0)
    # Otherwise after the previous expectation, whatever the last start and now are.
    assert next_expectation(spec, utc(2025, 6, 8, 0), utc(2025, 6, 8, 0, 1), now) == utc(2025, 6, 9, 0)


def test_period_expectation_follows_the_last_start() -> None:
    spec = CheckSpec("job", period=timedelta(hours=1))
    now = utc(2025, 6, 10, 12)
    assert next_expectation(spec, None, None, now) == utc(2025, 6, 10, 13)
    assert next_expectation(spec, utc(2025, 6, 10, 12, 30), utc(2025, 6, 10, 11, 40), now) == utc(2025, 6, 10, 12, 40)
    assert expected_after_start(spec, utc(2025, 6, 10, 11)) == utc(2025, 6, 10, 12)
    assert next_expected_start(spec, now) is None


def test_period_is_real_elapsed_time_across_dst() -> None:
    spec = CheckSpec("job", period=timedelta(days=1), timezone="Europe/Berlin")
    assert expected_after_start(spec, utc(2025, 3, 29, 12)) == utc(2025, 3, 30, 12)


def test_check_without_schedule_or_period_expects_nothing() -> None:
    spec = CheckSpec("job")
    now = utc(2025, 6, 10, 12)
    assert next_expectation(spec, None, now, now) is None
    assert next_expected_start(spec, now) is None
    assert expected_after_start(spec, now) is None


def test_cron_that_never_matches_expects_nothing() -> None:
    assert next_expected_start(cron("0 0 30 2 *"), utc(2025, 1, 1)) is None


def test_cron_nicknames_are_understood() -> None:
    assert next_expected_start(cron("@daily", "America/New_York"), utc(2025, 6, 10, 12)) == utc(2025, 6, 11, 4)


def test_results_are_utc_even_when_given_another_offset() -> None:
    after = datetime(2025, 6, 10, 14, 0, tzinfo=BERLIN)  # 12:00 UTC
    result = next_expected_start(cron("0 * * * *"), after)
    assert result == utc(2025, 6, 10, 13)
    assert result is not None and result.tzinfo is UTC


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_expected_start(cron("0 * * * *"), datetime(2025, 6, 10, 12))
    with pytest.raises(ValueError, match="aware"):
        next_expectation(cron("0 * * * *"), None, None, datetime(2025, 6, 10, 12))


# --- deadlines ----------------------------------------------------------------------------------


def test_start_deadline_adds_grace_as_real_time_after_converting_to_utc() -> None:
    # Expected 01:30 CET on the spring-forward day; 2h of grace is 04:30 CEST (02:30 UTC),
    # not the 03:30 a wall-clock addition would give.
    spec = cron("30 1 * * *", "Europe/Berlin", start_grace=timedelta(hours=2))
    expected = next_expected_start(spec, utc(2025, 3, 29, 12))
    assert expected == utc(2025, 3, 30, 0, 30)
    assert start_deadline(spec, expected) == utc(2025, 3, 30, 2, 30)


def test_job_running_at_its_local_time_is_never_late_over_a_transition() -> None:
    """What the job's own cron does (runs at 02:30 local, or right after the gap) always lands
    between the expectation and the start deadline, with the default 15 minutes of grace."""
    spec = cron("30 2 * * *", "Europe/Berlin")
    actual_starts = [
        utc(2025, 3, 30, 1, 0, 1),  # spring forward: cron runs it as the clock jumps to 03:00
        utc(2025, 10, 26, 0, 30, 1),  # fall back: cron runs it at the first 02:30 only
        utc(2025, 10, 27, 1, 30, 1),
    ]
    for started in actual_starts:
        expected = next_expected_start(spec, started - timedelta(hours=12))
        assert expected is not None
        assert expected <= started <= start_deadline(spec, expected)


def test_finish_deadline() -> None:
    started = utc(2025, 6, 10, 2)
    assert finish_deadline(cron("0 2 * * *", max_runtime=timedelta(hours=2)), started) == utc(2025, 6, 10, 4)
    assert finish_deadline(cron("0 2 * * *"), started) is None


CHAIN = (StepSpec("dump"), StepSpec("upload", timedelta(minutes=45)), StepSpec("verify", timedelta(minutes=5)))
T0 = utc(2025, 6, 10, 2)


def running(*steps: tuple[str, int], state: RunState = RunState.RUNNING) -> Run:
    return Run(
        check_id=1,
        state=state,
        started_at=T0,
        steps=[StepMark(name, T0 + timedelta(minutes=m)) for name, m in steps],
    )


def test_step_deadline_counts_from_the_previous_step() -> None:
    spec = cron("0 2 * * *", steps=CHAIN)
    assert step_deadline(spec, running(("dump", 10))) == (T0 + timedelta(minutes=55), "upload")
    assert step_deadline(spec, running(("dump", 10), ("upload", 30))) == (T0 + timedelta(minutes=35), "verify")


def test_step_deadline_counts_from_the_start_when_no_step_came() -> None:
    spec = cron("0 2 * * *", steps=(StepSpec("dump", timedelta(minutes=20)), StepSpec("upload")))
    assert step_deadline(spec, running()) == (T0 + timedelta(minutes=20), "dump")


def test_no_step_deadline_when_the_next_step_has_no_max_or_the_chain_is_done() -> None:
    spec = cron("0 2 * * *", steps=CHAIN)
    assert step_deadline(spec, running()) is None  # "dump" declares no max
    assert step_deadline(spec, running(("dump", 1), ("upload", 2), ("verify", 3))) is None
    assert step_deadline(cron("0 2 * * *"), running(("dump", 1))) is None


def test_step_deadline_ignores_undeclared_and_stray_earlier_steps() -> None:
    spec = cron("0 2 * * *", steps=CHAIN)
    run = running(("dump", 10), ("upload", 20), ("compress", 25), ("dump", 26))
    assert step_deadline(spec, run) == (T0 + timedelta(minutes=25), "verify")


def test_step_deadline_follows_a_skipped_step() -> None:
    spec = cron("0 2 * * *", steps=CHAIN)
    assert step_deadline(spec, running(("upload", 30))) == (T0 + timedelta(minutes=35), "verify")


def test_run_deadline_is_the_earliest_of_finish_and_step() -> None:
    spec = cron("0 2 * * *", steps=CHAIN, max_runtime=timedelta(hours=1))
    assert run_deadline(spec, running(("dump", 10))) == T0 + timedelta(minutes=55)  # the upload step
    assert run_deadline(spec, running(("dump", 10), ("upload", 58))) == T0 + timedelta(hours=1)  # finish
    assert run_deadline(cron("0 2 * * *"), running(("dump", 10))) is None


def test_runs_that_are_not_running_have_no_deadline() -> None:
    spec = cron("0 2 * * *", steps=CHAIN, max_runtime=timedelta(hours=1))
    for state in (RunState.TIMED_OUT, RunState.OK, RunState.FAILED):
        run = running(("dump", 10), state=state)
        assert run_deadline(spec, run) is None
        assert step_deadline(spec, run) is None


def finished(minutes: int, state: RunState = RunState.OK, flags: set[RunFlag] | None = None) -> Run:
    return Run(1, state, T0, ended_at=T0 + timedelta(minutes=minutes), flags=flags or set())


def test_too_fast() -> None:
    spec = cron("0 2 * * *", min_runtime=timedelta(minutes=5))
    assert is_too_fast(spec, finished(2))
    assert not is_too_fast(spec, finished(5))
    assert not is_too_fast(spec, finished(2, RunState.FAILED))  # the failure is the news
    assert not is_too_fast(spec, finished(0, flags={RunFlag.START_NOT_SEEN}))  # duration unknown
    assert not is_too_fast(spec, Run(1, RunState.RUNNING, T0))
    assert not is_too_fast(cron("0 2 * * *"), finished(0))


# --- the schedule in words ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "tz", "words"),
    [
        ("0 2 * * *", "Europe/Berlin", "every day at 02:00 Europe/Berlin"),
        ("15 * * * *", "UTC", "every hour at :15"),
        ("30 7 * * 1", "UTC", "every Monday at 07:30 UTC"),
        ("30 7 * * sun", "UTC", "every Sunday at 07:30 UTC"),
        ("30 7 * * 7", "UTC", "every Sunday at 07:30 UTC"),
        ("0 3 1 * *", "UTC", "every month on day 1 at 03:00 UTC"),
        ("* * * * *", "UTC", "every minute"),
        ("*/5 * * * *", "UTC", "every 5 minutes"),
        ("@daily", "America/New_York", "every day at 00:00 America/New_York"),
        ("5 4 * * 1-5", "UTC", "cron 5 4 * * 1-5 (UTC)"),
        ("0 0 1 1 *", "UTC", "cron 0 0 1 1 * (UTC)"),
        ("0 9,17 * * *", "Europe/Berlin", "cron 0 9,17 * * * (Europe/Berlin)"),
        ("0 0 * * * 30", "UTC", "cron 0 0 * * * 30 (UTC)"),
    ],
)
def test_describe_cron(expr: str, tz: str, words: str) -> None:
    assert describe_schedule(cron(expr, tz)) == words


def test_describe_period_and_nothing() -> None:
    assert describe_schedule(CheckSpec("job", period=timedelta(hours=1))) == "every 1h"
    assert describe_schedule(CheckSpec("job", period=timedelta(minutes=90))) == "every 1h30m"
    assert describe_schedule(CheckSpec("job")) == "no schedule"
