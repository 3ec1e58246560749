"""When a check's job is expected, and by when each part of a run must have happened.

This module owns the arithmetic of deadlines: the next expected start (cron in the check's time zone,
or a period), the start deadline (expected + start_grace), a run's finish and step deadlines, the
too-fast test, and the schedule in words for the status page. Every function is pure: times go in and
come out as aware UTC datetimes, `now` is always passed in, nothing here reads the clock or stores
anything.

Which schedules: standard five-field cron (minute hour day month weekday) and the nicknames @hourly,
@daily, @weekly, @monthly, @yearly (and croniter's synonyms @midnight, @annually); `validate_schedule`
refuses the rest with a reason: six or seven fields (croniter would read a sixth field as seconds), @reboot,
and expressions that can never fire (`0 0 31 2 *`).

Time zones: cron times are local wall-clock times, so they are computed in the check's zone and
converted to UTC; durations (grace, runtimes, step maxima, periods) are real elapsed time and are
added afterwards, in UTC. Daylight-saving changes follow Debian's cron (cron(8): "time changes of
less than three hours"), which is what the job's own crontab does. Debian's cron sorts jobs by the
first character of the minute and hour fields: a job whose minute or hour field starts with `*` is a
wildcard job (`*/15 2 * * *`, `15 * * * *`, @hourly), any other a fixed-time job (`30 2 * * *`,
`0 2,3 * * *`, @daily):

- spring forward: a wall-clock time inside the skipped hour does not exist. A fixed-time job is run
  by cron right after the change, so it is expected once, at the first valid local time after the
  gap (`30 2 * * *` on the Berlin spring-forward day is expected at 03:00 CEST). A wildcard job
  simply follows the new time: nothing of it is expected in the missing hour (`*/15 2 * * *` has no
  run at all that day, and certainly none at 03:00 CEST).
- fall back: a wall-clock time inside the repeated hour happens twice. A fixed-time job is expected
  once, at the first occurrence; croniter alone would expect it twice, so `next_expected_start`
  skips the second one. A wildcard job is expected at both real instants, because both are real
  hours that the job does run in.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from heartwatch.core.durations import format_duration
from heartwatch.core.model import CheckSpec, Run, RunFlag, RunState

# croniter understands these nicknames; expanded here so the DST rule and the wording can look at
# the fields.
CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: The nicknames as the messages list them (croniter's synonyms @annually and @midnight work too).
_NICKNAMES = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly")

# A repeated wall-clock time is skipped at most once per transition; the bound only guards against
# looping forever should croniter ever return the same instant again and again.
_MAX_SKIPS = 16


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {value.isoformat()}")


#: Nicknames that name no time: refused with a reason of their own.
_NO_TIME = {"@reboot": "@reboot runs when the machine boots, not at times heartwatch can expect;"
                        " give the check a period instead (e.g. 1d), or no schedule at all"}

#: The Gregorian calendar repeats every 400 years (146,097 days, a whole number of weeks), so an
#: expression with no date in 400 years from any start has none ever.
_CALENDAR_CYCLE_YEARS = 400
_CYCLE_START = datetime(2000, 1, 1, tzinfo=UTC)


def validate_schedule(expr: str) -> str:
    """`expr` (stripped) when heartwatch can watch it; otherwise ValueError with a one-line reason.

    Accepted: five cron fields, or one of CRON_MACROS. Refused: any other field count (six or seven
    fields add seconds or years, which croniter would read with seconds last: `0 */5 * * * *` would
    be 05:00:00, 05:00:01, ...), @reboot and unknown nicknames, what croniter cannot read, and
    expressions that never fire (`0 0 31 2 *`, `0 0 30 2 *`). "Never" is decided on the calendar
    alone: croniter looks for a match within one full 400-year cycle, which costs about 6 ms for an
    expression that has none and 0.1-1 ms for one that has (measured with croniter 7).
    """
    text = expr.strip()
    if not text:
        raise ValueError("empty; expected five cron fields (minute hour day month weekday) or a nickname"
                         f" like @daily ({', '.join(_NICKNAMES)})")
    if text.startswith("@"):
        nickname = text.lower()
        if nickname in _NO_TIME:
            raise ValueError(_NO_TIME[nickname])
        if nickname not in CRON_MACROS:
            raise ValueError(f"unknown nickname; use one of {', '.join(_NICKNAMES)}, or five cron fields")
        return text
    fields = text.split()
    if len(fields) != 5:
        extra = ": seconds and years are not part of standard cron" if len(fields) in (6, 7) else ""
        raise ValueError(f"{len(fields)} fields; expected five (minute hour day month weekday){extra}")
    if not croniter.is_valid(text):
        raise ValueError("not a valid cron expression (five fields: minute hour day month weekday)")
    try:
        croniter(text, _CYCLE_START, max_years_between_matches=_CALENDAR_CYCLE_YEARS).get_next(datetime)
    except CroniterBadDateError:
        day, month, weekday = fields[2:]
        why = (f"no month in {month!r} has a day in {day!r}" if weekday in ("*", "?")
               else "no date matches its day, month and weekday fields")
        raise ValueError(f"never fires: {why}") from None
    except CroniterError as e:  # croniter accepted it above but cannot step through it
        raise ValueError(f"not a valid cron expression: {e}") from None
    return text


def _cron_fields(expr: str) -> list[str]:
    text = expr.strip()
    return CRON_MACROS.get(text.lower(), text).split()


def _is_fixed_time(expr: str) -> bool:
    """True for schedules like `30 2 * * *` whose minute and hour fields do not start with `*`: Debian's
    cron runs only these again after the clock jumps forward and not twice when it goes back (its
    MIN_STAR / HR_STAR flags, set from the first character of each field)."""
    fields = _cron_fields(expr)
    return len(fields) >= 2 and not fields[0].startswith("*") and not fields[1].startswith("*")


@functools.lru_cache(maxsize=1024)
def _wall_clock_fields(expr: str) -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """The minutes and hours `expr` names (None for "every"), to tell a time croniter moved out of the
    spring-forward gap from a time the schedule really has."""
    minutes, hours = croniter(" ".join(_cron_fields(expr))).expanded[:2]
    return (None if "*" in minutes else frozenset(int(m) for m in minutes),
            None if "*" in hours else frozenset(int(h) for h in hours))


def _on_the_schedule(expr: str, local: datetime) -> bool:
    minutes, hours = _wall_clock_fields(expr)
    return (minutes is None or local.minute in minutes) and (hours is None or local.hour in hours)


def _is_repeat(local: datetime) -> bool:
    """True when `local` is the second occurrence of a wall-clock time the clock went back over."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def next_expected_start(spec: CheckSpec, after: datetime) -> datetime | None:
    """The first cron schedule time strictly after `after`, in UTC.

    None for period checks (see `expected_after_start`), for checks with no schedule, and for a
    cron expression that never matches again (e.g. `0 0 30 2 *`).
    """
    if spec.schedule is None:
        return None
    _require_aware(after, "after")
    return _next_cron(spec.schedule, spec.timezone, after.astimezone(UTC))


