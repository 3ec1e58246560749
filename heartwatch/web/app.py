"""The Starlette application: routes from each module that owns them, sharing one Hub."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from heartwatch.web import api, api_write, hc_api, limits, login, manage, metrics, openapi, pages, ping_view
from heartwatch.web.auth import Auth, AuthGate, secure_cookie_for
from heartwatch.web.hub import Hub, hub_of
from heartwatch.web.render import templates
from heartwatch.web.security import HEADERS, SecurityHeaders


async def healthz(request: Request) -> Response:
    hub = hub_of(request)
    healthy = await hub.store.is_healthy()
    return JSONResponse({"status": "ok" if healthy else "degraded", **hub.leader()})


async def not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("not found", 404)


async def unavailable(request: Request, exc: Exception) -> Response:
    # PostgreSQL out of reach (store.UNAVAILABLE): nothing to show until it is back; the log has the reason.
    return PlainTextResponse("the database is unavailable; try again", 503, headers=HEADERS)


async def server_error(request: Request, exc: Exception) -> Response:
    # Starlette already logged the traceback; the client gets one line and never the traceback.
    # This answer comes from Starlette's outermost middleware, outside SecurityHeaders: add them here.
    return PlainTextResponse("internal error; see the heartwatch log", 500, headers=HEADERS)


def create_app(hub: Hub, extra_routes: list[BaseRoute] | None = None, auth: Auth | None = None) -> Starlette:
    """The app; `auth` is the login (server.py builds it with the database's session secret). Without it, a
    `web_password` in the settings gets a login whose sessions last as long as this process."""
    if auth is None and hub.settings.web_password:
        auth = Auth(hub.settings.web_password, secrets.token_bytes(32),
                    secure_cookie=secure_cookie_for(hub.settings.base_url), clock=hub.clock)
    routes: list[BaseRoute] = [
        *api.routes,
        *api_write.routes,
        *hc_api.routes,  # Healthchecks' API v3: its own X-Api-Key, open past the login like the pings
        *openapi.routes,
        *metrics.routes,
        Route("/healthz", healthz, methods=["GET"]),
        *manage.routes,  # before the pages: /checks/new is the form, not a check named "new"
        *pages.routes,
        *login.routes,
        *(extra_routes or []),
    ]
    # Outermost first. Pings are answered by PingEndpoint before the others run, so neither the headers
    # nor the login cost a ping anything; without a password the gate is not installed at all.
    # HeaderLimit first: oversized headers are refused before a ping or a page costs anything.
    middleware = [Middleware(limits.HeaderLimit), Middleware(ping_view.PingEndpoint, hub=hub),
                  Middleware(SecurityHeaders)]
    if auth is not None:
        middleware.append(Middleware(AuthGate, auth=auth, tokens=hub.settings.api_tokens))
    handlers: dict[Any, Any] = {404: not_found, 500: server_error}
    handlers.update(dict.fromkeys(hub.store.UNAVAILABLE, unavailable))
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)
    app.state.hub = hub
    # One app per process: its footer says which process leads (empty on SQLite, where there is only one).
    templates.globals["leader_note"] = hub.leader_note
    app.state.auth = auth
    app.state.login_limiter = login.login_limiter()
    # Pings are counted as they are stored: the events table is pruned, so it cannot count them later.
    app.state.ping_counter = metrics.PingCounter()
    hub.ping_listeners.append(app.state.ping_counter)
    return app
