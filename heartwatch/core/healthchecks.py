"""Healthchecks' check fields, mapped onto heartwatch's check settings and back. Pure; web/hc_api.py serves it.

Healthchecks (API v3) describes a check with `timeout` (a "simple" check: a ping expected every timeout) or
`schedule` + `tz` (a cron check), a `grace`, space-separated `tags`, `desc`, `manual_resume` and `methods`.
What each becomes here (docs/migrating.md has the table for people):

- timeout -> `period`; schedule/tz -> `schedule`/`timezone` (five-field cron only: OnCalendar is refused);
- grace -> `start_grace`, and also `max_runtime`: in Healthchecks a started run that has not finished within
  the grace time makes the check down, which is what max_runtime does here;
- tags -> `tags` (a list); desc -> `description`; name -> `name`; slug -> the slug (it names the check here,
  so it cannot change);
- manual_resume -> the opposite of `resume_on_ping` (Healthchecks resumes a paused check on a ping unless
  manual_resume is set);
- methods "" or "POST" -> `methods` [] or ["POST"];
- failure_kw (comma-separated) -> `fail_keywords`.
Statuses: new, up, grace (heartwatch's late), down, paused; a running check is "up" with `started` true, as v3
shows it. Flips (status changes) are read from the alerts: going down, and recovered.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from heartwatch.core.model import CheckSpec, CheckStatus
from heartwatch.core.settings import parse_check, spec_table
from heartwatch.core.values import SLUG_RE, ConfigError

#: Healthchecks' limits on timeout and grace, in seconds.
MIN_SECONDS, MAX_SECONDS = 60, 31_536_000
#: What a new Healthchecks check gets without timeout or schedule, and without grace.
DEFAULT_TIMEOUT, DEFAULT_GRACE = 86_400, 3_600
UNIQUE_FIELDS = ("name", "slug", "tags", "timeout", "grace")
STATUS = {CheckStatus.NEW: "new", CheckStatus.UP: "up", CheckStatus.RUNNING: "up", CheckStatus.LATE: "grace",
          CheckStatus.DOWN: "down", CheckStatus.PAUSED: "paused"}
#: Event kinds -> the `type` of Healthchecks' ping list (a step has no equivalent: a log entry there).
PING_TYPES = {"start": "start", "success": "success", "fail": "fail", "log": "log", "step": "log", "ignored": "ign"}
#: Alert kinds that take a check down (a flip to down when it was up).
DOWN_KINDS = frozenset({"missed", "timed_out", "failed", "interrupted", "too_fast"})

_STRINGS = ("name", "slug", "tags", "desc", "schedule", "tz", "methods", "channels", "failure_kw")
_NON_SLUG = re.compile(r"[^a-z0-9_-]+")


class HcError(Exception):
    """A field Healthchecks' API would refuse: answered 400 with `json validation error: ...`."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def slugify(name: str) -> str:
    """A slug from a name, as Healthchecks makes one: lower case, runs of other characters become one dash."""
    return _NON_SLUG.sub("-", name.lower()).strip("-")[:64].strip("-")


def new_slug(doc: Mapping[str, Any]) -> str:
    """The slug of a check created from `doc`: its slug, else one made from its name, else a random one."""
    slug = doc.get("slug") or slugify(str(doc.get("name") or ""))
    return slug or f"check-{secrets.token_hex(4)}"


