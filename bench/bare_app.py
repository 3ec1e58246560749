"""The ceiling: a bare Starlette endpoint on uvicorn that only answers "OK" (bench/pings.py compares to it)."""

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def ok(request: Request) -> PlainTextResponse:
    await request.body()  # read the body like heartwatch does, so both do the same socket work
    return PlainTextResponse("OK")


app = Starlette(routes=[Route("/ping/{rest:path}", ok, methods=["GET", "POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
                server_header=False)
