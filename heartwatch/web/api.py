"""The JSON API under /api/v1/: checks, runs and events (reads). Times are ISO 8601 UTC."""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from heartwatch.core.model import Check
from heartwatch.web.api_errors import error
from heartwatch.web.api_json import check_json, event_json, relatives_for_json, run_json
from heartwatch.web.hub import hub_of
from heartwatch.web.params import whole


def limit_param(request: Request, default: int, most: int = 1000) -> int:
    """Raises BadParam (a ValueError) with the reason."""
    limit = whole(request.query_params.get("limit"), "limit", 1, most, default)
    assert limit is not None
    return limit


#: Checks turned into JSON between two turns of the event loop: 30,000 in one go took 2.1 s, holding every
#: ping up that long (issue 14); sliced, a ping waits one slice (about a millisecond) at most.
SLICE = 20


async def list_checks(request: Request) -> Response:
    hub = hub_of(request)
    async with hub.whole_list:
        snapshots = await hub.store.snapshots()
        by_slug = {s.check.slug: s for s in snapshots}
        parts: list[str] = []
        for start in range(0, len(snapshots), SLICE):
            if start:
                await asyncio.sleep(0)
            parts.extend(json.dumps(check_json(hub, snap, by_slug), ensure_ascii=False, allow_nan=False,
                                    separators=(",", ":")) for snap in snapshots[start:start + SLICE])
    return Response('{"checks":[' + ",".join(parts) + "]}", media_type="application/json")


async def _check_or_404(request: Request) -> Check | None:
    return await hub_of(request).store.check(request.path_params["slug"])


async def get_check(request: Request) -> Response:
    hub = hub_of(request)
    snap = await hub.store.snapshot(request.path_params["slug"])
    if snap is None:
        return error(404, "no such check", "slug")
    return JSONResponse(check_json(hub, snap, await relatives_for_json(hub, snap)))


async def list_runs(request: Request) -> Response:
    hub = hub_of(request)
    check = await _check_or_404(request)
    if check is None:
        return error(404, "no such check", "slug")
    try:
        limit = limit_param(request, 50)
    except ValueError as e:
        return error(400, str(e), "limit")
    runs = await hub.store.runs(check.id, limit=limit)
    return JSONResponse({"runs": [run_json(r) for r in runs]})


async def list_events(request: Request) -> Response:
    hub = hub_of(request)
    check = await _check_or_404(request)
    if check is None:
        return error(404, "no such check", "slug")
    try:
        limit = limit_param(request, 100)
    except ValueError as e:
        return error(400, str(e), "limit")
    events = await hub.store.events(check.id, limit=limit)
    return JSONResponse({"events": [event_json(e) for e in events]})


routes = [
    Route("/api/v1/checks", list_checks, methods=["GET"]),
    Route("/api/v1/checks/{slug}", get_check, methods=["GET"]),
    Route("/api/v1/checks/{slug}/runs", list_runs, methods=["GET"]),
    Route("/api/v1/checks/{slug}/events", list_events, methods=["GET"]),
]
