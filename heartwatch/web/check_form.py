"""The check form: a `[checks.<slug>]` table as form fields, and the posted form back into that table.

The fields are the table's keys (`api_write.CHECK_KEYS`, which come from the spec itself), so a setting
added to the spec shows up in the form; how each one is edited (a line of text, a number, a checkbox,
one value per line, the steps' rows) and its label are `WIDGETS` below. The posted table is checked by
`api_write.validate`, the same code the config file and the API use, so a bad value gets the message
they give, shown beside its field. Nothing here reads the clock or the store.

Alert targets are Apprise URLs that carry tokens, and no page shows them: the edit form lists the current
ones redacted, each with a box to keep it, and takes new ones in a field that starts empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from heartwatch.config import ConfigError, parse_check
from heartwatch.core.durations import format_duration
from heartwatch.core.model import CheckSpec
from heartwatch.core.schedule import describe_schedule, next_starts
from heartwatch.engine.notify import redact
from heartwatch.web.api_write import CHECK_KEYS, ApiError, spec_table
from heartwatch.web.format import local_text

#: Empty step rows offered below the check's steps (more after a save, or with the page's "add a step").
SPARE_STEP_ROWS = 2
#: Starts listed under the schedule.
PREVIEW_STARTS = 5
#: Shown where the forms would be when there is no login to protect them.
EDITING_OFF = ("Editing in the browser is off: set [web] password in heartwatch.toml (or HEARTWATCH_WEB_PASSWORD) "
               "and restart heartwatch to create, edit and pause checks here.")
CONFIG_CHECK = ("This check is defined in the config file, so it is edited there: a change made here would be put "
                "back by the file on the next start or reload. It can still be paused and tested here.")


class Widget(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    CHECKBOX = "checkbox"
    LINES = "lines"  # a list: one value per line
    ZONE = "zone"  # a time zone, with the known names to pick from
    STEPS = "steps"  # rows of name and max
    TARGETS = "targets"  # alert URLs: kept ones redacted, new ones typed


@dataclass(frozen=True)
class Widgeted:
    widget: Widget
    label: str
    hint: str = ""


#: How each key of a check table is edited. A key without an entry is a line of text labelled with its name.
WIDGETS: dict[str, Widgeted] = {
    "name": Widgeted(Widget.TEXT, "Display name", "Optional; the slug is shown when empty."),
    "schedule": Widgeted(Widget.TEXT, "Schedule (cron)",
                         "Five fields: minute hour day month weekday, or @hourly, @daily, @weekly, @monthly. "
                         "Leave empty for a period."),
    "period": Widgeted(Widget.TEXT, "Or a period", "A start every so long after the previous one, e.g. 1h."),
    "timezone": Widgeted(Widget.ZONE, "Time zone", "The zone the schedule is read in, e.g. Europe/Berlin."),
    "start_grace": Widgeted(Widget.TEXT, "Start grace", "How late a start may come before it counts as missed "
                            "(default 15m)."),
    "max_runtime": Widgeted(Widget.TEXT, "Max runtime", "A started run must finish within this, e.g. 2h."),
    "min_runtime": Widgeted(Widget.TEXT, "Min runtime", "A finish sooner than this is suspicious, e.g. 30s."),
    "steps": Widgeted(Widget.STEPS, "Steps", "The job's named steps in order; max is the time allowed since the "
                      "previous step."),
    "strict_steps": Widgeted(Widget.CHECKBOX, "Strict steps", "A finish that skipped a declared step counts as "
                             "failed."),
    "alert_after": Widgeted(Widget.NUMBER, "Alert after", "Consecutive bad runs before the first alert (default 1)."),
    "recover_after": Widgeted(Widget.NUMBER, "Recover after", "Consecutive good runs before it counts as "
                              "recovered (default 1)."),
    "remind_every": Widgeted(Widget.TEXT, "Remind every", "While down, a reminder this often; 0 = never."),
    "alerts": Widgeted(Widget.TARGETS, "Alert targets", "Apprise URLs for this check, added to [alerts] urls; "
                       "one per line."),
    "tags": Widgeted(Widget.LINES, "Tags", "One per line."),
    "methods": Widgeted(Widget.LINES, "Methods", "Only pings with these HTTP methods count; one per line."),
    "fail_keywords": Widgeted(Widget.LINES, "Fail keywords", "A finish whose body contains one of these counts "
                              "as failed; one per line."),
    "resume_on_ping": Widgeted(Widget.CHECKBOX, "Resume on ping", "A ping to a paused check resumes it."),
    "maintenance": Widgeted(Widget.LINES, "Maintenance windows", "Recurring windows without alerts, in the "
                            "check's zone, e.g. Sat 02:00-04:00; one per line."),
}

#: The order of the form: the keys above first, as listed, then any other key of the table.
_ORDER = {key: i for i, key in enumerate(WIDGETS)}


@dataclass(frozen=True)
class FormField:
    key: str
    widget: Widget
    label: str
    hint: str

    @property
    def id(self) -> str:
        return f"f-{self.key}"


def form_fields(keys: Sequence[str] | frozenset[str] = CHECK_KEYS) -> list[FormField]:
    """The form's fields, one per key of a check table, in the form's order."""
    out = []
    for key in sorted(keys, key=lambda k: (_ORDER.get(k, len(_ORDER)), k)):
        w = WIDGETS.get(key, Widgeted(Widget.TEXT, key.replace("_", " ").capitalize()))
        out.append(FormField(key, w.widget, w.label, w.hint))
    return out


FIELDS = form_fields()


@dataclass
class KeptTarget:
    index: int  # in the current spec's alerts
    shown: str  # redacted
    kept: bool = True


@dataclass
class FormState:
    """What the form shows: the values as typed (strings), the step rows, the targets, and any errors."""

    slug: str = ""
    values: dict[str, str] = field(default_factory=dict)
    steps: list[tuple[str, str]] = field(default_factory=list)
    targets: list[KeptTarget] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def step_rows(self) -> list[tuple[str, str]]:
        return [*self.steps, *[("", "")] * SPARE_STEP_ROWS]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else ""
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value)
    return "" if value is None else str(value)


def state_of(spec: CheckSpec) -> FormState:
    """The form for an existing check, filled from its spec."""
    table = spec_table(spec)
    state = FormState(spec.slug)
    for f in FIELDS:
        if f.widget is Widget.STEPS:
            state.steps = [(s.name, format_duration(s.max) if s.max else "") for s in spec.steps]
        elif f.widget is Widget.TARGETS:
            state.targets = [KeptTarget(i, redact(url)) for i, url in enumerate(spec.alerts)]
        elif f.key in table:
            state.values[f.key] = _text(table[f.key])
        elif hasattr(spec, f.key):
            state.values[f.key] = _text(_plain(getattr(spec, f.key)))
    return state


def _plain(value: Any) -> Any:
    """A spec value as the table would write it (durations as `1h30m`)."""
    if isinstance(value, timedelta):
        return format_duration(value)
    return value


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_form(form: Mapping[str, str], current: CheckSpec | None, slug: str) -> tuple[FormState, dict[str, Any]]:
    """The posted form as typed (to show again) and as the check table it stands for.

    An empty field is a setting left at its default; `current` gives the alert targets a "keep" box refers to.
    """
    state = FormState(slug)
    table: dict[str, Any] = {}
    for f in FIELDS:
        if f.widget is Widget.STEPS:
            rows = []
            i = 0
            while f"step_name_{i}" in form or f"step_max_{i}" in form:
                rows.append((form.get(f"step_name_{i}", "").strip(), form.get(f"step_max_{i}", "").strip()))
                i += 1
            state.steps = [r for r in rows if r != ("", "")]
            steps: list[Any] = [{"name": n, "max": m} if m else n for n, m in state.steps]
            if steps:
                table["steps"] = steps
        elif f.widget is Widget.TARGETS:
            kept = []
            for i, url in enumerate(current.alerts if current else ()):
                keep = form.get(f"keep_alert_{i}") == "on"
                state.targets.append(KeptTarget(i, redact(url), keep))
                if keep:
                    kept.append(url)
            new = _lines(form.get("alerts", ""))
            state.values["alerts"] = form.get("alerts", "")
            if kept or new:
                table["alerts"] = kept + new
        elif f.widget is Widget.CHECKBOX:
            on = form.get(f.key) == "on"
            state.values[f.key] = "on" if on else ""
            if on:
                table[f.key] = True
        elif f.widget is Widget.LINES:
            raw = form.get(f.key, "")
            state.values[f.key] = raw
            if _lines(raw):
                table[f.key] = _lines(raw)
        else:
            raw = form.get(f.key, "").strip()
            state.values[f.key] = raw
            if raw:
                table[f.key] = raw
    return state, table


def error_of(e: ApiError) -> tuple[str, str]:
    """(field, message) of a refusal, the message as the API gives it."""
    return e.field or "slug", e.message


# --- the schedule, explained ------------------------------------------------------------------------------


@dataclass
class Preview:
    """The schedule in words and its next starts in the check's zone, or what is wrong with it."""

    words: str = ""
    starts: list[str] = field(default_factory=list)
    zone: str = ""
    error: str = ""
    field: str = ""


def preview(values: Mapping[str, str], default_tz: str, now: datetime) -> Preview:
    """Explain the schedule (or period) and time zone of a form, parsed as the config would parse them."""
    table = {k: values[k].strip() for k in ("schedule", "period", "timezone") if values.get(k, "").strip()}
    if "schedule" not in table and "period" not in table:
        return Preview(words="no schedule yet: type a cron expression or a period")
    try:
        spec = parse_check("preview", table, default_tz, prefix="")
    except ConfigError as e:
        key = e.key.removeprefix("preview.")
        return Preview(error=f"{key}: {e.reason}", field=key)
    starts = [local_text(at, spec.timezone, seconds=False) for at in next_starts(spec, now, PREVIEW_STARTS)]
    if spec.period is not None:
        words = f"{describe_schedule(spec)}, counted from the job's previous start"
    elif not starts:
        words = f"{describe_schedule(spec)}: this schedule never comes round again"
    else:
        words = describe_schedule(spec)
    return Preview(words=words, starts=starts, zone=spec.timezone)
