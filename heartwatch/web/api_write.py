"""The write API under /api/v1/: create (upsert), update, archive, pause and resume checks, and the holds:
pause for a while (`{"for": "2h"}` or `{"until": ISO}`: alerts held, the check still watched), mute and unmute.

Every write needs `Authorization: Bearer <token>` with one of the configured tokens (`[api] tokens`,
HEARTWATCH_API_TOKEN or HEARTWATCH_API_TOKEN_FILE). With no token configured, writes are refused (403)
rather than left open: a monitor that anyone on the network can silence is worse than none.

Bodies use the keys of a `[checks.<slug>]` table and go through the config's own parser, so the file and
the API accept exactly the same values. Errors are JSON `{"error", "field"}`: 400 for a body that is not a
JSON object, 422 for a value that is wrong, 409 for a change to a config check. Config checks are
read-only here because the next start or SIGHUP would silently put the file's version back; pausing and
resuming them is allowed, since that is an operator's action (maintenance) and not part of the file.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from heartwatch.core.model import CheckSpec
from heartwatch.store.sqlite import ApiOutcome, ApiWrite
from heartwatch.web.api_errors import ApiError, error
from heartwatch.web.api_json import check_json, relatives_for_json
from heartwatch.web.bearer import authorize
from heartwatch.web.check_input import check_slug, hold_until, merge, refusal, reject_unknown, too_many, validate
from heartwatch.web.hub import Hub, hub_of
from heartwatch.web.log_throttle import LogThrottle
from heartwatch.web.params import BadBody, json_body

log = logging.getLogger("heartwatch.web.api")

#: A check's settings fit in a few kilobytes; anything far larger is a mistake, refused before it is read.
MAX_BODY = 64_000
READ_ONLY = ("check {slug!r} is defined in the config file, which is read-only through the API (the file "
             "would overwrite the change on the next start); change it there. Pause and resume work.")


# --- pure helpers ---------------------------------------------------------------------------------------










# --- the request side ------------------------------------------------------------------------------------


async def read_object(request: Request) -> dict[str, Any]:
    try:
        doc = await json_body(request, MAX_BODY)
    except BadBody as e:
        raise ApiError(e.status, str(e)) from None
    if not isinstance(doc, dict):
        raise ApiError(400, 'expected a JSON object as the body, like {"slug": "backup", "schedule": "0 2 * * *"}')
    return doc


Handler = Callable[[Request, Hub], Awaitable[Response]]


_errors = LogThrottle(log)  # the same failure again within a minute is counted, not logged again


def write_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Authorize, run the handler, turn ApiError into JSON, and tell listeners that a check changed."""

    async def endpoint(request: Request) -> Response:
        hub = hub_of(request)
        try:
            authorize(hub.settings.api_tokens, request.headers.get("authorization"))
            response = await handler(request, hub)
        except ApiError as e:
            return e.response()
        except hub.store.WRITE_ERRORS as e:  # the database refused the write, or we are shutting down
            _errors.exception("could not store an API change", e)
            return error(503, "could not store the change; try again")
        if response.status_code < 300:
            for listener in hub.change_listeners:
                listener()
        return response

    return endpoint


async def answer(hub: Hub, slug: str, result: ApiWrite | None, status: int = 200) -> Response:
    """The check as GET shows it, or the JSON error for the outcome."""
    if result is not None and result.error is not None:
        # What the settings builder or the dependency graph refused (422), answered by write_endpoint.
        raise refusal(result.error)
    if result is None or result.outcome is ApiOutcome.NOT_FOUND:
        archived = result is not None and result.check is not None and result.check.archived
        hint = "; it is archived: POST /api/v1/checks to bring it back" if archived else ""
        return error(404, f"no such check{hint}", "slug")
    if result.outcome is ApiOutcome.READ_ONLY:
        return error(409, READ_ONLY.format(slug=slug), "slug")
    if result.outcome is ApiOutcome.TOO_MANY:
        return error(409, too_many(hub.settings.max_checks), "slug")
    snap = await hub.store.snapshot(slug)
    assert snap is not None  # the write committed before we got here
    headers = {"Location": f"/api/v1/checks/{slug}"} if result.outcome is ApiOutcome.CREATED else None
    return JSONResponse(check_json(hub, snap, await relatives_for_json(hub, snap)), status, headers=headers)


