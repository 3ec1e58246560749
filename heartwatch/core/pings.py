"""Reading a ping URL: which check it names and what it says. Pure; the web layer only calls this.

URL forms (DESIGN.md section 3, Healthchecks-compatible):
    /ping/<uuid>[/start|/fail|/log|/<0-255>]
    /ping/<ping_key>/<slug>[/start|/fail|/log|/<0-255>]
with `?step=start|<name>|finish|fail`, `?rid=<run id>` and `?create=1` (slug form only), which may carry
`schedule` (cron, or a period like 1h), `tz`, `grace` and `max_runtime` to set the new check up in one call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from heartwatch.core.durations import parse_duration
from heartwatch.core.model import CheckSpec, PingKind
from heartwatch.core.settings import parse_check
from heartwatch.core.values import NAME_RE, SLUG_RE, ConfigError

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_SUFFIX_KINDS = {"start": PingKind.START, "fail": PingKind.FAIL, "log": PingKind.LOG}
# "log" too: config reserves it as a step name, so `?step=log` means the same as the /log suffix.
_STEP_KINDS = {"start": PingKind.START, "finish": PingKind.SUCCESS, "success": PingKind.SUCCESS,
               "fail": PingKind.FAIL, "log": PingKind.LOG}
#: `?create=1` query parameters -> the `[checks.<slug>]` key each sets.
CREATE_PARAMS = {"schedule": "schedule", "tz": "timezone", "grace": "start_grace", "max_runtime": "max_runtime"}


class BadPing(Exception):
    """A ping we answer with `status` and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class PingRequest:
    kind: PingKind
    uuid: str | None = None  # uuid form, lower-cased
    ping_key: str | None = None  # slug form
    slug: str | None = None
    step: str | None = None  # a named step (for STEP, or the step a finish/fail happened at)
    rid: str | None = None
    exit_code: int | None = None
    create: bool = False
    create_spec: CheckSpec | None = None  # with `create`: the check to create if the slug is unknown


def parse_ping(path: str, query: Mapping[str, str], default_tz: str = "UTC") -> PingRequest:
    """`path` is what follows `/ping/`. Raises BadPing (400 with a reason, or 404).

    `default_tz` is the time zone of a check created by `?create=1` without `tz`, as for config checks.
    """
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 3:
        raise BadPing(404, "not found")

    if UUID_RE.match(parts[0]) and len(parts) <= 2:
        ident: dict[str, str | None] = {"uuid": parts[0].lower()}
        suffix = parts[1] if len(parts) == 2 else None
    elif len(parts) >= 2:
        ident = {"ping_key": parts[0], "slug": parts[1]}
        suffix = parts[2] if len(parts) == 3 else None
        if not SLUG_RE.match(parts[1]):
            raise BadPing(404, "not found")
    else:
        raise BadPing(404, "not found")

    kind, exit_code = _suffix_kind(suffix)
    step = query.get("step")
    step_name: str | None = None
    if step is not None:
        step_kind = _STEP_KINDS.get(step)
        if step_kind is None:
            if not NAME_RE.match(step):
                raise BadPing(400, "bad step name: use 1-64 characters of letters, digits and . _ : -")
            step_name = step
            if kind is PingKind.SUCCESS and suffix is None:
                kind = PingKind.STEP  # a plain ping carrying ?step=<name> reports that step
        elif suffix is None:
            kind = step_kind
        elif step_kind is not kind:
            raise BadPing(400, f"step={step} contradicts the /{suffix} suffix")

    rid = query.get("rid")
    if rid is not None and not NAME_RE.match(rid):
        raise BadPing(400, "bad rid: use 1-64 characters of letters, digits and . _ : - (a UUID works)")

    create = query.get("create", "") in ("1", "true", "yes")
    slug = ident.get("slug")
    # Validated even when the check turns out to exist: a typo in a crontab line should show at once.
    create_spec = _create_spec(slug, query, default_tz) if create and slug else None
    return PingRequest(kind=kind, step=step_name, rid=rid, exit_code=exit_code, create=create,
                       create_spec=create_spec, **ident)


def _create_spec(slug: str, query: Mapping[str, str], default_tz: str) -> CheckSpec:
    table: dict[str, object] = {key: query[param] for param, key in CREATE_PARAMS.items() if param in query}
    if "schedule" in table:
        try:  # `schedule=1h` means a period: a cron expression never parses as a duration
            parse_duration(str(table["schedule"]))
            table["period"] = table.pop("schedule")
        except ValueError:
            pass
    try:
        return parse_check(slug, table, default_tz)
    except ConfigError as e:
        key = e.key.rsplit(".", 1)[-1]
        param = next((p for p, k in CREATE_PARAMS.items() if k == key), "schedule" if key == "period" else key)
        raise BadPing(400, f"bad {param} {e.shown}: {e.reason}") from None


def _suffix_kind(suffix: str | None) -> tuple[PingKind, int | None]:
    if suffix is None:
        return PingKind.SUCCESS, None
    if suffix in _SUFFIX_KINDS:
        return _SUFFIX_KINDS[suffix], None
    # isascii: "²" passes isdigit() but not int(); the length keeps int() cheap (issue 14, finding 7).
    if suffix.isascii() and len(suffix) <= 4 and (suffix.isdigit() or (suffix[:1] == "-" and suffix[1:].isdigit())):
        code = int(suffix)
        if not 0 <= code <= 255:
            raise BadPing(400, "bad exit status: expected 0-255")
        return (PingKind.SUCCESS if code == 0 else PingKind.FAIL), code
    raise BadPing(404, "not found")
