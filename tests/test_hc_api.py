"""Healthchecks' management API v3 under /api/v3/, driven by the unchanged PyPI `healthchecks-io` client (sync and
async) against a real heartwatch, plus the answers its documentation gives for what that client does not send."""

from __future__ import annotations

import uuid as uuidlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from healthchecks_io import AsyncClient, CheckCreate, CheckUpdate, Client
from healthchecks_io.client.exceptions import BadAPIRequestError, CheckNotFoundError, HCAPIAuthError
from support.server import Server, running_server, shared_server

from heartwatch.core import healthchecks as hc
from heartwatch.core.model import CheckSpec, CheckStatus

TOKEN = "hc-rw-key-0123456789abcdef012345"
READ = "hc-ro-key-0123456789abcdef012345"
server = shared_server("""
[checks.from-file]
schedule = "0 3 * * *"
""", env={"HEARTWATCH_API_TOKEN": TOKEN, "HEARTWATCH_API_READ_TOKEN": READ})


def client(srv: Server, key: str = TOKEN) -> Client:
    return Client(api_key=key, api_url=f"{srv.url}/api/", api_version=3, ping_key=srv.ping_key,
                  ping_url=f"{srv.url}/ping/")


def test_the_sync_client_creates_lists_gets_pings_pauses_and_deletes(server: Server) -> None:
    with client(server) as hcc:
        made = hcc.create_check(CheckCreate(name="Nightly backup", tags="prod db", desc="pg_dump to S3",
                                            schedule="30 2 * * *", tz="Europe/Berlin", grace=900))
        assert made.slug == "nightly-backup" and made.tags == "prod db" and made.desc == "pg_dump to S3"
        assert made.grace == 900 and made.status == "new" and made.manual_resume is False
        assert made.uuid and made.ping_url == f"{server.url}/ping/{made.uuid}"
        native = server.api("/checks/nightly-backup")
        assert native["schedule"] == "30 2 * * *" and native["timezone"] == "Europe/Berlin"
        assert native["start_grace"] == "15m" and native["max_runtime"] == "15m" and native["resume_on_ping"] is True

        assert [c.slug for c in hcc.get_checks(tags=["db"])] == ["nightly-backup"]
        assert hcc.get_checks(tags=["db", "nope"]) == []
        assert hcc.get_check(made.uuid).name == "Nightly backup"

        assert hcc.start_ping(uuid=made.uuid) == (True, "OK")
        assert hcc.get_check(made.uuid).status == "up"  # running: v3 says "up" with started true
        assert server.get(f"/api/v3/checks/{made.uuid}", headers={"X-Api-Key": TOKEN}).json()["started"] is True
        assert hcc.success_ping(slug="nightly-backup", data="dumped 12 MB") == (True, "OK")
        got = hcc.get_check(made.uuid)
        assert got.status == "up" and got.n_pings == 2 and got.last_ping is not None

        pings = hcc.get_check_pings(made.uuid)
        assert [p.type for p in pings] == ["success", "start"]
        assert pings[0].duration is not None and pings[0].method == "POST"
        assert pings[0].user_agent.startswith("py-healthchecks.io")

        assert hcc.pause_check(made.uuid).status == "paused"
        assert server.api("/checks/nightly-backup")["paused"] is True

        assert hcc.exit_code_ping(3, uuid=made.uuid) == (True, "OK")  # resume_on_ping: the ping resumes it
        assert hcc.get_check(made.uuid).status == "down"
        flips = hcc.get_check_flips(made.uuid)
        assert [f.up for f in flips] == [0]
        assert hcc.success_ping(uuid=made.uuid)[0]
        assert [f.up for f in hcc.get_check_flips(made.uuid)] == [1, 0]

        hcc.update_check(made.uuid, CheckUpdate(timeout=3600, grace=120, tags="prod"))
        native = server.api("/checks/nightly-backup")
        assert native["period"] == "1h" and native["schedule"] is None and native["tags"] == ["prod"]

        deleted = hcc.delete_check(made.uuid)
        assert deleted.slug == "nightly-backup"
        with pytest.raises(CheckNotFoundError):
            hcc.get_check(made.uuid)
        assert "nightly-backup" not in [c.slug for c in hcc.get_checks()]


