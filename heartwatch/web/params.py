"""Numbers in query strings and paths, validated before they reach a read: a bad or huge one is a 400 with a
one-line reason, never a traceback (`?page=%C2%B2` passed str.isdigit() and broke int(); 5,000 digits broke
int()'s limit; 99999999999999999999999 overflowed SQLite's integers)."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

#: SQLite's integers are 64-bit: anything a query compares must fit.
MOST = 2**63 - 1


class BadParam(ValueError):
    """A bad parameter; `str()` is the one line for the client, `name` the parameter."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name


def whole(raw: str | None, name: str, lo: int = 1, hi: int = MOST, default: int | None = None) -> int | None:
    """`raw` as a whole number from lo to hi (ASCII digits only); `default` when absent or empty."""
    if raw is None or raw == "":
        return default
    # isascii first: "²" and other Unicode digits pass isdigit() but not int(); the length stops int()'s cost.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not lo <= int(raw) <= hi:
        raise BadParam(name, f"expected a whole number from {lo} to {hi}")
    return int(raw)


def page_param(raw: str | None, name: str, lo: int = 1, hi: int = MOST, default: int | None = None) -> int | None:
    """`whole` for HTML pages: a bad value raises HTTPException(400), which Starlette answers as one line."""
    try:
        return whole(raw, name, lo, hi, default)
    except BadParam as e:
        raise HTTPException(400, str(e)) from None


class BadBody(ValueError):
    """A request body refused before it is used: `status` (400 or 413) and a one-line reason."""

    def __init__(self, status: int, reason: str, *, unreadable: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.unreadable = unreadable  # there was a whole body, but it is not JSON a parser could read


async def json_body(request: Request, limit: int) -> Any:
    """The request's JSON body (None when empty), read in chunks so one over `limit` bytes is refused before it
    is all in memory. Raises BadBody for a body too large, a client gone, a body that is not JSON, and one
    nested deeper than the parser goes (`[` x 60,000 raised RecursionError, which had been answered 503)."""
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and (len(length) > 12 or int(length) > limit):
        raise BadBody(413, f"body too large: at most {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise BadBody(413, f"body too large: at most {limit} bytes")
    except ClientDisconnect:
        raise BadBody(400, "the client went away before the body arrived") from None
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadBody(400, f"the body is not valid JSON: {e}", unreadable=True) from None
    except RecursionError:
        raise BadBody(400, "the body is nested too deeply for a JSON object of settings", unreadable=True) from None
