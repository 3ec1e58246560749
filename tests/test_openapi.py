"""The OpenAPI document: valid OpenAPI 3.1, served, in step with the router, and true of real responses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from support.server import Server

from heartwatch.config import Settings
from heartwatch.store.sqlite import Store
from heartwatch.web.app import create_app
from heartwatch.web.hub import Hub
from heartwatch.web.openapi import SCHEMAS, document
from heartwatch.web.ping_view import PingEndpoint

TOKEN = "doc-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"HEARTWATCH_API_TOKEN": TOKEN}


@pytest.fixture
def server_config() -> str:
    return '[checks.from-file]\nperiod = "1h"\n'


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document("http://127.0.0.1:8000")
    assert doc["openapi"].startswith("3.1")
    validate(json.loads(json.dumps(doc)))  # as served: plain JSON, no tuples


def _router_api_routes(tmp_path: Path) -> dict[str, set[str]]:
    app = create_app(Hub(settings=Settings(), store=Store(tmp_path / "unused.db")))
    found: dict[str, set[str]] = {}
    for route in app.routes:
        path = getattr(route, "path", "")
        methods = getattr(route, "methods", None) or set()
        if path.startswith("/api/v1/"):
            # Starlette adds HEAD to every GET route on its own; the document lists what we chose.
            found.setdefault(path, set()).update(m.lower() for m in methods if m != "HEAD")
    return found


def test_every_api_route_is_documented_and_every_documented_api_path_exists(tmp_path: Path) -> None:
    documented = {path: {m for m in ops if m in METHODS} for path, ops in document()["paths"].items()
                  if path.startswith("/api/v1/")}
    assert _router_api_routes(tmp_path) == documented


def test_the_ping_endpoint_metrics_and_healthz_are_documented(tmp_path: Path) -> None:
    paths = document()["paths"]
    pings = [p for p in paths if p.startswith("/ping/")]
    assert len(pings) == 3  # /ping/<uuid>, the two-part forms, and the slug form with a suffix
    for p in pings:
        assert set(paths[p]) == {"get", "head", "post", "put"}
        names = {q["name"] for q in paths[p]["get"]["parameters"] if q["in"] == "query"}
        assert {"step", "rid", "create", "schedule", "tz", "grace", "max_runtime"} <= names
    assert "/metrics" in paths and "/healthz" in paths
    app = create_app(Hub(settings=Settings(), store=Store(tmp_path / "unused.db")))
    assert {"/metrics", "/healthz"} <= {getattr(r, "path", "") for r in app.routes}
    # /ping/... is answered by the PingEndpoint middleware in front of the router (the hot path).
    assert PingEndpoint in {m.cls for m in app.user_middleware}


def test_write_operations_and_only_they_need_the_bearer_token() -> None:
    doc = document()
    bearer = doc["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method not in METHODS or not path.startswith("/api/"):
                continue
            assert ("security" in op) == (method != "get"), (path, method)


# --- served, and true of what the server answers ---------------------------------------------------------


def check_against(doc: dict[str, Any], path: str, method: str, response: httpx.Response) -> Any:
    """Validate a response's JSON against the document's schema for it; returns the JSON."""
    answers = doc["paths"][path][method]["responses"]
    assert str(response.status_code) in answers, f"{method} {path} answered {response.status_code}, undocumented"
    schema = answers[str(response.status_code)]["content"]["application/json"]["schema"]
    body = response.json()
    # `components` beside the schema lets its #/components/... references resolve.
    jsonschema.Draft202012Validator({"components": doc["components"], **schema}).validate(body)
    return body


def test_served_and_real_answers_match_the_schemas(server: Server) -> None:
    r = server.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc == json.loads(json.dumps(document(server.url)))

    def call(method: str, path: str, template: str, **kw: Any) -> Any:
        return check_against(doc, template, method, httpx.request(method.upper(), server.url + path, timeout=10,
                                                                   **kw))

    created = call("post", "/api/v1/checks", "/api/v1/checks", headers=AUTH,
                   json={"slug": "job", "schedule": "0 2 * * *", "steps": ["a", {"name": "b", "max": "5m"}]})
    assert set(created) == set(SCHEMAS["Check"]["properties"])  # nothing sent that the document does not name
    httpx.get(server.slug_url("job", "/start"), params={"rid": "r1"}, timeout=10)
    httpx.post(server.slug_url("job"), params={"step": "a", "rid": "r1"}, content=b"output", timeout=10)
    listed = call("get", "/api/v1/checks", "/api/v1/checks")
    assert {c["slug"] for c in listed["checks"]} == {"job", "from-file"}
    check = call("get", "/api/v1/checks/job", "/api/v1/checks/{slug}")
    runs = call("get", "/api/v1/checks/job/runs", "/api/v1/checks/{slug}/runs")["runs"]
    assert set(runs[0]) == set(SCHEMAS["Run"]["properties"]) and check["last_run"] == runs[0]
    events = call("get", "/api/v1/checks/job/events", "/api/v1/checks/{slug}/events")["events"]
    assert set(events[0]) == set(SCHEMAS["Event"]["properties"])
    call("get", "/api/v1/checks/job/runs?limit=0", "/api/v1/checks/{slug}/runs")
    call("get", "/api/v1/checks/nope", "/api/v1/checks/{slug}")
    call("patch", "/api/v1/checks/job", "/api/v1/checks/{slug}", headers=AUTH, json={"period": "1h"})
    call("patch", "/api/v1/checks/job", "/api/v1/checks/{slug}", headers=AUTH, json={"period": "x"})
    call("patch", "/api/v1/checks/from-file", "/api/v1/checks/{slug}", headers=AUTH, json={"period": "2h"})
    call("post", "/api/v1/checks", "/api/v1/checks", headers=AUTH, content=b"[]")
    call("post", "/api/v1/checks", "/api/v1/checks", json={"slug": "x"})
    call("post", "/api/v1/checks/job/pause", "/api/v1/checks/{slug}/pause", headers=AUTH)
    call("post", "/api/v1/checks/job/resume", "/api/v1/checks/{slug}/resume", headers=AUTH)
    call("delete", "/api/v1/checks/job", "/api/v1/checks/{slug}", headers=AUTH)
    call("delete", "/api/v1/checks/nope", "/api/v1/checks/{slug}", headers=AUTH)
    call("get", "/healthz", "/healthz")
