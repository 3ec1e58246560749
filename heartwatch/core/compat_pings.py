"""Other tools' ping URLs, read as heartwatch pings: a user moves over by changing a host name. Pure.

Each form becomes the PingRequest a native `/ping/...` URL would make (core/pings.py does the checking), plus
what the form carries beside it (a message as the body, a response time), so it goes through the same
`record_ping` path as every other ping:

- Uptime Kuma push monitors: `/api/push/<token>?status=up|down&msg=<text>&ping=<ms>`. `up` (the default) is a
  success, anything else a failure; `msg` (default "OK") is the body; `ping` is kept with the event. Kuma
  answers `{"ok": true}`, or `{"ok": false, "msg": ...}`.
- upti.my heartbeats: `/v1/heartbeat/<token>[/start|/fail|/<0-255>]?step=start|<name>|finish|fail` (the seed's
  own form), exactly as `/ping/<uuid>...`.
- Cronitor telemetry: `/p/<ping_key>/<slug>?state=run|complete|fail|ok&series=<rid>&status_code=<n>&message=<text>`.
  `run` starts a run, `complete` and `ok` finish it, `fail` fails it, no state is a heartbeat (a finish); a
  non-zero `status_code` makes it a failure with that exit status; `message` is the body. Cronitor answers 200
  with an empty body.

A token that is a UUID names a check by its UUID; any other token (Kuma's are random letters) names it by an
alias (store/compat.py), which `heartwatch import kuma` and the Healthchecks API create.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from heartwatch.core.pings import UUID_RE, BadPing, PingRequest, parse_ping
from heartwatch.core.values import NAME_RE


class Dialect(StrEnum):
    """Whose URL a ping came in by, which also says how to answer it."""

    KUMA = "kuma"
    UPTIMY = "uptimy"
    CRONITOR = "cronitor"


PREFIXES: dict[str, Dialect] = {"/api/push/": Dialect.KUMA, "/v1/heartbeat/": Dialect.UPTIMY,
                                "/p/": Dialect.CRONITOR}
#: Uptime Kuma refuses a `ping` over 24 hours (in milliseconds): seconds sent by mistake.
KUMA_MAX_PING_MS = 86_400_000
#: Stands in for a non-UUID token while core/pings.py reads the rest of the URL.
_PLACEHOLDER = "00000000-0000-4000-8000-000000000000"
_CRONITOR_STATES = {"run": "start", "complete": None, "ok": None, "fail": "fail"}
#: `?create=1` and its settings pass through a Cronitor URL as through a native slug URL.
_CREATE_KEYS = ("create", "schedule", "tz", "grace", "max_runtime")


@dataclass(frozen=True, slots=True)
class CompatPing:
    request: PingRequest
    body: bytes | None = None  # the body to store instead of the request's (a message in the query)
    ping_ms: float | None = None


def dialect_of(path: str) -> tuple[Dialect, str] | None:
    """Which compatible form `path` is, and what follows its prefix; None for any other path."""
    for prefix, dialect in PREFIXES.items():
        if path.startswith(prefix):
            return dialect, path[len(prefix):]
    return None


def parse_compat(dialect: Dialect, rest: str, query: Mapping[str, str], default_tz: str = "UTC") -> CompatPing:
    """`rest` is the path after the dialect's prefix. Raises BadPing (400 with a reason, or 404)."""
    if dialect is Dialect.KUMA:
        return _kuma(rest, query)
    if dialect is Dialect.UPTIMY:
        token, _, suffix = rest.partition("/")
        return CompatPing(_by_token(token, suffix, query, default_tz))
    return _cronitor(rest, query, default_tz)


def token_name(token: str) -> str:
    """How a token names a check: a UUID in lower case (as /ping/<uuid> does), anything else as given."""
    return token.lower() if UUID_RE.match(token) else token


def _by_token(token: str, suffix: str, query: Mapping[str, str], default_tz: str) -> PingRequest:
    if not NAME_RE.match(token):
        raise BadPing(404, "not found")
    req = parse_ping(f"{_PLACEHOLDER}/{suffix}" if suffix else _PLACEHOLDER, query, default_tz)
    return dataclasses.replace(req, uuid=token_name(token))


def _kuma(rest: str, query: Mapping[str, str]) -> CompatPing:
    if "/" in rest.strip("/"):
        raise BadPing(404, "not found")
    status = query.get("status") or "up"
    msg = query.get("msg") or "OK"
    raw = query.get("ping", "")
    ping_ms: float | None = None
    if raw != "":
        try:
            ping_ms = float(raw)
        except ValueError:
            raise BadPing(400, f"Invalid ping value: '{raw}' is not a valid number") from None
        if not math.isfinite(ping_ms) or ping_ms < 0:
            raise BadPing(400, f"Invalid ping value: {raw}ms cannot be negative")
        if ping_ms > KUMA_MAX_PING_MS:
            raise BadPing(400, f"Ping value {raw}ms exceeds maximum allowed ({KUMA_MAX_PING_MS}ms = 24 hours)")
    req = _by_token(rest.strip("/"), "" if status == "up" else "fail", {}, "UTC")
    return CompatPing(req, msg.encode(), ping_ms)


def _cronitor(rest: str, query: Mapping[str, str], default_tz: str) -> CompatPing:
    parts = [p for p in rest.split("/") if p]
    if len(parts) != 2:
        raise BadPing(404, "not found")
    state = query.get("state")
    if state is not None and state not in _CRONITOR_STATES:
        raise BadPing(400, "bad state: use run, complete, ok or fail")
    suffix = _CRONITOR_STATES.get(state or "complete")
    code = query.get("status_code")
    if code is not None and state != "run":
        # isascii and the length first: "²" passes isdigit() but not int() (issue 14, finding 7).
        if not (code.isascii() and len(code) <= 4 and (code.isdigit() or (code[:1] == "-" and code[1:].isdigit()))
                and 0 <= int(code) <= 255):
            raise BadPing(400, "bad status_code: expected an exit status 0-255")
        if int(code) != 0 or state is None or state == "complete":
            suffix = code  # the exit status: 0 is a success, anything else a failure
    translated = {k: query[k] for k in _CREATE_KEYS if k in query}
    if "series" in query:
        translated["rid"] = query["series"]
    path = f"{parts[0]}/{parts[1]}" + (f"/{suffix}" if suffix else "")
    req = parse_ping(path, translated, default_tz)
    if req.uuid is not None:  # a UUID where the ping key goes: not a Cronitor URL heartwatch knows
        raise BadPing(404, "not found")
    message = query.get("message")
    return CompatPing(req, message.encode() if message is not None else None)
