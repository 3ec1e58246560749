"""Healthchecks' management API v3, the part its clients use, under /api/v3/: scripts, Terraform-style tools and
dashboards written for Healthchecks (the PyPI `healthchecks-io` client among them) work against heartwatch.

Requests carry `X-Api-Key`: a token from `[api] tokens` reads and writes, one from `[api] read_tokens` only
reads (its answers show `unique_key` instead of the UUID and URLs, as Healthchecks' read-only keys do). The
fields, status words and answers follow Healthchecks' documentation; what each field means here is in
core/healthchecks.py and docs/migrating.md. Checks are found by UUID or by an alias (store/compat.py); an
importer may send `uuid` (a new check keeps it) and `aliases` (more names it answers pings to) beside
Healthchecks' fields. Errors are JSON `{"error": ...}`: 400 for a bad value (as Healthchecks), 401 for a
missing or wrong key, 403 for a read-only key that tries to write, 404, 409 for a config check.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from heartwatch.core import healthchecks as hc
from heartwatch.core.model import CheckStatus
from heartwatch.core.pings import UUID_RE
from heartwatch.core.status import check_status
from heartwatch.core.values import NAME_RE
from heartwatch.store.base import CheckSnapshot
from heartwatch.store.codec import iso
from heartwatch.store.compat import AliasTaken, PingStats
from heartwatch.store.sqlite import ApiOutcome, ApiWrite
from heartwatch.web.hub import Hub, hub_of
from heartwatch.web.params import BadBody, json_body

log = logging.getLogger("heartwatch.web.hc_api")

PREFIX = "/api/v3"
MAX_BODY = 64_000
#: Healthchecks returns at most this many pings.
MAX_PINGS = 1000


class HcRefusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message
        super().__init__(message)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def key_access(hub: Hub, key: str | None) -> str:
    """"rw" or "ro" for the key; raises HcRefusal (401) otherwise. Compared in constant time over every token."""
    settings = hub.settings
    if not settings.api_tokens and not settings.api_read_tokens:
        raise HcRefusal(401, "the Healthchecks-compatible API is off: set [api] tokens (HEARTWATCH_API_TOKEN)")
    if not key:
        raise HcRefusal(401, "missing api key")
    given = _digest(key)
    rw = ro = False
    for token in settings.api_tokens:
        rw |= hmac.compare_digest(given, _digest(token))
    for token in settings.api_read_tokens:
        ro |= hmac.compare_digest(given, _digest(token))
    if rw:
        return "rw"
    if ro:
        return "ro"
    raise HcRefusal(401, "wrong api key")


# --- what a check looks like ---------------------------------------------------------------------------


def check_json(hub: Hub, snap: CheckSnapshot, stats: PingStats | None, readonly: bool) -> dict[str, Any]:
    check, last_run, watch = snap.check, snap.last_run, snap.watch
    public = hub.settings.public_url
    status = check_status(check, last_run, hub.clock(), watch)
    doc: dict[str, Any] = hc.spec_fields(check.spec)
    last_ping = datetime.fromtimestamp(stats.last_at, UTC) if stats and stats.last_at is not None else None
    next_ping = watch.expected_at if watch is not None and not check.paused else None
    doc.update({
        "n_pings": stats.count if stats else 0,
        "status": hc.STATUS[status],
        "started": status is CheckStatus.RUNNING,
        "last_ping": iso(last_ping),
        "next_ping": iso(next_ping),
        "badge_url": f"{public}/badge/{check.slug}.svg",
    })
    if last_run is not None and last_run.duration is not None:
        doc["last_duration"] = int(last_run.duration.total_seconds())
    if readonly:
        doc["unique_key"] = hc.unique_key(check.uuid)
    else:
        update_url = f"{public}{PREFIX}/checks/{check.uuid}"
        doc.update({"uuid": check.uuid, "ping_url": hub.ping_url(check.uuid), "update_url": update_url,
                    "pause_url": f"{update_url}/pause", "resume_url": f"{update_url}/resume", "channels": ""})
    return doc


async def _one_json(hub: Hub, slug: str, readonly: bool = False) -> dict[str, Any]:
    snap = await hub.store.snapshot(slug)
    if snap is None:
        raise HcRefusal(404, "not found")
    stats = await hub.store.ping_stats([snap.check.id])
    return check_json(hub, snap, stats.get(snap.check.id), readonly)


# --- the request side -----------------------------------------------------------------------------------


async def read_json(request: Request) -> dict[str, Any]:
    try:
        doc = await json_body(request, MAX_BODY)
    except BadBody as e:
        # Healthchecks' words for a body it cannot read; the size and a client gone keep ours.
        raise HcRefusal(e.status, "could not parse request body" if e.unreadable else str(e)) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise HcRefusal(400, "json validation error: value is not an object")
    return doc


async def _slug_by_code(hub: Hub, code: str) -> str:
    """The slug of the check a path names: a UUID or alias; a read-only key may also use the unique_key."""
    code = code.lower() if UUID_RE.match(code) else code
    slug = await hub.store.slug_of(code) if NAME_RE.match(code) else None
    if slug is None and len(code) == 40:
        slug = next((s.check.slug for s in await hub.store.snapshots() if hc.unique_key(s.check.uuid) == code), None)
    if slug is None:
        raise HcRefusal(404, "not found")
    return slug


Handler = Callable[[Request, Hub, str, dict[str, Any]], Awaitable[Response]]


def endpoint(handler: Handler, write: bool, read_write_key: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """Check the key, read a POST's body, run the handler; refusals become Healthchecks' JSON errors.

    `write`: it changes a check (a read-write key; the scheduler hears of it). `read_write_key`: a read that
    Healthchecks also keeps from read-only keys (a check's pings)."""

    async def run(request: Request) -> Response:
        hub = hub_of(request)
        try:
            body = await read_json(request) if request.method == "POST" else {}
            key = request.headers.get("x-api-key") or (str(body["api_key"]) if "api_key" in body else None)
            access = key_access(hub, key)
            if (write or read_write_key) and access != "rw":
                raise HcRefusal(403, "this needs a read-write API key (a token from [api] tokens)")
            response = await handler(request, hub, access, body)
        except HcRefusal as e:
            return JSONResponse({"error": e.message}, e.status)
        except hub.store.WRITE_ERRORS:
            log.exception("could not store a change through /api/v3/")
            return JSONResponse({"error": "could not store the change; try again"}, 503)
        if write and response.status_code < 300:
            for listener in hub.change_listeners:
                listener()
        return response

    return run


def _written(result: ApiWrite, slug: str) -> None:
    """Raise the refusal an API write's outcome means, if any."""
    if result.error is not None:
        if isinstance(result.error, hc.HcError):
            raise HcRefusal(400, result.error.message)
        if isinstance(result.error, AliasTaken):
            raise HcRefusal(409, str(result.error))
        raise result.error
    if result.outcome is ApiOutcome.NOT_FOUND:
        raise HcRefusal(404, "not found")
    if result.outcome is ApiOutcome.READ_ONLY:
        raise HcRefusal(409, f"check {slug!r} is defined in the config file, which is read-only through the API; "
                             "change it there (pause and resume work)")
    if result.outcome is ApiOutcome.TOO_MANY:  # Healthchecks answers its check limit with 403
        raise HcRefusal(403, "the check limit is reached ([server] max_checks)")


def _names(body: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """heartwatch's own additions for importers: `uuid` kept, `aliases` added."""
    uuid = body.get("uuid")
    if uuid is not None and (not isinstance(uuid, str) or not UUID_RE.match(uuid)):
        raise HcRefusal(400, "json validation error: uuid is not a UUID")
    aliases = body.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and NAME_RE.match(a) for a in aliases):
        raise HcRefusal(400, "json validation error: aliases is not a list of names (1-64 of letters, digits, "
                             "., _, :, -)")
    return (uuid.lower() if uuid else None), tuple(aliases)


# --- the endpoints --------------------------------------------------------------------------------------


#: Checks turned into JSON between two turns of the event loop (see web/api.py).
SLICE = 20


async def list_checks(request: Request, hub: Hub, access: str, body: dict[str, Any]) -> Response:
    tags = set(request.query_params.getlist("tag"))
    slug = request.query_params.get("slug")
    async with hub.whole_list:  # as /api/v1/checks: one list at a time, a slice at a time (issue 14, finding 4)
        snaps = [s for s in await hub.store.snapshots()
                 if (not slug or s.check.slug == slug) and tags <= set(s.check.spec.tags)]
        stats = await hub.store.ping_stats([s.check.id for s in snaps])
        parts: list[str] = []
        for start in range(0, len(snaps), SLICE):
            if start:
                await asyncio.sleep(0)
            parts.extend(json.dumps(check_json(hub, s, stats.get(s.check.id), access == "ro"), ensure_ascii=False,
                                    allow_nan=False, separators=(",", ":")) for s in snaps[start:start + SLICE])
    return Response('{"checks":[' + ",".join(parts) + "]}", media_type="application/json")


async def create_check(request: Request, hub: Hub, access: str, body: dict[str, Any]) -> Response:
    try:
        hc.check_doc(body)
    except hc.HcError as e:
        raise HcRefusal(400, e.message) from None
    uuid, aliases = _names(body)
    unique = body.get("unique") or []
    existing = None
    if unique:
        # With the slug among the fields only that check can match (an importer's case: no scan of every check).
        named = await hub.store.check(body["slug"]) if "slug" in unique and body.get("slug") else None
        candidates = ([named] if named is not None and not named.archived else []) if "slug" in unique else [
            s.check for s in await hub.store.snapshots()]
        existing = next((c for c in candidates if hc.matches(c.spec, body, unique)), None)
    if existing is None and uuid is not None:
        found = await hub.store.slug_of(uuid)
        existing = None if found is None else (await hub.store.check(found))
    if existing is None:
        slug = hc.new_slug(body)
        taken = await hub.store.check(slug)
        if taken is not None and not taken.archived:
            raise HcRefusal(409, f"a check with the slug {slug!r} exists: give another slug, or "
                                 '"unique": ["slug"] to update it')
    else:
        slug = existing.slug
        if body.get("slug") not in (None, slug):
            raise HcRefusal(400, "json validation error: slug cannot be changed here (it names the check)")
    tz = hub.settings.timezone
    result = await hub.store.api_save_check(
        slug, lambda current: hc.spec_from_doc(slug, body, current, tz), hub.clock(), create=True, uuid=uuid,
        aliases=aliases)
    _written(result, slug)
    return JSONResponse(await _one_json(hub, slug), 201 if result.outcome is ApiOutcome.CREATED else 200)


async def get_check(request: Request, hub: Hub, access: str, body: dict[str, Any]) -> Response:
    slug = await _slug_by_code(hub, request.path_params["code"])
    return JSONResponse(await _one_json(hub, slug, access == "ro"))


async def update_check(request: Request, hub: Hub, access: str, body: dict[str, Any]) -> Response:
    slug = await _slug_by_code(hub, request.path_params["code"])
    if body.get("slug") not in (None, slug):
        raise HcRefusal(400, "json validation error: slug cannot be changed here (it names the check)")
    try:
        hc.check_doc(body)
    except hc.HcError as e:
        raise HcRefusal(400, e.message) from None
    _uuid, aliases = _names(body)
    tz = hub.settings.timezone
    result = await hub.store.api_save_check(
        slug, lambda current: hc.spec_from_doc(slug, body, current, tz), hub.clock(), create=False, aliases=aliases)
    _written(result, slug)
    return JSONResponse(await _one_json(hub, slug))


async def delete_check(request: Request, hub: Hub, access: str, body: dict[str, Any]) -> Response:
    slug = await _slug_by_code(hub, request.path_params["code"])
    doc = await _one_json(hub, slug)
    _written(await hub.store.api_archive(slug, hub.clock()), slug)
    return JSONResponse(doc)


async def single(request: Request) -> Response:
    handler = {"GET": get_handler, "POST": update_handler, "DELETE": delete_handler}[request.method]
    return await handler(request)


async def pause_check(request: Request, hub: Hub, access: str, body: dict[str, Any]) -> Response:
    slug = await _slug_by_code(hub, request.path_params["code"])
    if await hub.store.set_paused(slug, True, hub.clock()) is None:
        raise HcRefusal(404, "not found")
    return JSONResponse(await _one_json(hub, slug))


async def resume_check(request: Request, hub: Hub, access: str, body: dict[str, Any]) -> Response:
    slug = await _slug_by_code(hub, request.path_params["code"])
    check = await hub.store.check(slug)
    if check is None or not check.paused:
        return PlainTextResponse("check is not paused", 409)  # Healthchecks' answer, word for word
    now = hub.clock()
    await hub.store.set_maintenance(slug, None, now)
    await hub.store.set_paused(slug, False, now)
    return JSONResponse(await _one_json(hub, slug))


async def list_pings(request: Request, hub: Hub, access: str, body: dict[str, Any]) -> Response:
    slug = await _slug_by_code(hub, request.path_params["code"])
    check = await hub.store.check(slug)
    assert check is not None
    pings = []
    for p in await hub.store.logged_pings(check.id, MAX_PINGS):
        item: dict[str, Any] = {
            "type": hc.PING_TYPES.get(p.kind, "log"),
            "date": iso(datetime.fromtimestamp(p.at, UTC)),
            "n": p.id,
            "scheme": "http",
            "remote_addr": p.remote_addr or "",
            "method": p.method or "",
            "ua": p.user_agent or "",
            "rid": p.rid,
            "body_url": None,
            "exitstatus": p.exit_code,
        }
        if p.kind in ("success", "fail") and p.run_started is not None and p.run_ended is not None:
            item["duration"] = round(p.run_ended - p.run_started, 2)
        if p.ping_ms is not None:
            item["ping_ms"] = p.ping_ms
        pings.append(item)
    return JSONResponse({"pings": pings})


def _timestamp_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12):  # "²" passes isdigit(); huge ones overflow
        raise HcRefusal(400, f"{name} must be a whole number of seconds")
    return float(raw)