async def test_the_async_client_does_the_same(server: Server) -> None:
    async with AsyncClient(api_key=TOKEN, api_url=f"{server.url}/api/", api_version=3, ping_key=server.ping_key,
                           ping_url=f"{server.url}/ping/") as hcc:
        made = await hcc.create_check(CheckCreate(name="Async sync", timeout=600, grace=60, methods="POST"))
        assert made.timeout == 600 and made.methods == "POST"
        assert [c.uuid for c in await hcc.get_checks() if c.slug == "async-sync"] == [made.uuid]
        assert (await hcc.get_check(made.uuid)).slug == "async-sync"
        assert await hcc.fail_ping(slug="async-sync", data="boom") == (True, "OK")
        assert [p.type for p in await hcc.get_check_pings(made.uuid)] == ["fail"]
        assert (await hcc.pause_check(made.uuid)).status == "paused"
        assert [f.up for f in await hcc.get_check_flips(made.uuid)] == [0]
        assert (await hcc.delete_check(made.uuid)).uuid == made.uuid
        with pytest.raises(CheckNotFoundError):
            await hcc.get_check(made.uuid)


def test_a_wrong_or_missing_key_is_refused(server: Server) -> None:
    with client(server, "wrong-key") as hcc, pytest.raises(HCAPIAuthError):
        hcc.get_checks()
    r = server.get("/api/v3/checks/")
    assert r.status_code == 401 and r.json() == {"error": "missing api key"}


def test_a_read_only_key_reads_with_unique_keys_and_cannot_write(server: Server) -> None:
    with client(server, READ) as ro:
        [check] = [c for c in ro.get_checks() if c.slug == "from-file"]
        assert check.uuid is None and check.ping_url is None and check.unique_key
        assert ro.get_check(check.unique_key).slug == "from-file"
        with pytest.raises(HCAPIAuthError):
            ro.create_check(CheckCreate(name="nope"))
    uuid = server.api("/checks/from-file")["uuid"]
    r = server.get(f"/api/v3/checks/{uuid}/pings/", headers={"X-Api-Key": READ})
    assert r.status_code == 403 and "read-write" in r.json()["error"]  # pings need a read-write key, as there
    assert server.get(f"/api/v3/checks/{uuid}/flips/", headers={"X-Api-Key": READ}).json() == []


def test_create_with_unique_updates_instead_and_filters_by_slug(server: Server) -> None:
    headers = {"X-Api-Key": TOKEN}
    first = server.post("/api/v3/checks/", headers=headers, json={"name": "Upsert me", "timeout": 300})
    again = server.post("/api/v3/checks/", headers=headers,
                        json={"name": "Upsert me", "timeout": 900, "unique": ["name"]})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["uuid"] == first.json()["uuid"] and again.json()["timeout"] == 900
    listed = server.get("/api/v3/checks", params={"slug": "upsert-me"}, headers=headers).json()["checks"]
    assert [c["timeout"] for c in listed] == [900]
    clash = server.post("/api/v3/checks/", headers=headers, json={"name": "Upsert me"})
    assert clash.status_code == 409 and "exists" in clash.json()["error"]


@pytest.mark.parametrize(("body", "error"), [
    ({"timeout": 10}, "json validation error: timeout is too small"),
    ({"grace": "1h"}, "json validation error: grace is not a number"),
    ({"methods": "GET"}, "json validation error: methods has unexpected value"),
    ({"schedule": "Mon *-*-* 02:00"}, "json validation error: schedule is not a five-field cron expression"),
    ({"schedule": "0 2 * * *", "tz": "Mars/Olympus"}, "json validation error: tz 'Mars/Olympus'"),
    ({"unique": ["colour"]}, "json validation error: an item in 'unique' has unexpected value"),
])
def test_bad_values_are_a_400_with_healthchecks_words(server: Server, body: dict[str, object], error: str) -> None:
    r = server.post("/api/v3/checks/", headers={"X-Api-Key": TOKEN}, json={"name": "bad", **body})
    assert r.status_code == 400 and r.json()["error"].startswith(error)


def test_the_client_sees_a_bad_update_as_a_bad_request(server: Server) -> None:
    with client(server) as hcc:
        made = hcc.create_check(CheckCreate(name="Bad update target"))
        with pytest.raises(BadAPIRequestError):
            hcc.update_check(made.uuid, CheckUpdate(schedule="0 2 * * *", tz="UTC", methods="")
                             .model_copy(update={"schedule": "0 0 31 2 *"}))


