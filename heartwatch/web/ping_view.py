"""The ping endpoint: parse the request, store the ping, answer. The decisions live in `pings` and `runs`.

Pings are the hot path (every cron job, every step), so they are served by a small ASGI middleware in
front of Starlette's router: it reads the path, query and body straight from the ASGI scope and answers
in two messages, without building a Request, routing or running the exception middleware. Everything
else goes on to the Starlette app unchanged.

Other tools' ping URLs (Uptime Kuma's /api/push/, upti.my's /v1/heartbeat/, Cronitor's /p/: core/compat_pings.py)
take the same way, each answered as its tool answers.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heartwatch.core.compat_pings import PREFIXES as COMPAT_PREFIXES
from heartwatch.core.compat_pings import Dialect, parse_compat
from heartwatch.core.model import Ping
from heartwatch.core.pings import BadPing, parse_ping
from heartwatch.store.sqlite import PingOutcome
from heartwatch.web.hub import Hub
from heartwatch.web.limits import cut_user_agent
from heartwatch.web.log_throttle import LogThrottle
from heartwatch.web.ratelimit import FixedWindow

log = logging.getLogger("heartwatch.ping")

#: Bodies larger than this are refused (413) before being read whole; the stored tail is far smaller.
MAX_BODY = 1_000_000
PREFIX = "/ping/"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT"})


class PingEndpoint:
    """ASGI middleware: `/ping/...` is answered here, every other request goes to `app`."""

    def __init__(self, app: ASGIApp, hub: Hub) -> None:
        self.app, self.hub = app, hub
        # [server] rate_limit: pings per minute per check URL; None (the default) costs a ping nothing.
        rate = hub.settings.rate_limit
        self.flood = FixedWindow(rate, 60.0) if rate > 0 else None
        self.errors = LogThrottle(log)  # a full disk fails every ping the same way: logged once a minute

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        prefix, dialect = PREFIX, None
        if not path.startswith(PREFIX):
            found = next(((p, d) for p, d in COMPAT_PREFIXES.items() if path.startswith(p)), None)
            if found is None:
                await self.app(scope, receive, send)
                return
            prefix, dialect = found
        limit = self.hub.settings.body_limit
        try:
            status, text = await self._ping(scope, receive, limit, path[len(prefix):], dialect)
        except Exception as e:  # never a traceback to the client; the log has it (once a minute)
            self.errors.exception("ping failed", e)
            status, text = 500, "internal error; see the heartwatch log"
        status, content_type, payload = _answer(dialect, status, text)
        body = b"" if scope["method"] == "HEAD" else payload
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", content_type),
            (b"content-length", str(len(payload)).encode()),
            (b"ping-body-limit", str(limit).encode()),
            (b"x-content-type-options", b"nosniff"),
            *([(b"retry-after", str(self.flood.retry_after(self.hub.clock().timestamp())).encode())]
              if status == 429 and self.flood is not None else []),
        ]})
        await send({"type": "http.response.body", "body": body})

    async def _ping(self, scope: Scope, receive: Receive, limit: int, rest: str,
                    dialect: Dialect | None) -> tuple[int, str]:
        """`rest`: the path after the ping prefix (/ping/, or the prefix of `dialect`'s URLs)."""
        hub = self.hub
        if scope["method"] not in METHODS:
            return 405, "method not allowed: use GET, HEAD, POST or PUT"
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        now = hub.clock()  # read once: the rate window and the ping's time agree
        given, ping_ms = None, None
        try:
            if dialect is None:
                req = parse_ping(rest, query, hub.settings.timezone)
            else:
                compat = parse_compat(dialect, rest, query, hub.settings.timezone)
                req, given, ping_ms = compat.request, compat.body, compat.ping_ms
            if self.flood is not None and self.flood.hit(req.uuid or (req.ping_key, req.slug), now.timestamp()):
                # Keyed by the URL, before the store resolves it: a flood is refused without touching the disk
                # or reading its body, and made-up URLs only cost a counter until the minute ends.
                return 429, f"rate limited: at most {self.flood.limit} pings per minute"
            body = await read_tail(scope, receive, limit)
            if given is not None:  # the message the URL carries is what the job said
                body = given[-limit:] if limit else b""
        except BadPing as e:
            return e.status, e.reason
        except ClientGone:
            return 400, "client went away"
        headers = dict(scope["headers"])
        client = scope.get("client")
        ua = headers.get(b"user-agent")
        item = Ping(kind=req.kind, at=now, step=req.step, rid=req.rid, exit_code=req.exit_code, body=body,
                    remote_addr=client[0] if client else None,
                    user_agent=cut_user_agent(ua), method=scope["method"], ping_ms=ping_ms)
        try:
            result = await hub.store.record_ping(req, item)
        except hub.store.WRITE_ERRORS as e:  # the database refused the write (disk full, I/O error): the client retries
            self.errors.exception("could not store a ping", e)
            return 503, "could not store the ping; try again"
        # Anything else is a bug: the outer handler logs it and answers 500, which a client does not retry for ever.
        if result.outcome is PingOutcome.NOT_FOUND:
            return 404, "not found"
        if result.outcome is PingOutcome.TOO_MANY:
            return 409, f"not created: at most {hub.settings.max_checks} checks ([server] max_checks)"
        for listener in hub.ping_listeners:
            listener(result)
        if result.outcome is PingOutcome.CREATED:
            return 201, "Created"
        return 200, "OK"


def _answer(dialect: Dialect | None, status: int, text: str) -> tuple[int, bytes, bytes]:
    """(status, content type, body) as the tool whose URL was used answers."""
    if dialect is Dialect.KUMA:
        # Kuma answers a push it took with {"ok": true}, and anything else with {"ok": false, "msg": why}.
        doc: dict[str, object] = {"ok": True} if status < 300 else {"ok": False, "msg": text}
        return (200 if status < 300 else status), b"application/json", json.dumps(doc).encode()
    if dialect is Dialect.CRONITOR and status < 300:
        return 200, b"text/plain; charset=utf-8", b""  # Cronitor's telemetry answers 200 with an empty body
    return status, b"text/plain; charset=utf-8", text.encode()


class ClientGone(Exception):
    pass


async def read_tail(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The last `limit` bytes of the body: a job's output matters most at its end."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and (len(value) > 12 or int(value) > MAX_BODY):
            raise BadPing(413, f"body too large: at most {MAX_BODY} bytes")
    tail = b""
    seen = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > MAX_BODY:
            raise BadPing(413, f"body too large: at most {MAX_BODY} bytes")
        tail = (tail + chunk)[-limit:] if limit else b""
        if not message.get("more_body", False):
            return tail