async def list_flips(request: Request, hub: Hub, access: str, body: dict[str, Any]) -> Response:
    slug = await _slug_by_code(hub, request.path_params["code"])
    check = await hub.store.check(slug)
    assert check is not None
    seconds, start, end = (_timestamp_param(request, n) for n in ("seconds", "start", "end"))
    since = hub.clock().timestamp() - seconds if seconds else None
    flips = [{"timestamp": iso(datetime.fromtimestamp(int(at), UTC)), "up": up}
             for at, up in hc.flips(await hub.store.alert_kinds(check.id))
             if (start is None or at >= start) and (end is None or at < end) and (since is None or at >= since)]
    # A plain list, as Healthchecks documents it and its clients read it.
    return JSONResponse(flips)


get_handler = endpoint(get_check, write=False)
update_handler = endpoint(update_check, write=True)
delete_handler = endpoint(delete_check, write=True)
_list = endpoint(list_checks, write=False)
_create = endpoint(create_check, write=True)


async def checks(request: Request) -> Response:
    return await (_create if request.method == "POST" else _list)(request)


def _both(path: str, handler: Callable[[Request], Awaitable[Response]], methods: list[str]) -> list[Route]:
    """Healthchecks' paths with and without their trailing slash: no redirect for a client to trip over."""
    bare = path.rstrip("/")
    return [Route(f"{PREFIX}{bare}", handler, methods=methods), Route(f"{PREFIX}{bare}/", handler, methods=methods)]


routes = [
    *_both("/checks/", checks, ["GET", "POST"]),
    Route(PREFIX + "/checks/{code}", single, methods=["GET", "POST", "DELETE"]),
    Route(PREFIX + "/checks/{code}/pause", endpoint(pause_check, write=True), methods=["POST"]),
    Route(PREFIX + "/checks/{code}/resume", endpoint(resume_check, write=True), methods=["POST"]),
    *_both("/checks/{code}/pings/", endpoint(list_pings, write=False, read_write_key=True), ["GET"]),
    *_both("/checks/{code}/flips/", endpoint(list_flips, write=False), ["GET"]),
]
