"""The one table of a check's settings: each key of a `[checks.<slug>]` table, its type, default and meaning.

Everything that reads or shows a check's settings is driven by CHECK_SETTINGS below:
- parse_check (here): the config file, the write API's bodies and `?create=1` -> CheckSpec;
- store/codec.py: the JSON kept in the `checks.spec` column (a key missing from an older row takes its
  default, so a new setting needs no migration);
- web/api.py check_json: a check's settings in API responses (`in_api`);
- web/api_write.py: the keys a body may carry, and spec_table (a spec as a table that parses back to it);
- web/openapi.py: the CheckCreate/CheckPatch/Check schemas;
- docs/configuration.md, which a test holds to this table.

Adding a setting:
1. add the field to CheckSpec in core/model.py (its type and default: the default lives there only);
2. add one CheckSetting(key, kind, meaning) to CHECK_SETTINGS, with the Kind of its value (a Kind says how
   a value is parsed, stored, shown in JSON and described in OpenAPI; add a Kind only for a new type);
3. use it where it matters (runs, watching, ...), and document it in docs/configuration.md.
A test fails when the table and CheckSpec disagree. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from json.encoder import encode_basestring_ascii
from typing import Any

from heartwatch.core import maintenance
from heartwatch.core import values as v
from heartwatch.core.durations import format_duration
from heartwatch.core.model import CheckSpec, StepSpec
from heartwatch.core.values import SLUG_RE, ConfigError

#: JSON text of a str, exactly as json.dumps writes it (ensure_ascii, the default).
json_string = encode_basestring_ascii


def _same(value: Any) -> Any:
    return value


def _seconds(d: timedelta) -> str:
    return float.__repr__(d.total_seconds())


def _from_seconds(s: Any) -> timedelta:
    return timedelta(seconds=s)


def _list(value: Any) -> Any:
    return list(value)


def _str_list_json(value: tuple[str, ...]) -> str:
    return f'[{",".join(map(json_string, value))}]'


@dataclass(frozen=True)
class Kind:
    """How one type of setting value is read, stored and shown. Each function gets a value that is not None:
    a setting whose default is None is optional, and None is left out of tables, null in JSON."""

    name: str  # for people: the docs' type column
    parse: v.Parser  # TOML/JSON input -> value; raises ValueError with the reason
    schema: dict[str, Any]  # OpenAPI: the JSON Schema of the input
    to_table: Callable[[Any], Any] = _same  # value -> input form that parses back (PATCH merges into this)
    to_api: Callable[[Any], Any] = _same  # value -> the check's JSON in API responses
    api_schema: dict[str, Any] | None = None  # OpenAPI: the JSON Schema of to_api's output (default: `schema`)
    to_store: Callable[[Any], str] = json_string  # value -> JSON text in the checks.spec column
    from_store: Callable[[Any], Any] = _same  # the column's JSON value -> value


DURATION_SCHEMA: dict[str, Any] = {
    "type": "string", "pattern": r"^\s*(0|(\d+[smhdwSMHDW])+)\s*$",
    "description": "A duration like 90s, 15m, 2h, 1d or 1h30m", "examples": ["15m", "1h30m"]}


def _steps_table(steps: tuple[StepSpec, ...]) -> list[Any]:
    return [{"name": s.name, "max": format_duration(s.max)} if s.max else s.name for s in steps]


def _steps_api(steps: tuple[StepSpec, ...]) -> list[dict[str, Any]]:
    return [{"name": s.name, "max": format_duration(s.max) if s.max else None} for s in steps]


def _steps_store(steps: tuple[StepSpec, ...]) -> str:
    return "[" + ",".join(
        f'{{"name":{json_string(s.name)},"max":{"null" if s.max is None else _seconds(s.max)}}}' for s in steps) + "]"


def _steps_from_store(items: Any) -> tuple[StepSpec, ...]:
    return tuple(StepSpec(s["name"], None if s["max"] is None else timedelta(seconds=s["max"])) for s in items)


def whole_number(lo: int, hi: int) -> Kind:
    return Kind(f"whole number {lo}-{hi}", v.whole_number(lo, hi), {"type": "integer", "minimum": lo, "maximum": hi},
                to_store=lambda n: repr(int(n)), api_schema={"type": "integer"})


# Parsers of values a config repeats are memoised (values.memo): 100,000 checks share few schedules and zones.
TEXT = Kind("string", v.text, {"type": "string"})
CRON = Kind("cron expression", v.memo(v.cron), {"type": "string", "examples": ["0 2 * * *"]})
TIMEZONE = Kind("IANA time zone", v.memo(v.timezone), {"type": "string", "examples": ["Europe/Berlin"]})
DURATION = Kind("duration", v.memo(v.duration), DURATION_SCHEMA, to_table=format_duration, to_api=format_duration,
                to_store=_seconds, from_store=_from_seconds)
POSITIVE_DURATION = dataclasses.replace(DURATION, name="duration > 0", parse=v.memo(v.positive_duration))
BOOLEAN = Kind("true or false", v.boolean, {"type": "boolean"},
               to_store=lambda b: "true" if b else "false")
STRINGS = Kind("list of strings", v.str_list, {"type": "array", "items": {"type": "string"}},
               to_table=_list, to_api=_list, to_store=_str_list_json, from_store=tuple)
STEPS = Kind(
    "list of steps", v.memo(v.steps, v.steps_key),
    {"type": "array", "items": {"anyOf": [{"type": "string"}, {
        "type": "object", "required": ["name"], "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "max": DURATION_SCHEMA}}]}},
    to_table=_steps_table, to_api=_steps_api,
    api_schema={"type": "array", "items": {"$ref": "#/components/schemas/StepSpec"}},
    to_store=_steps_store, from_store=_steps_from_store)


_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT")


def _methods(value: object) -> tuple[str, ...]:
    methods = tuple(m.upper() for m in v.str_list(value))
    bad = [m for m in methods if m not in _HTTP_METHODS]
    if bad:
        raise ValueError(f"methods are {', '.join(_HTTP_METHODS)}, not {bad[0]}")
    return methods


def _keywords(value: object) -> tuple[str, ...]:
    keywords = v.str_list(value)
    if any(not k for k in keywords):
        raise ValueError("a fail keyword must not be empty (it would match every finish)")
    return keywords


METHODS = dataclasses.replace(STRINGS, name="list of HTTP methods", parse=_methods,
                              schema={"type": "array", "items": {"enum": list(_HTTP_METHODS)}})
KEYWORDS = dataclasses.replace(STRINGS, parse=_keywords,
                               schema={"type": "array", "items": {"type": "string", "minLength": 1}})

WINDOWS = dataclasses.replace(STRINGS, name="list of windows",
                              parse=lambda value: maintenance.parse_windows(v.str_list(value)),
                              schema={"type": "array", "items": {"type": "string", "examples": ["Sat 02:00-04:00"]}})

def _slug(value: object) -> str:
    slug = v.text(value)
    if not SLUG_RE.match(slug):
        raise ValueError("a slug is 1-64 characters of a-z, 0-9, - and _")
    return slug


def _slugs(value: object) -> tuple[str, ...]:
    slugs = tuple(map(_slug, v.str_list(value)))
    repeated = [s for i, s in enumerate(slugs) if s in slugs[:i]]
    if repeated:
        raise ValueError(f"{repeated[0]!r} is named twice")
    return slugs


SLUG = dataclasses.replace(TEXT, name="slug of a check", parse=_slug,
                           schema={"type": "string", "pattern": SLUG_RE.pattern.replace("\\Z", "$"),
                                   "examples": ["nightly-backup"]})
SLUGS = dataclasses.replace(STRINGS, name="list of check slugs", parse=_slugs,
                            schema={"type": "array", "items": SLUG.schema, "examples": [["router", "nas"]]})

_SPEC_DEFAULTS = {f.name: f.default for f in dataclasses.fields(CheckSpec)}


@dataclass(frozen=True)
class CheckSetting:
    """One key of a `[checks.<slug>]` table: also the CheckSpec field and the key in JSON."""

    key: str
    kind: Kind
    meaning: str  # one or two sentences for the docs and the OpenAPI description
    in_api: bool = True  # shown in the check JSON of API responses
    default_text: str | None = None  # the docs' default, where CheckSpec's default does not say it
    secret: bool = False  # may hold tokens: never shown back, and a bad value is not repeated in messages

    @property
    def default(self) -> Any:
        return _SPEC_DEFAULTS[self.key]

    @property
    def optional(self) -> bool:
        """None is a value: the key is left out of tables and is null in JSON."""
        return self.default is None

    def describe_default(self) -> str:
        return self.default_text or describe(self.default)


CHECK_SETTINGS: tuple[CheckSetting, ...] = (
    # `name` is shown in API responses as the display name (the slug when none is set): see check_json.
    CheckSetting("name", TEXT, "Display name, shown on pages and in alerts instead of the slug.", in_api=False,
                 default_text="the slug"),
    CheckSetting("schedule", CRON, "When a start is due: a cron expression (five fields, or @hourly, @daily, "
                 "@weekly, @monthly, @yearly), evaluated in `timezone`. Six or seven fields, @reboot and a "
                 "schedule that never fires are refused. Give this or `period`, not both."),
    CheckSetting("period", POSITIVE_DURATION, "Or: a start is due every `period` after the last one "
                 "(not together with `schedule`)."),
    CheckSetting("timezone", TIMEZONE, "The IANA time zone the schedule is read in.",
                 default_text="[server] timezone (UTC)"),
    CheckSetting("start_grace", DURATION, "How late a start may come before the run counts as missed."),
    CheckSetting("max_runtime", POSITIVE_DURATION, "A started run must finish within this, or it times out."),
    CheckSetting("min_runtime", POSITIVE_DURATION, "A finish sooner than this after the start is suspicious."),
    CheckSetting("steps", STEPS, "The job's ordered chain of named steps; a step's `max` is the time allowed "
                 "since the previous step (or the start)."),
    CheckSetting("strict_steps", BOOLEAN, "When true, a finish that skipped a declared step counts as failed."),
    CheckSetting("alert_after", whole_number(1, 1000), "How many bad runs in a row before the first alert."),
    CheckSetting("alerts", STRINGS, "Apprise URLs for this check, added to [alerts] urls.", in_api=False,
                 secret=True),
    CheckSetting("tags", STRINGS, "Free labels, for grouping and filtering checks."),
    # the alert rules of version 2 (README "Alert rules")
    CheckSetting("recover_after", whole_number(1, 1000),
                 "How many good runs in a row before a down check counts as recovered (flap damping)."),
    CheckSetting("remind_every", DURATION, "While the check stays down, a reminder this often; 0 = never.",
                 default_text="[alerts] remind_every (1d)"),
    CheckSetting("methods", METHODS, "Only pings with these HTTP methods count; others are answered 200, logged "
                 "as ignored and change nothing (a link previewer's GET is not a success).", default_text="all"),
    CheckSetting("fail_keywords", KEYWORDS, "A finish whose body holds one of these counts as failed; the "
                 "matching line is in the alert."),
    CheckSetting("resume_on_ping", BOOLEAN, "When true, a ping to a paused check resumes it."),
    CheckSetting("maintenance", WINDOWS, 'Recurring windows in `timezone`, like "Sat 02:00-04:00" or "Mon-Fri '
                 '12:00-12:30": alerts are held while one is open, and what is still true is sent once it ends.'),
    CheckSetting("description", TEXT, "Free text about the job for people, shown in the API (Healthchecks' "
                 "`desc`)."),
    # dependencies and pipelines (README "Dependencies and pipelines")
    CheckSetting("depends_on", SLUGS, "Parent checks (slugs): while one is down, paused or in maintenance, this "
                 "check's bad runs are recorded but send no alert (its status says \"waiting on\" the parent); when "
                 "the parent recovers, what is still wrong here is sent once, after this check's start_grace."),
    CheckSetting("after", SLUG, "Instead of schedule or period: the slug of the check this one follows. A start "
                 "is expected within start_grace after each successful finish of that check; none after a failure."),
)

#: The settings by key, in the table's order.
BY_KEY: Mapping[str, CheckSetting] = {s.key: s for s in CHECK_SETTINGS}
_PARSERS = {s.key: s.kind.parse for s in CHECK_SETTINGS}
_KNOWN = ", ".join(BY_KEY)


class Synchronous(StrEnum):
    """`[server] synchronous`: what a committed write survives (SQLite in WAL mode)."""

    NORMAL = "normal"  # a process crash (commits are in the WAL; no fsync per commit)
    FULL = "full"  # a power cut too (each commit waits for an fsync)


def describe(value: object) -> str:
    """A default as the docs show it: durations as 15m, lists as [], None as "none"."""
    if value is None:
        return "none"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[]" if not value else "[" + ", ".join(map(str, value)) + "]"
    if value == "":
        return '""'
    return str(value)  # numbers, paths, enums, strings


def parse_check(slug: str, table: object, default_tz: str = "UTC", prefix: str = "checks.") -> CheckSpec:
    """One `[checks.<slug>]` table (also the body of an API create) -> CheckSpec; ConfigError names a bad key."""
    if not SLUG_RE.match(slug):
        raise ConfigError(f"{prefix}{slug}", slug, "a slug is 1-64 characters of a-z, 0-9, - and _")
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}{slug}", table, "expected a table of settings")
    values: dict[str, Any] = {}
    for key, value in table.items():
        parser = _PARSERS.get(key)
        if parser is None:
            raise ConfigError(f"{prefix}{slug}.{key}", value, f"unknown key; known: {_KNOWN}")
        try:  # the key's name is only built for a message (100,000 checks, 4 keys each)
            values[key] = parser(value)
        except ValueError as e:
            raise ConfigError(f"{prefix}{slug}.{key}", value, str(e)) from None
    if "schedule" in values and "period" in values:
        raise ConfigError(f"{prefix}{slug}.period", table["period"], "give either schedule or period, not both")
    if "after" in values and ("schedule" in values or "period" in values):
        raise ConfigError(f"{prefix}{slug}.after", table["after"],
                          f"give either {'schedule' if 'schedule' in values else 'period'} or after, not both")
    if values.get("after") == slug or slug in values.get("depends_on", ()):
        key = "after" if values.get("after") == slug else "depends_on"
        raise ConfigError(f"{prefix}{slug}.{key}", table[key], "a check cannot depend on itself")
    values.setdefault("timezone", default_tz)
    return CheckSpec(slug=slug, **values)


def spec_table(spec: CheckSpec) -> dict[str, Any]:
    """A spec as the `[checks.<slug>]` table (JSON-able) that parses back to it; optional settings that are
    unset are left out."""
    table: dict[str, Any] = {}
    for s in CHECK_SETTINGS:
        value = getattr(spec, s.key)
        if value is not None:
            table[s.key] = s.kind.to_table(value)
    return table


def api_settings(spec: CheckSpec) -> dict[str, Any]:
    """The settings a check's JSON shows in API responses (`in_api`), by key."""
    out: dict[str, Any] = {}
    for s in _IN_API:
        value = getattr(spec, s.key)
        out[s.key] = None if value is None else s.kind.to_api(value)
    return out


