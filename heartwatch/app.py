"""The Starlette application: routes from each module that owns them, sharing one Hub."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from heartwatch import api, api_write, metrics, openapi, ping_view, web
from heartwatch.hub import Hub, hub_of


async def healthz(request: Request) -> Response:
    rows = await hub_of(request).store.fetchall("SELECT 1")
    return JSONResponse({"status": "ok" if rows else "degraded"})


async def not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("not found", 404)


async def server_error(request: Request, exc: Exception) -> Response:
    # Starlette already logged the traceback; the client gets one line and never the traceback.
    return PlainTextResponse("internal error; see the heartwatch log", 500)


def create_app(hub: Hub, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    routes: list[BaseRoute] = [
        *ping_view.routes,
        *api.routes,
        *api_write.routes,
        *openapi.routes,
        *metrics.routes,
        Route("/healthz", healthz, methods=["GET"]),
        *web.routes,
        *(extra_routes or []),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 500: server_error})
    app.state.hub = hub
    # Pings are counted as they are stored: the events table is pruned, so it cannot count them later.
    app.state.ping_counter = metrics.PingCounter()
    hub.ping_listeners.append(app.state.ping_counter)
    return app
