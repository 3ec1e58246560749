"""How the status page writes times, durations and states for people: in words, in the check's time zone.

Every function here is pure (`now` is passed in) and returns plain text or escaped Markup, so the
templates never build HTML from strings themselves.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from markupsafe import Markup, escape

from heartwatch.core.model import CheckStatus, PingKind, Run, RunFlag, RunState
from heartwatch.store.codec import iso

if TYPE_CHECKING:
    from heartwatch.store.base import StripRun

#: A check's status as a word; the CSS class `st-<value>` gives it its colour.
STATUS_WORDS: dict[CheckStatus, str] = {
    CheckStatus.NEW: "new",
    CheckStatus.UP: "up",
    CheckStatus.RUNNING: "running",
    CheckStatus.LATE: "late",
    CheckStatus.DOWN: "down",
    CheckStatus.PAUSED: "paused",
}

RUN_WORDS: dict[RunState, str] = {
    RunState.RUNNING: "running",
    RunState.OK: "ok",
    RunState.FAILED: "failed",
    RunState.TIMED_OUT: "timed out",
    RunState.INTERRUPTED: "interrupted",
    RunState.MISSED: "missed",
}

FLAG_WORDS: dict[RunFlag, str] = {
    RunFlag.START_NOT_SEEN: "start not seen",
    RunFlag.OUT_OF_ORDER: "step out of order",
    RunFlag.UNDECLARED_STEP: "undeclared step",
    RunFlag.SKIPPED_STEPS: "skipped steps",
    RunFlag.TOO_FAST: "too fast",
    RunFlag.LATE_FINISH: "finished late",
    RunFlag.DUPLICATE_START: "started twice",
    RunFlag.STEPS_TRUNCATED: "steps truncated",
}


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The check's zone; a zone the system no longer knows falls back to UTC rather than failing the page."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_text(dt: datetime, tz: str, seconds: bool = True) -> str:
    """`2024-05-01 02:00:00 CEST`: strftime's "%Y-%m-%d %H:%M:%S %Z", spelled out because strftime took half
    the time of drawing the overview's strips (a tooltip per run, 1,500 on a page)."""
    t = dt.astimezone(zone(tz))
    hm = f"{t.year}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}"
    return f"{hm}:{t.second:02d} {t.tzname() or ''}" if seconds else f"{hm} {t.tzname() or ''}"