@functools.lru_cache(maxsize=8192)
def _next_cron(schedule: str, timezone: str, after: datetime) -> datetime | None:
    # Cached: a croniter step costs about 0.3 ms, and checks sharing a schedule ask the same question
    # (every check created at one start asks "after now"; checks due together ask "after that slot").
    zone = ZoneInfo(timezone)
    fixed = _is_fixed_time(schedule)
    times = croniter(" ".join(_cron_fields(schedule)), after.astimezone(zone))
    for _ in range(_MAX_SKIPS):
        try:
            candidate: datetime = times.get_next(datetime)
        except CroniterBadDateError:
            return None
        at = candidate.astimezone(UTC)
        # Strictly after, checked on real instants: around a transition croniter's wall-clock
        # stepping could otherwise hand back the instant we started from.
        if at <= after:
            continue
        # Re-derive the local time from the instant so `fold` is zoneinfo's, not croniter's.
        local = at.astimezone(zone)
        if fixed and _is_repeat(local):
            continue
        # croniter moves a time that falls in the spring-forward gap to the end of the gap; cron does
        # that only for fixed-time jobs, so a wildcard job's moved time (`*/15 2 * * *` -> 03:00) is
        # not one it runs at.
        if not fixed and not _on_the_schedule(schedule, local):
            continue
        return at
    return None


def expected_after_start(spec: CheckSpec, last_start: datetime) -> datetime | None:
    """For a period check, the start expected after one that came at `last_start`; else None."""
    if spec.period is None:
        return None
    _require_aware(last_start, "last_start")
    return last_start.astimezone(UTC) + spec.period


def next_expectation(
    spec: CheckSpec,
    previous_expected: datetime | None,
    last_start: datetime | None,
    now: datetime,
) -> datetime | None:
    """The next start the scheduler should wait for, in UTC; None when the check expects nothing.

    The rule:
    - cron: the first schedule time after `previous_expected`, or after `now` when there is no
      previous expectation (a new check, or one just resumed). Stepping from the previous
      expectation rather than from the last start keeps every schedule time accounted for, exactly
      once, even when a job starts early or late.
    - period: `last_start + period`, or `now + period` when no start has been seen yet. The result
      may lie in the past (the job is overdue); the caller compares it with `now`.
    """
    _require_aware(now, "now")
    if spec.schedule is not None:
        return next_expected_start(spec, previous_expected if previous_expected is not None else now)
    if spec.period is not None:
        return expected_after_start(spec, last_start if last_start is not None else now)
    return None


def start_deadline(spec: CheckSpec, expected: datetime) -> datetime:
    """When an expected start counts as missed: the expected time (already converted from local
    time to UTC) plus start_grace, added as real elapsed time."""
    _require_aware(expected, "expected")
    return expected.astimezone(UTC) + spec.start_grace


def finish_deadline(spec: CheckSpec, started_at: datetime) -> datetime | None:
    """When a run started at `started_at` times out (start + max_runtime); None without a limit."""
    if spec.max_runtime is None:
        return None
    _require_aware(started_at, "started_at")
    return started_at.astimezone(UTC) + spec.max_runtime


