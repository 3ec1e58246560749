"""Security headers on every response of the Starlette app (pages, JSON, badges, static files, errors).

A pure ASGI middleware that adds the headers to `http.response.start`: BaseHTTPMiddleware would wrap
every response in a streaming body and cost far more. Pings never pass through here (their endpoint
sits in front and sends X-Content-Type-Options itself), so the hot path pays nothing.

The policy allows only heartwatch's own files: the pages have no inline script or style (static/app.js
and app.css do everything), the charts and badges are inline SVG elements, not `style` attributes, and
the favicon may be a data: URL in some browsers' caches, hence `img-src 'self' data:`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

#: Header name -> value, as plain strings (for Response(headers=...)) ...
HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
}
# ... and as the ASGI raw pairs the middleware appends.
_RAW = [(name.lower().encode(), value.encode()) for name, value in HEADERS.items()]


class SecurityHeaders:
    """ASGI middleware: add HEADERS to every HTTP response that does not already set them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [pair for pair in _RAW if pair[0] not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
