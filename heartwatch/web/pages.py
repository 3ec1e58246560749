"""The HTML status pages, their live refresh, the badges, and the static files they use.

Pages are rendered on the server and work without JavaScript. With JavaScript on, static/app.js asks
for the same URL again every few seconds with the `X-Heartwatch-Live` header and swaps in the fresh
"live" part of the page. Those requests carry an ETag built from SQLite's data_version, so an idle page
costs one PRAGMA per poll instead of a render.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from heartwatch.core import maintenance
from heartwatch.core.model import Check, CheckStatus
from heartwatch.store.uptime import MONTH
from heartwatch.web import badges, charts, page_data
from heartwatch.web.hub import Hub, hub_of
from heartwatch.web.params import page_param
from heartwatch.web.render import STATIC_DIR, Context, not_found_page, render

LIVE_HEADER = "x-heartwatch-live"
RUNS_PER_PAGE = 50
EVENTS_ON_CHECK_PAGE = 100
EVENTS_ON_RUN_PAGE = 1000


async def live_page(request: Request, template: str, build: Callable[[Hub, datetime], Awaitable[Context | None]]
                    ) -> Response:
    """Render a page, or only its live part for app.js; answer 304 when nothing changed since its last poll."""
    hub = hub_of(request)
    now = hub.clock()  # read once: every time on the page agrees
    live = request.headers.get(LIVE_HEADER) == "1"
    headers = {"Cache-Control": "no-store", "Vary": LIVE_HEADER}
    if live:
        # The token is read before the data, so a write landing in between changes the next poll's token.
        headers["ETag"] = await page_data.change_token(hub.store, now)
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
    context = await build(hub, now)
    if context is None:
        return not_found_page(request)
    page = f"{template}_live.html" if live else f"{template}.html"
    return render(page, {**context, "now": now, "request_path": request.url.path}, headers=headers)




# --- pages ------------------------------------------------------------------------------------------------


async def overview_page(request: Request) -> Response:
    async def build(hub: Hub, now: datetime) -> Context:
        params = request.query_params
        page = page_param(params.get("page"), "page", 1, 1_000_000, default=1)
        assert page is not None
        view = await page_data.overview(hub.store, now, params.get("tag"), params.get("status"),
                                        page, params.get("q", "")[:200], params.get("pipeline", "")[:64])
        uptimes = await hub.store.uptimes([row.check.id for row in view.rows], now, MONTH)
        return {"view": view, "hub": hub, "ping_example": hub.slug_url("my-job"), "uptimes": uptimes,
                "here": request.url.path + (f"?{request.url.query}" if request.url.query else "")}

    return await live_page(request, "overview", build)


def ping_lines(hub: Hub, check: Check) -> dict[str, Any]:
    """Ready-to-paste lines for the check page: curl for each part of the chain, crontab, `heartwatch run`."""
    url = hub.ping_url(check.uuid)
    curl = "curl -fsS -m 10 --retry 5 -o /dev/null"
    lines = [("start", f'{curl} "{url}/start"')]
    lines += [(f"step {s.name}", f'{curl} "{url}?step={s.name}"') for s in check.spec.steps]
    lines += [("finish", f'{curl} "{url}"'), ("fail", f'{curl} "{url}/fail"'),
              ("exit status and output", f'job.sh > job.log 2>&1; {curl} --data-binary @job.log "{url}/$?"')]
    run = (f"heartwatch run --server {hub.settings.public_url} --ping-key {hub.store.ping_key} {check.slug}"
           " -- /usr/local/bin/job.sh")
    cron = None
    if check.spec.schedule:
        cron = f"{check.spec.schedule} {run}"
        if check.spec.timezone != "UTC":
            # cron reads the schedule in the machine's zone; heartwatch in the check's. Say which one we meant.
            cron = f"CRON_TZ={check.spec.timezone}\n{cron}"
    return {"uuid_url": url, "slug_url": hub.slug_url(check.slug), "curl": lines, "run": run, "cron": cron,
            "steps_hint": [f"heartwatch step {s.name}" for s in check.spec.steps]}


def held_until(check: Check, now: datetime) -> datetime | None:
    """When the maintenance holding the check's alerts ends: a one-off hold, or a recurring window open now."""
    ends = [t for t in (check.maintenance_until,
                        maintenance.window_end(check.spec.maintenance, check.spec.timezone, now)) if t and t > now]
    return max(ends) if ends else None


