"""Recurring maintenance windows: `maintenance = ["Sat 02:00-04:00", "Mon-Fri 12:00-12:30", "23:30-00:30"]`.

A window is an optional set of weekdays (a day, a range `Mon-Fri`, or a list `Sat,Sun`; none = every day) and
a local time range in the check's time zone; a range whose end is not after its start runs past midnight
into the next day. While a window is open the check's alerts are held (heartwatch.core.watching.Hold); when
it ends, what is still true is sent once. Pure: `now` is passed in.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*(?:(?P<days>[A-Za-z][A-Za-z,\- ]*?)\s+)?"
                     r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # weekdays (Monday 0) on which the window opens
    start: time
    end: time


def _day(name: str) -> int:
    key = name.strip().lower()[:3]
    if key not in _DAYS or len(name.strip()) < 3:
        raise ValueError(f"unknown day {name.strip()!r}; use Mon, Tue, Wed, Thu, Fri, Sat, Sun")
    return _DAYS.index(key)


def _days(text: str | None) -> frozenset[int]:
    if not text:
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            first, last = (_day(p) for p in part.split("-", 1))
            days.update(range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)])
        else:
            days.add(_day(part))
    return frozenset(days)


def _time(text: str) -> time:
    hours, minutes = (int(x) for x in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(f"{text} is not a time of day (00:00 to 24:00)")
    return time(0, minutes) if hours == 24 else time(hours, minutes)


@functools.lru_cache(maxsize=1024)
def parse_window(text: str) -> Window:
    """One window; ValueError says what is wrong with it."""
    m = _WINDOW.match(text)
    if not m:
        raise ValueError(f'{text!r} is not a window like "Sat 02:00-04:00", "Mon-Fri 12:00-12:30" or "23:30-00:30"')
    start, end = _time(m["start"]), _time(m["end"])
    if start == end and m["end"] != "24:00":
        raise ValueError(f"{text!r} opens and closes at the same time")
    return Window(_days(m["days"]), start, end)


def parse_windows(texts: tuple[str, ...]) -> tuple[str, ...]:
    """Validate the setting's value (kept as text: the store and the API show it as written)."""
    for text in texts:
        parse_window(text)
    return texts


def window_end(texts: tuple[str, ...], timezone: str, now: datetime) -> datetime | None:
    """When the window open at `now` closes (UTC), or None when no window is open. Overlapping windows: the
    latest end of those open now."""
    if not texts:
        return None
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    ends = []
    for text in texts:
        w = parse_window(text)
        for back in (0, 1):  # a window that opened yesterday may still be open after midnight
            day = local.date() - timedelta(days=back)
            if day.weekday() not in w.days:
                continue
            opens = datetime.combine(day, w.start, tzinfo=zone)
            closes = datetime.combine(day if w.end > w.start else day + timedelta(days=1), w.end, tzinfo=zone)
            if opens.astimezone(UTC) <= now < closes.astimezone(UTC):
                ends.append(closes.astimezone(UTC))
    return max(ends) if ends else None