def test_resume_answers_409_unless_paused_and_config_checks_are_read_only(server: Server) -> None:
    headers = {"X-Api-Key": TOKEN}
    config = server.api("/checks/from-file")
    r = server.post(f"/api/v3/checks/{config['uuid']}/resume", headers=headers)
    assert r.status_code == 409 and r.text == "check is not paused"
    r = server.post(f"/api/v3/checks/{config['uuid']}", headers=headers, json={"grace": 600})
    assert r.status_code == 409 and "config file" in r.json()["error"]
    assert server.post(f"/api/v3/checks/{config['uuid']}/pause", headers=headers).json()["status"] == "paused"
    assert server.post(f"/api/v3/checks/{config['uuid']}/resume", headers=headers).json()["status"] != "paused"
    assert server.get(f"/api/v3/checks/{uuidlib.uuid4()}", headers=headers).status_code == 404


def test_behind_a_login_the_api_still_answers_to_its_key_alone(tmp_path: Path) -> None:
    env = {"HEARTWATCH_API_TOKEN": TOKEN, "HEARTWATCH_WEB_PASSWORD": "pw-for-people"}
    with running_server(tmp_path, "", env) as srv, client(srv) as hcc:
        made = hcc.create_check(CheckCreate(name="Behind login"))
        assert [c.uuid for c in hcc.get_checks()] == [made.uuid]
        assert srv.get("/api/v3/checks/").status_code == 401  # no key, no login: nothing
        assert srv.get("/api/v1/checks").status_code == 401  # and the rest stays behind the login


# --- the mapping, pure ---------------------------------------------------------------------------------------


def test_fields_map_both_ways() -> None:
    spec = hc.spec_from_doc("x", {"name": "X", "timeout": 3600, "grace": 300, "tags": "a b", "desc": "d",
                                  "manual_resume": True, "methods": "POST", "failure_kw": "ERROR, FATAL"}, None, "UTC")
    assert spec.period == timedelta(hours=1) and spec.start_grace == spec.max_runtime == timedelta(minutes=5)
    assert spec.tags == ("a", "b") and spec.description == "d" and spec.resume_on_ping is False
    assert spec.methods == ("POST",) and spec.fail_keywords == ("ERROR", "FATAL")
    fields = hc.spec_fields(spec)
    assert {k: fields[k] for k in ("timeout", "grace", "tags", "desc", "manual_resume", "methods", "failure_kw")} == {
        "timeout": 3600, "grace": 300, "tags": "a b", "desc": "d", "manual_resume": True, "methods": "POST",
        "failure_kw": "ERROR,FATAL"}
    cron = hc.spec_from_doc("x", {"schedule": "0 2 * * *", "tz": "Asia/Tokyo"}, spec, "UTC")
    assert cron.schedule == "0 2 * * *" and cron.period is None and cron.timezone == "Asia/Tokyo"
    assert hc.spec_from_doc("y", {}, None, "UTC").period == timedelta(days=1)  # Healthchecks' default timeout
    assert hc.STATUS[CheckStatus.LATE] == "grace" and hc.STATUS[CheckStatus.RUNNING] == "up"


def test_flips_follow_going_down_and_recovering_only() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    alerts = [("failed", t), ("reminder", t + 1), ("missed", t + 2), ("recovered", t + 3), ("too_fast", t + 4)]
    assert hc.flips(alerts) == [(t + 4, 0), (t + 3, 1), (t, 0)]


def test_slugs_from_names() -> None:
    assert hc.slugify("Nightly Backup (prod)!") == "nightly-backup-prod"
    assert hc.new_slug({"name": "", "slug": ""}).startswith("check-")
    assert hc.matches(CheckSpec(slug="a", name="A", tags=("x",)), {"name": "A", "tags": "x"}, ["name", "tags"])
    assert not hc.matches(CheckSpec(slug="a", name="A"), {"name": "A"}, ["name", "grace"])



@pytest.mark.parametrize("value", ["%C2%B2", "9" * 5000])
def test_a_bad_flips_window_is_a_400_not_a_500(server: Server, value: str) -> None:
    # Issue 14, finding 7: "²" passes str.isdigit(); 5,000 digits overflow a timestamp.
    uuid = server.get("/api/v3/checks/", headers={"X-Api-Key": READ}).json()["checks"][0]["unique_key"]
    r = server.get(f"/api/v3/checks/{uuid}/flips/?seconds={value}", headers={"X-Api-Key": READ})
    assert r.status_code == 400, r.text
