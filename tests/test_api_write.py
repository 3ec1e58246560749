"""The write API: tokens, upsert, PATCH, archive, pause/resume, read-only config checks, validation, create-by-ping.

Most tests talk to a real `heartwatch serve` over TCP, as a user's script would; a few run the app
in-process to see what the server does behind the answer (listeners) or to test the pure helpers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.server import Server

from heartwatch.config import Settings, parse_check
from heartwatch.core.model import CheckSpec, StepSpec
from heartwatch.core.settings import spec_table
from heartwatch.store.sqlite import Store
from heartwatch.web.api_errors import ApiError
from heartwatch.web.app import create_app
from heartwatch.web.bearer import authorize
from heartwatch.web.check_input import merge
from heartwatch.web.hub import Hub

TOKEN = "s3cret-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = """
[checks.config-job]
schedule = "0 2 * * *"
"""


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"HEARTWATCH_API_TOKEN": TOKEN}


@pytest.fixture
def server_config() -> str:
    return CONFIG


def send(server: Server, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         content: bytes | None = None) -> httpx.Response:
    return httpx.request(method, server.url + path, json=body, content=content,
                         headers=AUTH if headers is None else headers, timeout=10)


def exists(server: Server, slug: str) -> bool:
    return server.get(f"/api/v1/checks/{slug}").status_code == 200


# --- tokens ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("server_env", [{}])
def test_without_a_configured_token_writes_are_refused_and_the_answer_says_how_to_allow_them(
        server: Server) -> None:
    for method, path, body in [("POST", "/api/v1/checks", {"slug": "x"}),
                               ("PATCH", "/api/v1/checks/config-job", {"name": "n"}),
                               ("DELETE", "/api/v1/checks/config-job", None),
                               ("POST", "/api/v1/checks/config-job/pause", None)]:
        r = send(server, method, path, body)
        assert r.status_code == 403, (method, path)
        assert "[api] tokens" in r.json()["error"] and "HEARTWATCH_API_TOKEN" in r.json()["error"]
    assert not exists(server, "x")
    assert server.api("/checks/config-job")["paused"] is False


def test_a_missing_or_wrong_token_is_401_and_changes_nothing(server: Server) -> None:
    for headers in [{}, {"Authorization": "Basic " + TOKEN}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"}]:
        r = send(server, "POST", "/api/v1/checks", {"slug": "x"}, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "token" in r.json()["error"]
    assert not exists(server, "x")


TWO_TOKENS = "correct horse battery staple\nsecond-token-0123456789"


@pytest.mark.parametrize("server_env", [{"HEARTWATCH_API_TOKEN": TWO_TOKENS}])
def test_any_configured_token_works_and_only_whole(server: Server) -> None:
    # Issue 14, finding 6: "horse" was a token of its own (tokens were split on spaces and commas).
    for part in ("horse", "correct", "staple", "correct horse"):
        r = send(server, "POST", "/api/v1/checks", {"slug": "x"}, {"Authorization": f"Bearer {part}"})
        assert r.status_code == 401
    auth = {"Authorization": "Bearer correct horse battery staple"}
    assert send(server, "POST", "/api/v1/checks", {"slug": "x"}, auth).status_code == 201
    auth = {"Authorization": "Bearer second-token-0123456789"}
    assert send(server, "POST", "/api/v1/checks", {"slug": "y"}, auth).status_code == 201


def test_authorize_compares_every_token() -> None:
    authorize(("one", "two"), "Bearer two")
    authorize(("one",), "bearer   one ")
    with pytest.raises(ApiError) as info:
        authorize((), "Bearer one")
    assert info.value.status == 403
    for header in (None, "", "Bearer ", "Token one", "Bearer on", "Bearer one1"):
        with pytest.raises(ApiError) as info:
            authorize(("one",), header)
        assert info.value.status == 401


# --- create, upsert, patch, archive ---------------------------------------------------------------------------


def test_post_creates_and_an_existing_slug_is_updated_keeping_its_history(server: Server) -> None:
    body = {"slug": "backup", "name": "Nightly backup", "schedule": "0 2 * * *", "timezone": "Europe/Berlin",
            "start_grace": "10m", "max_runtime": "2h", "steps": ["dump", {"name": "upload", "max": "45m"}],
            "strict_steps": True, "alert_after": 2, "alerts": ["json://localhost:1/"], "tags": ["db", "prod"]}
    r = send(server, "POST", "/api/v1/checks", body)
    assert r.status_code == 201
    assert r.headers["location"] == "/api/v1/checks/backup"
    created = r.json()
    assert {k: created[k] for k in ("slug", "name", "schedule", "timezone", "start_grace", "max_runtime",
                                    "strict_steps", "alert_after", "tags", "source", "status")} == {
        "slug": "backup", "name": "Nightly backup", "schedule": "0 2 * * *", "timezone": "Europe/Berlin",
        "start_grace": "10m", "max_runtime": "2h", "strict_steps": True, "alert_after": 2, "tags": ["db", "prod"],
        "source": "api", "status": "new"}
    assert created["steps"] == [{"name": "dump", "max": None}, {"name": "upload", "max": "45m"}]
    assert server.api("/checks/backup") == created

    assert httpx.get(created["ping_url"], timeout=10).status_code == 200
    [run] = server.api("/checks/backup/runs")["runs"]
    r = send(server, "POST", "/api/v1/checks", {"slug": "backup", "period": "1h", "timezone": None})
    assert r.status_code == 200
    updated = r.json()
    # An upsert replaces the settings whole: what the body leaves out is back to its default.
    assert (updated["uuid"], updated["period"], updated["schedule"], updated["steps"], updated["name"]) == (
        created["uuid"], "1h", None, [], "backup")
    assert updated["timezone"] == "UTC" and updated["tags"] == []
    assert updated["last_run"] == run  # the run from before the update is still there
    assert server.api("/checks/backup/runs")["runs"] == [run]
    assert [c["slug"] for c in server.api("/checks")["checks"]] == ["backup", "config-job"]


def test_patch_merges_the_given_keys(server: Server) -> None:
    send(server, "POST", "/api/v1/checks", {"slug": "sync", "schedule": "*/5 * * * *", "tags": ["a"],
                                            "steps": ["fetch"]})
    r = send(server, "PATCH", "/api/v1/checks/sync", {"max_runtime": "30m", "name": "Sync"})
    assert r.status_code == 200
    got = r.json()
    assert (got["schedule"], got["max_runtime"], got["name"], got["tags"], got["steps"]) == (
        "*/5 * * * *", "30m", "Sync", ["a"], [{"name": "fetch", "max": None}])
    # Giving period drops schedule (they exclude each other); null puts a key back to its default.
    got = send(server, "PATCH", "/api/v1/checks/sync", {"period": "2h", "tags": None, "slug": "sync"}).json()
    assert (got["schedule"], got["period"], got["tags"], got["max_runtime"]) == (None, "2h", [], "30m")

    r = send(server, "PATCH", "/api/v1/checks/sync", {"max_runtime": "soon"})
    assert (r.status_code, r.json()["field"]) == (422, "max_runtime")
    r = send(server, "PATCH", "/api/v1/checks/sync", {"colour": None})
    assert (r.status_code, r.json()["field"]) == (422, "colour")
    r = send(server, "PATCH", "/api/v1/checks/sync", {"slug": "other"})
    assert (r.status_code, r.json()["field"]) == (422, "slug")
    assert server.api("/checks/sync")["max_runtime"] == "30m"  # the failed patches changed nothing
    r = send(server, "PATCH", "/api/v1/checks/nope", {"name": "x"})
    assert (r.status_code, r.json()["field"]) == (404, "slug")
    assert not exists(server, "nope")


def test_delete_archives_keeping_history_and_post_brings_it_back(server: Server) -> None:
    send(server, "POST", "/api/v1/checks", {"slug": "old", "period": "1d"})
    assert httpx.get(server.slug_url("old"), timeout=10).status_code == 200
    r = send(server, "DELETE", "/api/v1/checks/old")
    assert r.status_code == 200 and r.json()["archived"] is True
    assert "old" not in [c["slug"] for c in server.api("/checks")["checks"]]
    assert server.api("/checks/old")["archived"] is True
    assert len(server.api("/checks/old/runs")["runs"]) == 1
    assert send(server, "DELETE", "/api/v1/checks/old").status_code == 200  # idempotent
    r = send(server, "PATCH", "/api/v1/checks/old", {"name": "x"})
    assert r.status_code == 404 and "archived" in r.json()["error"]

    r = send(server, "POST", "/api/v1/checks", {"slug": "old", "period": "2d"})
    assert r.status_code == 200
    assert (r.json()["archived"], r.json()["period"], r.json()["last_run"]["state"]) == (False, "2d", "ok")
    assert send(server, "DELETE", "/api/v1/checks/never").status_code == 404


def test_pause_and_resume_including_a_config_check(server: Server) -> None:
    send(server, "POST", "/api/v1/checks", {"slug": "job", "period": "1h"})
    for slug in ("job", "config-job"):
        r = send(server, "POST", f"/api/v1/checks/{slug}/pause")
        assert r.status_code == 200
        assert (r.json()["status"], r.json()["paused"]) == ("paused", True)
        assert server.api(f"/checks/{slug}")["status"] == "paused"
        assert send(server, "POST", f"/api/v1/checks/{slug}/pause").status_code == 200  # already paused: fine
        r = send(server, "POST", f"/api/v1/checks/{slug}/resume")
        assert r.status_code == 200 and r.json()["paused"] is False
        assert server.api(f"/checks/{slug}")["status"] != "paused"
    assert send(server, "POST", "/api/v1/checks/nope/pause").status_code == 404


def test_config_checks_are_read_only_with_the_reason(server: Server) -> None:
    before = server.api("/checks/config-job")
    for method, path, body in [("POST", "/api/v1/checks", {"slug": "config-job", "period": "1h"}),
                               ("PATCH", "/api/v1/checks/config-job", {"period": "1h"}),
                               ("DELETE", "/api/v1/checks/config-job", None)]:
        r = send(server, method, path, body)
        assert r.status_code == 409, method
        assert "config file" in r.json()["error"] and r.json()["field"] == "slug"
    assert server.api("/checks/config-job") == before


BAD_BODIES: list[tuple[bytes, int, str | None]] = [
    (b"{not json", 400, None),
    (b"", 400, None),
    (b'["backup"]', 400, None),
    (b'{"schedule": "0 2 * * *"}', 422, "slug"),
    (b'{"slug": "Bad Slug"}', 422, "slug"),
    (b'{"slug": 7}', 422, "slug"),
    (b'{"slug": "j", "schedule": "every night"}', 422, "schedule"),
    (b'{"slug": "j", "schedule": "0 */5 * * * *"}', 422, "schedule"),
    (b'{"slug": "j", "schedule": "0 2 * * * 2030"}', 422, "schedule"),
    (b'{"slug": "j", "schedule": "@reboot"}', 422, "schedule"),
    (b'{"slug": "j", "schedule": "0 0 31 2 *"}', 422, "schedule"),
    (b'{"slug": "j", "schedule": "0 0 30 2 *"}', 422, "schedule"),
    (b'{"slug": "j", "schedule": "0 2 * * *", "period": "1h"}', 422, "period"),
    (b'{"slug": "j", "timezone": "Mars/Olympus"}', 422, "timezone"),
    (b'{"slug": "j", "start_grace": 900}', 422, "start_grace"),
    (b'{"slug": "j", "max_runtime": "-5m"}', 422, "max_runtime"),
    (b'{"slug": "j", "steps": ["a", "a"]}', 422, "steps"),
    (b'{"slug": "j", "steps": ["finish"]}', 422, "steps"),
    (b'{"slug": "j", "alert_after": 0}', 422, "alert_after"),
    (b'{"slug": "j", "strict_steps": "yes"}', 422, "strict_steps"),
    (b'{"slug": "j", "colour": "red"}', 422, "colour"),
]


def test_validation_errors_name_the_field_and_create_nothing(server: Server) -> None:
    # One server for the whole table: starting one per case would cost seconds each.
    for body, status, field in BAD_BODIES:
        r = send(server, "POST", "/api/v1/checks", content=body,
                 headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == status, (body, r.text)
        answer = r.json()
        assert answer["error"] and "Traceback" not in answer["error"]
        assert answer.get("field") == field, body
        if field == "schedule":  # the message names the value it refused
            assert json.loads(body)["schedule"] in answer["error"], answer
    assert [c["slug"] for c in server.api("/checks")["checks"]] == ["config-job"]


def test_a_huge_body_is_refused(server: Server) -> None:
    r = send(server, "POST", "/api/v1/checks", content=b'{"slug": "x", "name": "' + b"a" * 70_000 + b'"}')
    assert r.status_code == 413


# --- ?create=1 with settings -------------------------------------------------------------------------------


def test_create_by_ping_sets_the_check_up_from_query_parameters(server: Server) -> None:
    params = {"create": "1", "schedule": "0 3 * * *", "tz": "Europe/Berlin", "grace": "10m", "max_runtime": "1h"}
    r = httpx.get(server.slug_url("nightly", "/start"), params=params, timeout=10)
    assert (r.status_code, r.text) == (201, "Created")
    got = server.api("/checks/nightly")
    assert (got["schedule"], got["timezone"], got["start_grace"], got["max_runtime"], got["source"]) == (
        "0 3 * * *", "Europe/Berlin", "10m", "1h", "ping")
    assert got["last_run"]["state"] == "running"

    r = httpx.get(server.slug_url("hourly"), params={"create": "1", "schedule": "1h"}, timeout=10)
    assert r.status_code == 201
    assert (server.api("/checks/hourly")["period"], server.api("/checks/hourly")["schedule"]) == ("1h", None)


def test_a_bad_create_parameter_is_400_and_creates_nothing(server: Server) -> None:
    for params, word in [({"schedule": "every day"}, "schedule"), ({"tz": "Mars/Olympus"}, "tz"),
                         ({"grace": "soon"}, "grace"), ({"max_runtime": "0"}, "max_runtime"),
                         ({"schedule": "0 0 31 2 *"}, "schedule"), ({"schedule": "0 */5 * * * *"}, "schedule"),
                         ({"schedule": "@reboot"}, "schedule")]:
        r = httpx.get(server.slug_url("typo"), params={"create": "1", **params}, timeout=10)
        assert r.status_code == 400
        assert r.text.startswith(f"bad {word} {next(iter(params.values()))!r}: "), r.text
        assert "\n" not in r.text
        assert not exists(server, "typo")


# --- in-process: listeners and helpers -----------------------------------------------------------------------


@pytest.fixture
async def app_client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    store = Store(tmp_path / "hw.db")
    await store.open("key")
    now = datetime(2024, 5, 1, tzinfo=UTC)
    hub = Hub(settings=Settings(api_tokens=(TOKEN,), timezone="Europe/Berlin"), store=store, clock=lambda: now)
    changes: list[str] = []
    hub.change_listeners.append(lambda: changes.append("changed"))
    transport = httpx.ASGITransport(app=create_app(hub))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=AUTH) as client:
            yield client, changes
    finally:
        await store.close()


async def test_successful_writes_tell_the_change_listeners_and_failures_do_not(
        app_client: tuple[httpx.AsyncClient, list[str]]) -> None:
    client, changes = app_client
    r = await client.post("/api/v1/checks", json={"slug": "a", "schedule": "0 2 * * *"})
    assert r.status_code == 201
    assert r.json()["timezone"] == "Europe/Berlin"  # the server's default zone, as for config checks
    assert changes == ["changed"]
    assert (await client.post("/api/v1/checks", json={"slug": "a", "schedule": "nope"})).status_code == 422
    assert (await client.post("/api/v1/checks/b/pause")).status_code == 404
    assert (await client.post("/api/v1/checks", json={"slug": "b"}, headers={"Authorization": ""})).status_code == 401
    assert changes == ["changed"]
    assert (await client.post("/api/v1/checks/a/pause")).status_code == 200
    assert (await client.delete("/api/v1/checks/a")).status_code == 200
    assert changes == ["changed"] * 3


def test_spec_table_parses_back_to_the_same_spec() -> None:
    spec = CheckSpec(slug="s", name="N", schedule="0 2 * * 1", timezone="Asia/Tokyo",
                     start_grace=timedelta(0), max_runtime=timedelta(hours=1, minutes=30),
                     min_runtime=timedelta(seconds=90),
                     steps=(StepSpec("a"), StepSpec("b", timedelta(minutes=45))), strict_steps=True,
                     alert_after=3, alerts=("json://x",), tags=("t",))
    assert parse_check("s", spec_table(spec)) == spec
    period = CheckSpec(slug="p", period=timedelta(days=1))
    assert parse_check("p", spec_table(period)) == period


def test_merge_is_a_json_merge_patch() -> None:
    spec = CheckSpec(slug="s", schedule="0 2 * * *", tags=("a",), max_runtime=timedelta(hours=1))
    table = merge(spec, {"period": "1h", "max_runtime": None, "name": "x"})
    assert "schedule" not in table and "max_runtime" not in table
    assert (table["period"], table["name"], table["tags"]) == ("1h", "x", ["a"])
    # after takes the place of a schedule, and a schedule the place of after
    table = merge(spec, {"after": "dump"})
    assert "schedule" not in table and table["after"] == "dump"
    table = merge(CheckSpec(slug="s", after="dump"), {"schedule": "0 3 * * *"})
    assert "after" not in table and table["schedule"] == "0 3 * * *"


def test_unknown_parents_and_cycles_are_422_naming_the_field_and_the_pipeline_shows(server: Server) -> None:
    assert send(server, "POST", "/api/v1/checks", {"slug": "api-a"}).status_code == 201
    r = send(server, "POST", "/api/v1/checks", {"slug": "api-b", "depends_on": ["api-a"]})
    assert r.status_code == 201 and (r.json()["depends_on"], r.json()["waiting_on"]) == (["api-a"], [])
    r = send(server, "PATCH", "/api/v1/checks/api-a", {"after": "api-b"})
    assert (r.status_code, r.json()) == (422, {"field": "after", "error": "after = 'api-b': a cycle: api-a -> api-b "
                                                                           "-> api-a (each waits on the next)"})
    assert server.api("/checks/api-a")["after"] is None  # unchanged
    r = send(server, "POST", "/api/v1/checks", {"slug": "api-c", "depends_on": ["nope"]})
    assert (r.status_code, r.json()) == (422, {"field": "depends_on",
                                               "error": "depends_on = ['nope']: no check is called 'nope'"})
    r = send(server, "POST", "/api/v1/checks", {"slug": "api-c", "after": "api-a", "schedule": "0 2 * * *"})
    assert (r.status_code, r.json()["field"]) == (422, "after")
    assert not exists(server, "api-c")
    # The check page draws the pipeline; the overview filters by it.
    page = server.get("/checks/api-a").text
    assert 'id="pipeline"' in page and 'href="/checks/api-b"' in page and "depends on" in page
    overview = server.get("/?pipeline=api-b").text
    assert 'href="/checks/api-a"' in overview and 'href="/checks/config-job"' not in overview