async def check_page(request: Request) -> Response:
    async def build(hub: Hub, now: datetime) -> Context | None:
        snap = await hub.store.snapshot(request.path_params["slug"])
        if snap is None:
            return None
        check, newest, watch = snap.check, snap.last_run, snap.watch
        before = page_param(request.query_params.get("before"), "before")
        runs = await hub.store.runs(check.id, limit=RUNS_PER_PAGE, before=before)
        linked = await hub.store.relatives(check.slug)
        spec, tz = check.spec, check.spec.timezone
        scale = charts.timeline_scale(runs, spec, now)
        run_url = f"/checks/{check.slug}/runs/"
        return {
            "check": check, "hub": hub, "runs": runs, "before": before,
            "status": page_data.status_of(check, newest, watch, now),
            "last_run": newest, "stopped": page_data.stopped_at(newest),
            "expected_at": page_data.expected_start(check, watch, newest, now), "watch": watch,
            "timelines": {r.id: charts.timeline(r, spec, now, scale, tz) for r in runs},
            "chains": {r.id: page_data.chain(check, r, now) for r in runs},
            "chart": charts.duration_chart(runs, spec, now, tz, run_url),
            "events": page_data.event_views(await hub.store.events(check.id, EVENTS_ON_CHECK_PAGE)),
            "alerts": await hub.store.alerts(check.id),
            "lines": ping_lines(hub, check),
            "more_runs": len(runs) == RUNS_PER_PAGE,
            "uptime": (await hub.store.uptimes([check.id], now))[check.id],
            "held_until": held_until(check, now),
            "pipeline": page_data.pipeline_view(check.slug, linked, now),
            "note": page_data.status_note(snap, linked, now),
        }

    return await live_page(request, "check", build)


async def run_page(request: Request) -> Response:
    async def build(hub: Hub, now: datetime) -> Context | None:
        run_id = page_param(request.path_params["run_id"], "run id")
        check = await hub.store.check(request.path_params["slug"])
        run = await hub.store.run(check.id, run_id) if check and run_id is not None else None
        if check is None or run is None or run.id is None:
            return None
        spec = check.spec
        return {
            "check": check, "run": run, "chain": page_data.chain(check, run, now),
            "timeline": charts.timeline(run, spec, now, charts.timeline_scale([run], spec, now), spec.timezone, w=900,
                                       labels=True),
            "stopped": page_data.stopped_at(run),
            "events": page_data.event_views(await hub.store.events(check.id, EVENTS_ON_RUN_PAGE, run_id=run.id)),
            "alerts": await hub.store.alerts(check.id, run_id=run.id),
        }

    return await live_page(request, "run", build)


# --- badges -----------------------------------------------------------------------------------------------


async def _badge_status(request: Request) -> tuple[str, CheckStatus] | None:
    hub = hub_of(request)
    snap = await hub.store.snapshot(request.path_params["slug"])
    if snap is None:
        return None
    return snap.check.slug, page_data.status_of(snap.check, snap.last_run, snap.watch, hub.clock())


# Badges are embedded in pages that image proxies (GitHub's camo) cache: ask them not to.
_BADGE_HEADERS = {"Cache-Control": "no-cache, max-age=0"}


async def badge_svg(request: Request) -> Response:
    found = await _badge_status(request)
    if found is None:
        return Response("not found", 404, media_type="text/plain")
    return Response(badges.badge_svg(*found), media_type="image/svg+xml", headers=_BADGE_HEADERS)


async def badge_json(request: Request) -> Response:
    found = await _badge_status(request)
    if found is None:
        return JSONResponse({"error": "no such check"}, 404)
    return JSONResponse(badges.badge_json(*found), headers=_BADGE_HEADERS)


routes: list[BaseRoute] = [
    Route("/", overview_page, methods=["GET", "HEAD"]),
    Route("/checks/{slug}", check_page, methods=["GET", "HEAD"]),
    Route("/checks/{slug}/runs/{run_id}", run_page, methods=["GET", "HEAD"]),
    Route("/badge/{slug}.svg", badge_svg, methods=["GET", "HEAD"]),
    Route("/badge/{slug}.json", badge_json, methods=["GET", "HEAD"]),
    Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
]
