"""What one request may cost: its headers' size, how long a client may take to send it, what of it is stored.

Two layers. `LimitedHttp` is the HTTP protocol uvicorn runs (server.py passes it as `http=`): it closes a
connection whose request head is not complete within HEAD_TIMEOUT or whose body is not complete within
BODY_TIMEOUT (a slow client would otherwise hold a socket and a file handle for as long as it likes), and
answers 431 to a head still unfinished past HEAD_BUFFER bytes (httptools has no limit of its own: an 8 MB
User-Agent was read whole). `HeaderLimit` is an ASGI middleware, outermost, that answers 431 to headers over
MAX_HEADERS bytes in all before anything else runs, for any server (and in-process tests).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Request headers (names and values) larger than this in all are refused with 431.
MAX_HEADERS = 16 * 1024
#: A head not complete after this many bytes is refused by the protocol before it is parsed further.
HEAD_BUFFER = 64 * 1024
#: Seconds a client may take to send a request's head, and then its body.
HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 60.0
#: Characters of a User-Agent that are stored (DESIGN.md section 3).
MAX_USER_AGENT = 500

TOO_LARGE = "request headers too large: at most 16384 bytes in all"


def cut_user_agent(raw: bytes | None) -> str | None:
    """The User-Agent as stored: its first MAX_USER_AGENT characters."""
    return None if raw is None else raw[:MAX_USER_AGENT].decode("latin-1")


def headers_size(scope: Scope) -> int:
    return sum(len(name) + len(value) for name, value in scope["headers"])


class HeaderLimit:
    """ASGI middleware: 431 for request headers over MAX_HEADERS in all, before any other work."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and headers_size(scope) > MAX_HEADERS:
            body = TOO_LARGE.encode()
            await send({"type": "http.response.start", "status": 431, "headers": [
                (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


class LimitedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's head and body, and a cap on the head."""

    head_timeout, body_timeout = HEAD_TIMEOUT, BODY_TIMEOUT
    _timer: asyncio.TimerHandle | None = None
    _in_head = True
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout)  # a connection that sends nothing is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._timer is None:
                self._arm(self.head_timeout)
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > HEAD_BUFFER and not self.transport.is_closing():
            self._refuse()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()  # the app, if it was reading the body, sees http.disconnect

    def _refuse(self) -> None:
        body = TOO_LARGE.encode()
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; "
                             b"charset=utf-8\r\nconnection: close\r\ncontent-length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport.close()
