"""The API's errors: JSON `{"error", "field"}` with the status that fits, for reads and writes alike."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status)


class ApiError(Exception):
    """A request we answer with `status` and a JSON error naming the field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status, self.message, self.field = status, message, field
        super().__init__(message)

    def response(self) -> Response:
        resp = error(self.status, self.message, self.field)
        if self.status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="heartwatch"'
        return resp
