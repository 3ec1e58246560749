"""The ping endpoint: parse the request, store the ping, answer. The decisions live in `pings` and `runs`."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from heartwatch.hub import hub_of
from heartwatch.model import Ping
from heartwatch.pings import BadPing, parse_ping
from heartwatch.store import PingOutcome

log = logging.getLogger("heartwatch.ping")

#: Bodies larger than this are refused (413) before being read whole; the stored tail is far smaller.
MAX_BODY = 1_000_000


async def read_tail(request: Request, limit: int) -> bytes:
    """The last `limit` bytes of the body: a job's output matters most at its end."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        raise BadPing(413, f"body too large: at most {MAX_BODY} bytes")
    tail = bytearray()
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > MAX_BODY:
            raise BadPing(413, f"body too large: at most {MAX_BODY} bytes")
        tail += chunk
        if len(tail) > limit:
            del tail[: len(tail) - limit]
    return bytes(tail)


async def ping(request: Request) -> Response:
    hub = hub_of(request)
    limit = hub.settings.body_limit
    headers = {"Ping-Body-Limit": str(limit)}
    try:
        req = parse_ping(request.path_params["rest"], request.query_params, hub.settings.timezone)
        body = await read_tail(request, limit)
    except BadPing as e:
        return PlainTextResponse(e.reason, e.status, headers=headers)
    except ClientDisconnect:
        return PlainTextResponse("client went away", 400, headers=headers)
    item = Ping(kind=req.kind, at=hub.clock(), step=req.step, rid=req.rid, exit_code=req.exit_code, body=body,
                remote_addr=request.client.host if request.client else None,
                user_agent=request.headers.get("user-agent"), method=request.method)
    try:
        result = await hub.store.record_ping(req, item)
    except Exception:  # the database refused the write (disk full, I/O error): say so, the client retries
        log.exception("could not store a ping")
        return PlainTextResponse("could not store the ping; try again", 503, headers=headers)
    if result.outcome is PingOutcome.NOT_FOUND:
        return PlainTextResponse("not found", 404, headers=headers)
    for listener in hub.ping_listeners:
        listener(result)
    if result.outcome is PingOutcome.CREATED:
        return PlainTextResponse("Created", 201, headers=headers)
    return PlainTextResponse("OK", headers=headers)


routes = [Route("/ping/{rest:path}", ping, methods=["GET", "HEAD", "POST", "PUT"])]
