"""The JSON API fuzzed from its own OpenAPI document (schemathesis generates the requests, valid and not).

Each generated request is sent in-process with a valid token, without one and with a wrong one. Every
answer must be documented for its operation (status, content type, schema), never a 500 or a traceback;
a write without the right token is 401 (403 when no token is configured) and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_fuzz_pings import FUZZ, TOKEN, FuzzApp, assert_no_traceback, check_database, report_requests

from heartwatch.web.openapi import document

__all__ = ["report_requests"]  # the module fixture that prints the request count

CHECKS = {"from-file": {"period": "1h"}}
SLUGS = ["from-file", "job", "other", "nope"]
#: Each generated case goes out once per authorization, so a write is tried with and without the right token.
AUTHS: list[str | None] = [f"Bearer {TOKEN}", None, "Bearer wrong-token"]
API_EXAMPLES = 380
CHECKS_RUN = [status_code_conformance, content_type_conformance, response_schema_conformance]


def api_operations() -> Any:
    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(document("http://hw.test"))))
    return [op for result in schema.get_all_operations() if (op := result.ok()).path.startswith("/api/")]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FuzzApp]:
    fuzz = FuzzApp.open(tmp_path, CHECKS)
    # An API check to update, pause and delete, beside the read-only config one.
    r = fuzz.request("POST", "/api/v1/checks", __name__, json={"slug": "job", "schedule": "0 2 * * *"},
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201, r.text
    try:
        yield fuzz
    finally:
        fuzz.close()


def snapshot(app: FuzzApp) -> list[Any]:
    return app.sql("SELECT id, uuid, slug, spec, source, paused, archived_at FROM checks ORDER BY id")


def body_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """schemathesis' request body as httpx takes it (raw bytes as `content`, not the deprecated `data`)."""
    out = {k: kwargs[k] for k in ("json", "content") if k in kwargs}
    if "data" in kwargs:
        out["data" if isinstance(kwargs["data"], dict) else "content"] = kwargs["data"]
    return out


@st.composite
def api_cases(draw: st.DrawFn, operations: list[Any]) -> Any:
    op = draw(st.sampled_from(operations))
    mode = draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
    case = draw(op.as_strategy(generation_mode=mode))
    if case.path_parameters and "slug" in case.path_parameters and draw(st.booleans()):
        case.path_parameters["slug"] = draw(st.sampled_from(SLUGS))  # a check that exists, more often than by chance
    if isinstance(case.body, dict) and draw(st.booleans()):
        case.body["slug"] = draw(st.sampled_from(SLUGS))
    return case


def test_generated_api_requests_get_documented_answers_and_writes_need_the_token(app: FuzzApp) -> None:
    operations = api_operations()
    assert {op.method.upper() for op in operations} == {"GET", "POST", "PATCH", "DELETE"}
    module = __name__

    @settings(FUZZ, max_examples=API_EXAMPLES)
    @given(case=api_cases(operations))
    def one_case(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://hw.test")
        write = case.method.upper() != "GET"
        for auth in AUTHS:
            headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"}
            if auth is not None:
                headers["Authorization"] = auth
            before = snapshot(app) if write and auth != AUTHS[0] else None
            r = app.request(kwargs["method"], kwargs["url"].removeprefix("http://hw.test"), module,
                            headers=headers, params=kwargs.get("params"),
                            **body_kwargs(kwargs))
            assert r.status_code != 500, r.text
            assert_no_traceback(r.text)
            case.validate_response(r, checks=CHECKS_RUN)
            if before is not None:
                assert r.status_code == 401, (auth, r.status_code, r.text)
                assert snapshot(app) == before

    one_case()
    check_database(app)


def test_without_a_configured_token_every_generated_write_is_403_and_changes_nothing(tmp_path: Path) -> None:
    app = FuzzApp.open(tmp_path, CHECKS, api_tokens=())
    writes = [op for op in api_operations() if op.method.upper() != "GET"]
    module = __name__
    try:
        before = snapshot(app)

        @settings(FUZZ, max_examples=60)
        @given(case=api_cases(writes), auth=st.sampled_from(AUTHS))
        def one_write(case: Any, auth: str | None) -> None:
            kwargs = case.as_transport_kwargs(base_url="http://hw.test")
            headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"}
            if auth is not None:
                headers["Authorization"] = auth
            r = app.request(kwargs["method"], kwargs["url"].removeprefix("http://hw.test"), module, headers=headers,
                            params=kwargs.get("params"), **body_kwargs(kwargs))
            assert r.status_code == 403 and "no API token is configured" in r.json()["error"], r.text
            assert_no_traceback(r.text)
            case.validate_response(r, checks=CHECKS_RUN)

        one_write()
        assert snapshot(app) == before
    finally:
        app.close()