def utc_text(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def time_tag(dt: datetime | None, tz: str, seconds: bool = True) -> Markup:
    """A <time> in the check's zone, with UTC on hover (title) and ISO for machines (datetime)."""
    if dt is None:
        return Markup("&ndash;")
    # f-strings with escape() rather than Markup.format: the same text, at a fraction of the cost.
    return Markup(f'<time datetime="{escape(iso(dt))}" title="{escape(utc_text(dt))}">'
                  f'{escape(local_text(dt, tz, seconds))}</time>')


def span_text(delta: timedelta) -> str:
    """A duration for reading: `0.4s`, `12s`, `3m 12s`, `45m`, `2h 05m`, `3d 4h`."""
    s = delta.total_seconds()
    sign = "-" if s < 0 else ""
    s = abs(s)
    if s < 10:
        return f"{sign}{s:.1f}s"
    whole = round(s)
    if whole < 60:
        return f"{sign}{whole}s"
    minutes, sec = divmod(whole, 60)
    if minutes < 60:
        return f"{sign}{minutes}m {sec:02d}s" if sec else f"{sign}{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{sign}{hours}h {minutes:02d}m" if minutes else f"{sign}{hours}h"
    days, hours = divmod(hours, 24)
    return f"{sign}{days}d {hours}h" if hours else f"{sign}{days}d"


def relative(dt: datetime | None, now: datetime) -> str:
    """`3 min ago`, `in 2 h`: coarse on purpose, so a page refreshed every few seconds does not flicker."""
    if dt is None:
        return ""
    seconds = (dt - now).total_seconds()
    future = seconds > 0
    s = abs(seconds)
    if s < 60:
        return "in under a minute" if future else "just now"
    if s < 3600:
        amount = f"{int(s // 60)} min"
    elif s < 86400:
        hours, rest = divmod(int(s), 3600)
        amount = f"{hours} h {rest // 60} min" if hours < 6 and rest >= 60 else f"{hours} h"
    else:
        amount = f"{int(s // 86400)} d"
    return f"in {amount}" if future else f"{amount} ago"


def when_tag(dt: datetime | None, tz: str, now: datetime) -> Markup:
    """Relative first (what people scan for), the absolute local time beside it, UTC on hover."""
    if dt is None:
        return Markup("&ndash;")
    return Markup(f'<span class="rel">{escape(relative(dt, now))}</span>'
                  f' <span class="abs">{time_tag(dt, tz, seconds=False)}</span>')


def duration_text(run: Run, now: datetime) -> str:
    """How long a run took, in a phrase that says what kind of number it is."""
    if run.state is RunState.MISSED:
        return ""
    if run.state is RunState.RUNNING:
        return f"running for {span_text(now - run.started_at)}"
    if run.ended_at is None:
        return "unfinished"
    if RunFlag.START_NOT_SEEN in run.flags:
        return "no start ping, duration unknown"
    return f"took {span_text(run.ended_at - run.started_at)}"


def event_kind_text(kind: str, step: str | None, exit_code: int | None) -> str:
    """What a ping said, as the event log shows it: `start`, `step dump`, `finish`, `fail (exit 3)`."""
    words = {PingKind.START.value: "start", PingKind.STEP.value: "step", PingKind.SUCCESS.value: "finish",
             PingKind.FAIL.value: "fail", PingKind.LOG.value: "log",
             "ignored": "ignored (the check's methods do not count this one)"}
    text = words.get(kind, kind)
    if step:
        text = f"{text} {step}" if kind == PingKind.STEP.value else f"{text} at {step}"
    if exit_code is not None:
        text += f" (exit {exit_code})"
    return text


def run_title(run: StripRun, tz: str) -> str:
    """A run in one line, for the tooltip of its cell in the overview's strip."""
    text = f"run {run.id}: {RUN_WORDS[run.state]}, {local_text(run.started_at, tz)}"
    duration = run.duration
    if duration is not None and run.state is not RunState.MISSED:
        text += f", took {span_text(duration)}"
    if run.last_step is not None:
        text += f", last step {run.last_step}"
    if run.exit_code is not None:
        text += f", exit {run.exit_code}"
    return text


def strip_html(slug: str, runs: list[StripRun], tz: str) -> Markup:
    """The overview's strip of a check's last runs (given newest first), oldest first: one cell per run, linked
    to its page.

    Built here rather than in a template macro: the overview draws thousands of these cells, and a macro
    call per cell was most of the page's rendering time."""
    href = f"/checks/{escape(slug)}/runs/"
    cells = "".join([_strip_cell(href, run, tz) for run in reversed(runs)])
    return Markup(f'<ol class="strip" aria-label="last {len(runs)} runs, oldest first">{cells}</ol>')


@lru_cache(maxsize=8192)
def _strip_cell(href: str, run: StripRun, tz: str) -> str:
    # Kept: a page polled for live refresh draws the same finished runs again; a run that changes is a new key.
    return (f'<li><a class="cell st-{run.state.value}" href="{href}{run.id}" title="{escape(run_title(run, tz))}">'
            f'<span class="sr">{RUN_WORDS[run.state]}</span></a></li>')


#: Characters that change how text around them reads without showing themselves: bidirectional overrides and
#: isolates (a name can "read" backwards) and zero-width characters (two names look the same).
_HIDDEN = re.compile("[\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def visible(value: object) -> object:
    """Jinja's `finalize`: every string a page shows has its hidden characters spelled out (`[U+202E]`), so a
    name or tag cannot hide or reorder what is written around it. Markup stays Markup (the spelling has no
    character HTML gives a meaning)."""
    if isinstance(value, str) and _HIDDEN.search(value):
        shown = _HIDDEN.sub(lambda m: f"[U+{ord(m.group()):04X}]", value)
        return Markup(shown) if isinstance(value, Markup) else shown
    return value