def step_deadline(spec: CheckSpec, run: Run) -> tuple[datetime, str] | None:
    """When the next declared step of a running run is overdue, and that step's name.

    The run's position in the chain is the furthest declared step seen so far (undeclared steps and
    a late repeat of an earlier step do not move it back); the clock starts at that step's latest
    mark, or at the start when no declared step was seen. None when the run is not running, when
    every declared step was seen, or when the next step declares no `max`: its allowance is only
    known once the step before it has come.
    """
    if run.state is not RunState.RUNNING or not spec.steps:
        return None
    position, since = -1, run.started_at
    for mark in run.steps:
        index = spec.step_index(mark.name)
        if index is not None and index >= position:
            position, since = index, mark.at
    if position + 1 >= len(spec.steps):
        return None
    waiting_for = spec.steps[position + 1]
    if waiting_for.max is None:
        return None
    _require_aware(since, "step time")
    return since.astimezone(UTC) + waiting_for.max, waiting_for.name


def run_deadline(spec: CheckSpec, run: Run) -> datetime | None:
    """The earliest time at which a running run times out (finish or next step); None when nothing
    can time it out. Runs that are no longer running have no deadline: a timed-out run waiting for a
    late finish must not time out twice."""
    if run.state is not RunState.RUNNING:
        return None
    deadlines = [finish_deadline(spec, run.started_at)]
    step = step_deadline(spec, run)
    if step is not None:
        deadlines.append(step[0])
    return min((d for d in deadlines if d is not None), default=None)


def is_too_fast(spec: CheckSpec, run: Run) -> bool:
    """True when a successfully finished run took less than min_runtime.

    Only ok runs qualify (a failed run is already news), and only when the start was seen: a run
    opened by its finish ping has no measurable duration.
    """
    if spec.min_runtime is None or run.state is not RunState.OK or RunFlag.START_NOT_SEEN in run.flags:
        return False
    duration = run.duration
    return duration is not None and duration < spec.min_runtime


# --- the schedule in words ----------------------------------------------------------------------

_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_WEEKDAY_ABBREVIATIONS = {day[:3].lower(): i for i, day in enumerate(_WEEKDAYS)}
_EVERY_N = re.compile(r"\*/(\d+)")


def _number(field: str, low: int, high: int) -> int | None:
    if not (field.isascii() and field.isdigit() and len(field) <= 4):
        return None
    value = int(field)
    return value if low <= value <= high else None


def _weekday(field: str) -> str | None:
    index = _WEEKDAY_ABBREVIATIONS.get(field.lower())
    if index is None:
        number = _number(field, 0, 7)
        index = None if number is None else number % 7  # cron allows 7 for Sunday
    return None if index is None else _WEEKDAYS[index]


def _phrase(fields: list[str], zone: str) -> str | None:
    """Words for the common shapes of a five-field cron expression; None for anything else."""
    minute, hour, day, month, weekday = fields
    if month != "*":
        return None
    if (hour, day, weekday) == ("*", "*", "*"):
        if minute == "*":
            return "every minute"
        every = _EVERY_N.fullmatch(minute)
        if every and 0 < int(every.group(1)) < 60:
            n = int(every.group(1))
            return "every minute" if n == 1 else f"every {n} minutes"
    m = _number(minute, 0, 59)
    if m is None:
        return None
    if (hour, day, weekday) == ("*", "*", "*"):
        # Minutes past the hour are the same in every zone that matters here; no zone name needed.
        return f"every hour at :{m:02d}"
    h = _number(hour, 0, 23)
    if h is None:
        return None
    at = f"at {h:02d}:{m:02d} {zone}"
    if (day, weekday) == ("*", "*"):
        return f"every day {at}"
    if day == "*" and (name := _weekday(weekday)) is not None:
        return f"every {name} {at}"
    if weekday == "*" and (d := _number(day, 1, 31)) is not None:
        return f"every month on day {d} {at}"
    return None


def describe_schedule(spec: CheckSpec) -> str:
    """The schedule in words for the status page, e.g. "every day at 02:00 Europe/Berlin".

    Common shapes are phrased by hand; anything else is shown as the cron expression and its zone,
    e.g. "cron 5 4 * * 1-5 (UTC)".
    """
    if spec.schedule is not None:
        fields = _cron_fields(spec.schedule)
        phrase = _phrase(fields, spec.timezone) if len(fields) == 5 else None
        return phrase or f"cron {' '.join(spec.schedule.split())} ({spec.timezone})"
    if spec.period is not None:
        return f"every {format_duration(spec.period)}"
    if spec.after is not None:
        return f"after each good finish of {spec.after}, within {format_duration(spec.start_grace)}"
    return "no schedule"


def next_starts(spec: CheckSpec, after: datetime, count: int = 5) -> list[datetime]:
    """The next `count` expected starts of a cron check after `after`, in UTC (fewer if the schedule ends).

    The forms show these as the schedule is typed. A period check has none of its own: its starts follow
    the job's previous start, so the list would be a guess.
    """
    starts: list[datetime] = []
    at = after
    while len(starts) < count:
        found = next_expected_start(spec, at)
        if found is None:
            break
        starts.append(found)
        at = found
    return starts