_IN_API = tuple(s for s in CHECK_SETTINGS if s.in_api)


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def input_schemas() -> dict[str, dict[str, Any]]:
    """OpenAPI: each key a body may carry -> the JSON Schema of its value (meaning as the description)."""
    return {s.key: {**s.kind.schema, "description": s.meaning} for s in CHECK_SETTINGS}


def output_schemas() -> dict[str, dict[str, Any]]:
    """OpenAPI: each setting in a check's JSON -> the JSON Schema of what check_json shows."""
    out: dict[str, dict[str, Any]] = {}
    for s in _IN_API:
        schema = {**(s.kind.api_schema or s.kind.schema), "description": s.meaning}
        out[s.key] = nullable(schema) if s.optional else schema
    return out


def _compile_encoder() -> Callable[[CheckSpec], str]:
    """spec_to_store, written out from the table as one expression, as dataclasses writes __init__: every start
    with 100,000 config checks encodes each (to create it, or to see the stored one is unchanged), and a loop
    over the table took 3.4 µs a spec, this 2.4 µs, the hand-written encoder it replaced 1.9 µs (timeit, best of 3
    runs of 100,000 encodes of one spec)."""
    namespace: dict[str, Any] = {}
    parts = []
    for i, s in enumerate(CHECK_SETTINGS):
        namespace[f"to_store_{i}"] = s.kind.to_store
        key = repr(f"{json_string(s.key)}:")
        value = f"to_store_{i}(spec.{s.key})"
        parts.append(f"{key} + ('null' if spec.{s.key} is None else {value})" if s.optional else f"{key} + {value}")
    body = ",\n        ".join(parts)
    source = f"def spec_to_store(spec):\n    return '{{' + ','.join((\n        {body})) + '}}'\n"
    exec(source, namespace)
    encoder: Callable[[CheckSpec], str] = namespace["spec_to_store"]
    encoder.__doc__ = """The spec as the store keeps it, without its slug: the text `json.dumps` makes of the
    table's values (durations in seconds, steps as [{"name", "max"}]) with compact separators."""
    return encoder


spec_to_store = _compile_encoder()
_DECODERS = tuple((s.key, s.kind.from_store, s.default) for s in CHECK_SETTINGS)


def spec_fields_from_store(d: Mapping[str, Any]) -> dict[str, Any]:
    """CheckSpec's fields but the slug, from the stored JSON (decoded); a key an older row lacks takes its
    default."""
    fields: dict[str, Any] = {}
    for key, from_store, default in _DECODERS:
        raw = d.get(key)
        fields[key] = default if raw is None else from_store(raw)
    return fields