async def create_check(request: Request, hub: Hub) -> Response:
    body = await read_object(request)
    slug = check_slug(body.pop("slug", None))
    spec = validate(slug, {k: v for k, v in body.items() if v is not None}, hub.settings)
    result = await hub.store.api_save_check(slug, lambda _current: spec, hub.clock(), create=True)
    return await answer(hub, slug, result, 201 if result.outcome is ApiOutcome.CREATED else 200)


async def update_check(request: Request, hub: Hub) -> Response:
    slug = request.path_params["slug"]
    patch = await read_object(request)
    if patch.get("slug", slug) != slug:
        raise ApiError(422, "slug cannot be changed; create a new check and delete this one", "slug")
    patch.pop("slug", None)
    reject_unknown(patch)  # here too: a null for an unknown key would otherwise pass unnoticed

    def build(current: CheckSpec | None) -> CheckSpec:
        assert current is not None  # an update never creates
        return validate(slug, merge(current, patch), hub.settings)

    result = await hub.store.api_save_check(slug, build, hub.clock(), create=False)
    return await answer(hub, slug, result)


async def delete_check(request: Request, hub: Hub) -> Response:
    slug = request.path_params["slug"]
    return await answer(hub, slug, await hub.store.api_archive(slug, hub.clock()))


async def _set_paused(request: Request, hub: Hub, paused: bool) -> Response:
    slug = request.path_params["slug"]
    check = await hub.store.set_paused(slug, paused, hub.clock())
    return await answer(hub, slug, None if check is None else ApiWrite(ApiOutcome.UPDATED, check))




async def pause_check(request: Request, hub: Hub) -> Response:
    """Without a body: paused (nothing expected, nothing sent) until resumed. With {"for"} or {"until"}: a
    maintenance hold, the check still watched, its alerts held until then and what is still true sent once."""
    has_body = request.headers.get("content-length", "0") not in ("", "0") or "chunked" in request.headers.get(
        "transfer-encoding", "")
    body = await read_object(request) if has_body else {}
    if not body:  # no body, or {}: paused until resumed
        return await _set_paused(request, hub, True)
    slug = request.path_params["slug"]
    now = hub.clock()
    until = hold_until(body, now)
    check = await hub.store.set_maintenance(slug, until, now)
    return await answer(hub, slug, None if check is None else ApiWrite(ApiOutcome.UPDATED, check))


async def resume_check(request: Request, hub: Hub) -> Response:
    """Ends a pause and a maintenance hold alike."""
    slug = request.path_params["slug"]
    check = await hub.store.set_maintenance(slug, None, hub.clock())
    if check is None:
        return await answer(hub, slug, None)
    return await _set_paused(request, hub, False)


async def _set_muted(request: Request, hub: Hub, muted: bool) -> Response:
    slug = request.path_params["slug"]
    check = await hub.store.set_muted(slug, muted, hub.clock())
    return await answer(hub, slug, None if check is None else ApiWrite(ApiOutcome.UPDATED, check))


async def mute_check(request: Request, hub: Hub) -> Response:
    """No reminders until the check recovers (the mute ends by itself then)."""
    return await _set_muted(request, hub, True)


async def unmute_check(request: Request, hub: Hub) -> Response:
    return await _set_muted(request, hub, False)


routes = [
    Route("/api/v1/checks", write_endpoint(create_check), methods=["POST"]),
    Route("/api/v1/checks/{slug}", write_endpoint(update_check), methods=["PATCH"]),
    Route("/api/v1/checks/{slug}", write_endpoint(delete_check), methods=["DELETE"]),
    Route("/api/v1/checks/{slug}/pause", write_endpoint(pause_check), methods=["POST"]),
    Route("/api/v1/checks/{slug}/resume", write_endpoint(resume_check), methods=["POST"]),
    Route("/api/v1/checks/{slug}/mute", write_endpoint(mute_check), methods=["POST"]),
    Route("/api/v1/checks/{slug}/unmute", write_endpoint(unmute_check), methods=["POST"]),
]
