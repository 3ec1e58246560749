"""The check form: a `[checks.<slug>]` table as form fields, and the posted form back into that table.

The fields are the settings table (core/settings.py, CHECK_SETTINGS), in its order: a setting added there
shows up in the form, edited as its Kind says (a line of text, a number, a checkbox, one value per line,
the steps' rows, a time zone to pick); the hint beside it is the setting's meaning and default. Only the
short labels are kept here. The posted table is checked by `api_write.validate`, the same code the config
file and the API use, so a bad value gets the message they give, shown beside its field. Nothing here reads
the clock or the store.

Secret settings (alert targets: Apprise URLs carry tokens) are never shown: the edit form lists the current
ones redacted, each with a box to keep it, and takes new ones in a field that starts empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from heartwatch.config import ConfigError, parse_check
from heartwatch.core import settings
from heartwatch.core.durations import format_duration
from heartwatch.core.model import CheckSpec
from heartwatch.core.schedule import describe_schedule, next_starts
from heartwatch.core.settings import CHECK_SETTINGS, CheckSetting, spec_table
from heartwatch.engine.notify import redact
from heartwatch.web.api_errors import ApiError
from heartwatch.web.format import local_text

#: Empty step rows offered below the check's steps (more after a save, or with the page's "add a step").
SPARE_STEP_ROWS = 2
#: Starts listed under the schedule.
PREVIEW_STARTS = 5
#: Shown where the forms would be when there is no login to protect them.
EDITING_OFF = ("Editing in the browser is off: set [web] password in heartwatch.toml (or HEARTWATCH_WEB_PASSWORD) "
               "and restart heartwatch to create, edit and pause checks here.")
CONFIG_CHECK = ("This check is defined in the config file, so it is edited there: a change made here would be put "
                "back by the file on the next start or reload. It can still be paused, muted, held and tested here.")


class Widget(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    CHECKBOX = "checkbox"
    LINES = "lines"  # a list: one value per line
    ZONE = "zone"  # a time zone, with the known names to pick from
    STEPS = "steps"  # rows of name and max
    TARGETS = "targets"  # secret strings (alert URLs): kept ones redacted, new ones typed


#: Short labels; a setting without one is labelled from its key.
LABELS: dict[str, str] = {
    "name": "Display name", "schedule": "Schedule (cron)", "period": "Or a period", "timezone": "Time zone",
    "start_grace": "Start grace", "max_runtime": "Max runtime", "min_runtime": "Min runtime", "steps": "Steps",
    "strict_steps": "Strict steps", "alert_after": "Alert after", "recover_after": "Recover after",
    "remind_every": "Remind every", "alerts": "Alert targets", "tags": "Tags", "methods": "Methods",
    "fail_keywords": "Fail keywords", "resume_on_ping": "Resume on ping", "maintenance": "Maintenance windows",
    "description": "Description",
    "depends_on": "Depends on", "after": "Runs after",
}


def widget_of(setting: CheckSetting) -> Widget:
    kind = setting.kind
    if kind is settings.STEPS:
        return Widget.STEPS
    if kind is settings.TIMEZONE:
        return Widget.ZONE
    if kind is settings.BOOLEAN:
        return Widget.CHECKBOX
    if kind.schema.get("type") == "integer":
        return Widget.NUMBER
    if kind.schema.get("type") == "array":
        return Widget.TARGETS if setting.secret else Widget.LINES
    return Widget.TEXT


@dataclass(frozen=True)
class FormField:
    key: str
    widget: Widget
    label: str
    hint: str

    @property
    def id(self) -> str:
        return f"f-{self.key}"


def form_fields(table: Sequence[CheckSetting] = CHECK_SETTINGS) -> list[FormField]:
    """The form's fields: one per setting, in the table's order, each with its meaning and default as its hint."""
    out = []
    for s in table:
        widget = widget_of(s)
        hint = s.meaning
        if widget in (Widget.LINES, Widget.TARGETS):
            hint += " One per line."
        if widget is not Widget.STEPS and not s.secret:
            hint += f" Default: {s.describe_default()}."
        out.append(FormField(s.key, widget, LABELS.get(s.key, s.key.replace("_", " ").capitalize()), hint))
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
        elif f.key in table:  # optional settings left unset are not in it: their fields stay empty
            state.values[f.key] = _text(table[f.key])
    return state


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
            # Always given: an unticked box is false, even where the setting's default is true.
            on = form.get(f.key) == "on"
            state.values[f.key] = "on" if on else ""
            table[f.key] = on
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
