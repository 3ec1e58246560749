"""The JSON API under /api/v1/: checks, runs and events (reads). Times are ISO 8601 UTC."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from heartwatch.core.model import Check, Run
from heartwatch.core.settings import api_settings
from heartwatch.core.status import check_status
from heartwatch.store.base import CheckSnapshot
from heartwatch.store.codec import from_ts, iso
from heartwatch.web.hub import Hub, hub_of


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status)


def run_json(run: Run) -> dict[str, Any]:
    duration = run.duration
    last = run.last_step
    return {
        "id": run.id,
        "rid": run.rid,
        "state": run.state.value,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "duration_s": None if duration is None else round(duration.total_seconds(), 3),
        "exit_code": run.exit_code,
        "last_step": last.name if last else None,
        "last_step_at": iso(last.at) if last else None,
        "steps": [{"name": s.name, "at": iso(s.at), "flags": [f.value for f in s.flags]} for s in run.steps],
        "flags": sorted(f.value for f in run.flags),
    }


def check_json(hub: Hub, snap: CheckSnapshot) -> dict[str, Any]:
    check, last_run, watch = snap.check, snap.last_run, snap.watch
    spec = check.spec
    return {
        "slug": check.slug,
        "name": spec.display_name,
        "uuid": check.uuid,
        "status": check_status(check, last_run, hub.clock(), watch).value,
        "next_expected_at": iso(watch.expected_at) if watch and not check.paused else None,
        "ping_url": hub.ping_url(check.uuid),
        "slug_ping_url": hub.slug_url(check.slug),
        **api_settings(spec),  # the table of check settings says which and how
        "paused": check.paused,
        "muted": check.muted,
        "maintenance_until": iso(check.maintenance_until),
        "archived": check.archived,
        "source": check.source,
        "last_run": run_json(last_run) if last_run else None,
    }


def limit_param(request: Request, default: int, most: int = 1000) -> int:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise ValueError(f"limit must be a whole number from 1 to {most}")
    return int(raw)


async def list_checks(request: Request) -> Response:
    hub = hub_of(request)
    return JSONResponse({"checks": [check_json(hub, snap) for snap in await hub.store.snapshots()]})


async def _check_or_404(request: Request) -> Check | None:
    return await hub_of(request).store.check(request.path_params["slug"])


async def get_check(request: Request) -> Response:
    hub = hub_of(request)
    snap = await hub.store.snapshot(request.path_params["slug"])
    if snap is None:
        return error(404, "no such check", "slug")
    return JSONResponse(check_json(hub, snap))


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


def event_json(event: dict[str, Any]) -> dict[str, Any]:
    body: bytes | None = event["body"]
    return {**event, "at": iso(from_ts(event["at"])),
            # Bodies are whatever the job printed; show them as text without ever failing on bad UTF-8.
            "body": body.decode("utf-8", "replace") if body else ""}


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