def check_doc(doc: Mapping[str, Any]) -> None:
    """Raise HcError for a value of the wrong type or outside Healthchecks' limits (its strict validation)."""
    for key in _STRINGS:
        if key in doc and not isinstance(doc[key], str):
            raise HcError(f"json validation error: {key} is not a string")
    for key in ("timeout", "grace"):
        if key in doc:
            value = doc[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise HcError(f"json validation error: {key} is not a number")
            if value < MIN_SECONDS:
                raise HcError(f"json validation error: {key} is too small")
            if value > MAX_SECONDS:
                raise HcError(f"json validation error: {key} is too large")
    if "manual_resume" in doc and not isinstance(doc["manual_resume"], bool):
        raise HcError("json validation error: manual_resume is not a boolean")
    if doc.get("methods") not in (None, "", "POST"):
        raise HcError("json validation error: methods has unexpected value")
    if "slug" in doc and doc["slug"] != "" and not SLUG_RE.match(doc["slug"]):
        raise HcError("json validation error: slug does not match pattern (1-64 of a-z, 0-9, - and _)")
    unique = doc.get("unique")
    if unique is not None:
        if not isinstance(unique, list):
            raise HcError("json validation error: unique is not an array")
        if any(u not in UNIQUE_FIELDS for u in unique):
            raise HcError("json validation error: an item in 'unique' has unexpected value")
    schedule = doc.get("schedule")
    if schedule is not None and ("\n" in schedule.strip() or len(schedule.split()) != 5):
        raise HcError("json validation error: schedule is not a five-field cron expression (heartwatch does not "
                      "read OnCalendar expressions)")


def spec_from_doc(slug: str, doc: Mapping[str, Any], current: CheckSpec | None, default_tz: str) -> CheckSpec:
    """The check `doc` (a create or update body) makes of `current` (None: a new check). Raises HcError."""
    check_doc(doc)
    table: dict[str, Any] = spec_table(current) if current is not None else {}
    if current is None:
        table.setdefault("start_grace", f"{DEFAULT_GRACE}s")
        table.setdefault("max_runtime", f"{DEFAULT_GRACE}s")
        table["resume_on_ping"] = True  # Healthchecks' default: manual_resume false
    if "name" in doc:
        table["name"] = doc["name"]
    if "desc" in doc:
        table["description"] = doc["desc"]
    if "tags" in doc:
        table["tags"] = doc["tags"].split()
    if doc.get("schedule"):
        table.pop("period", None)
        table["schedule"] = doc["schedule"]
    elif "timeout" in doc:
        table.pop("schedule", None)
        table["period"] = f"{doc['timeout']}s"
    elif current is None:
        table["period"] = f"{DEFAULT_TIMEOUT}s"
    if "tz" in doc:
        table["timezone"] = doc["tz"]
    if "grace" in doc:
        table["start_grace"] = table["max_runtime"] = f"{doc['grace']}s"
    if "manual_resume" in doc:
        table["resume_on_ping"] = not doc["manual_resume"]
    if "methods" in doc:
        table["methods"] = ["POST"] if doc["methods"] == "POST" else []
    if "failure_kw" in doc:
        table["fail_keywords"] = [k.strip() for k in doc["failure_kw"].split(",") if k.strip()]
    try:
        return parse_check(slug, table, default_tz)
    except ConfigError as e:
        key = e.key.rsplit(".", 1)[-1]
        field = {"timezone": "tz", "description": "desc", "start_grace": "grace", "period": "timeout"}.get(key, key)
        raise HcError(f"json validation error: {field} {e.shown}: {e.reason}") from None


def _seconds(d: timedelta | None) -> int | None:
    return None if d is None else int(d.total_seconds())


def spec_fields(spec: CheckSpec) -> dict[str, Any]:
    """The part of a check's Healthchecks JSON that comes from its settings."""
    fields: dict[str, Any] = {
        "name": spec.display_name,
        "slug": spec.slug,
        "tags": " ".join(spec.tags),
        "desc": spec.description,
        "grace": _seconds(spec.start_grace),
        "manual_resume": not spec.resume_on_ping,
        "methods": "POST" if spec.methods == ("POST",) else "",
        "start_kw": "",
        "success_kw": "",
        "failure_kw": ",".join(spec.fail_keywords),
        "subject": "",
        "subject_fail": "",
        "filter_subject": False,
        "filter_body": False,
        "filter_http_body": bool(spec.fail_keywords),
        "filter_default_fail": False,
    }
    if spec.schedule is not None:
        fields["schedule"], fields["tz"] = spec.schedule, spec.timezone
    elif spec.period is not None:
        fields["timeout"] = _seconds(spec.period)
    return fields


def matches(spec: CheckSpec, doc: Mapping[str, Any], unique: Iterable[str]) -> bool:
    """Whether an existing check is the one a create with `unique` names (every listed field equal)."""
    mine = spec_fields(spec)
    return all(f in doc and mine.get(f) == doc[f] for f in unique)


def unique_key(uuid: str) -> str:
    """The stable identifier read-only keys see instead of the UUID (Healthchecks: a SHA-1 of the code)."""
    return hashlib.sha1(uuid.encode()).hexdigest()


def flips(alerts: Iterable[tuple[str, float]]) -> list[tuple[float, int]]:
    """(when, 1 up / 0 down) for each change of status the alerts (kind, when; oldest first) show, newest first."""
    out: list[tuple[float, int]] = []
    down = False
    for kind, at in alerts:
        if kind in DOWN_KINDS and not down:
            down = True
            out.append((at, 0))
        elif kind == "recovered" and down:
            down = False
            out.append((at, 1))
    return out[::-1]
