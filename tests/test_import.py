"""`heartwatch import healthchecks|kuma`: one real heartwatch importing from another's /api/v3/ (UUIDs kept, the
same ping URL works on the new one), from a file shaped like Healthchecks' documented API answer (written here
by hand from its documentation), and from an Uptime Kuma backup export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from support.server import Server, running_server

from heartwatch.cli.import_cmd import ImportProblem, healthchecks_plan, kuma_plan
from heartwatch.cli.main import main

SOURCE_TOKEN = "source-token-0123456789abcdef0123"
TARGET_TOKEN = "target-token-0123456789abcdef0123"

#: Healthchecks' answer to GET /api/v3/checks/ with a read-write key, as its API documentation shows one: every
#: documented field, a simple check (timeout) and a cron check (schedule, tz), one paused.
HC_EXPORT: dict[str, Any] = {"checks": [
    {"name": "Filesystem Backup", "slug": "filesystem-backup", "tags": "backup fs",
     "desc": "Runs incremental backup every hour", "grace": 600, "n_pings": 1, "status": "up", "started": False,
     "last_ping": "2020-03-24T14:02:03+00:00", "next_ping": "2020-03-24T15:02:03+00:00", "manual_resume": False,
     "methods": "", "start_kw": "", "success_kw": "", "failure_kw": "", "filter_subject": False,
     "filter_body": False, "filter_http_body": False, "filter_default_fail": False,
     "badge_url": "https://hc.example.org/b/2/1b9d0386-d07e-44b0-8995-4a9a372de43c.svg",
     "uuid": "31365bce-8da9-4729-8ff3-aaa71d56b712",
     "ping_url": "https://hc-ping.example.org/31365bce-8da9-4729-8ff3-aaa71d56b712",
     "update_url": "https://hc.example.org/api/v3/checks/31365bce-8da9-4729-8ff3-aaa71d56b712",
     "pause_url": "https://hc.example.org/api/v3/checks/31365bce-8da9-4729-8ff3-aaa71d56b712/pause",
     "resume_url": "https://hc.example.org/api/v3/checks/31365bce-8da9-4729-8ff3-aaa71d56b712/resume",
     "channels": "1bdea468-03bf-47b8-ab27-29a9dd0e4b94", "timeout": 3600},
    {"name": "Database Backup", "slug": "database-backup", "tags": "production db", "desc": "Runs ~/db-backup.sh",
     "grace": 1200, "n_pings": 7, "status": "paused", "started": False, "last_ping": "2020-03-23T10:19:32+00:00",
     "next_ping": None, "manual_resume": True, "methods": "POST", "start_kw": "", "success_kw": "",
     "failure_kw": "ERROR", "filter_subject": False, "filter_body": True, "filter_http_body": True,
     "filter_default_fail": False, "badge_url": "https://hc.example.org/b/2/7d3ab93d-836e-4505-bbda-fcbd5e07adf9.svg",
     "uuid": "803f680d-e89b-492b-82ef-2be7b774a92d",
     "ping_url": "https://hc-ping.example.org/803f680d-e89b-492b-82ef-2be7b774a92d",
     "update_url": "https://hc.example.org/api/v3/checks/803f680d-e89b-492b-82ef-2be7b774a92d",
     "pause_url": "https://hc.example.org/api/v3/checks/803f680d-e89b-492b-82ef-2be7b774a92d/pause",
     "resume_url": "https://hc.example.org/api/v3/checks/803f680d-e89b-492b-82ef-2be7b774a92d/resume",
     "channels": "", "schedule": "15 5 * * *", "tz": "Europe/Riga"},
]}

#: An Uptime Kuma 1.x backup export (Settings > Backup > Export): a push monitor and an HTTP one.
KUMA_BACKUP: dict[str, Any] = {"version": "1.23.16", "notificationList": [], "monitorList": [
    {"id": 1, "name": "Nightly rsync", "description": "rsync to the NAS", "type": "push", "pushToken": "Xq3vL9kPz2",
     "interval": 86400, "retryInterval": 600, "maxretries": 2, "active": 1, "upsideDown": False,
     "tags": [{"id": 1, "monitor_id": 1, "tag_id": 4, "name": "nas", "color": "#059669", "value": ""}]},
    {"id": 2, "name": "Web site", "type": "http", "url": "https://example.org", "interval": 60, "active": 1},
    {"id": 3, "name": "Queue worker", "type": "push", "pushToken": "w0rkerT0k", "interval": 20, "retryInterval": 20,
     "maxretries": 0, "active": 0, "tags": []},
]}


def run_import(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["import", *args], catch_exceptions=False)
    return result.exit_code, result.output


def target_args(srv: Server) -> list[str]:
    return ["--server", srv.url, "--token", TARGET_TOKEN]


@pytest.fixture
def target(tmp_path: Path) -> Any:
    (tmp_path / "target").mkdir()
    with running_server(tmp_path / "target", "", {"HEARTWATCH_API_TOKEN": TARGET_TOKEN}) as srv:
        yield srv


def hc_checks(srv: Server) -> dict[str, dict[str, Any]]:
    r = srv.get("/api/v3/checks/", headers={"X-Api-Key": TARGET_TOKEN})
    return {c["slug"]: c for c in r.json()["checks"]}


def test_one_heartwatch_imports_another_keeping_uuids_and_ping_urls(tmp_path: Path, target: Server) -> None:
    (tmp_path / "source").mkdir()
    with running_server(tmp_path / "source", "", {"HEARTWATCH_API_TOKEN": SOURCE_TOKEN}) as source:
        key = {"X-Api-Key": SOURCE_TOKEN}
        made = [source.post("/api/v3/checks/", headers=key, json=body).json() for body in (
            {"name": "Backup", "schedule": "0 2 * * *", "tz": "Europe/Berlin", "grace": 900, "tags": "db prod",
             "desc": "pg_dump"},
            {"name": "Sync", "timeout": 3600, "grace": 120, "methods": "POST"})]
        source.post(f"/api/v3/checks/{made[1]['uuid']}/pause", headers=key)

        code, out = run_import("healthchecks", "--url", source.url, "--api-key", SOURCE_TOKEN, "--dry-run",
                               *target_args(target))
        assert code == 0 and "would backup: create" in out and "would sync: create; paused" in out, out
        assert hc_checks(target) == {}  # a dry run sends nothing

        code, out = run_import("healthchecks", "--url", source.url, "--api-key", SOURCE_TOKEN, *target_args(target))
        assert code == 0 and "2 created, 0 updated, 0 unchanged" in out, out

    imported = hc_checks(target)
    assert {slug: c["uuid"] for slug, c in imported.items()} == {"backup": made[0]["uuid"], "sync": made[1]["uuid"]}
    for field in ("name", "tags", "desc", "grace", "schedule", "tz"):
        assert imported["backup"][field] == made[0][field], field
    assert imported["sync"]["timeout"] == 3600 and imported["sync"]["methods"] == "POST"
    assert imported["sync"]["status"] == "paused"
    # The old ping URL, host name changed: the same path works on the new server.
    assert httpx.get(f"{target.url}/ping/{made[0]['uuid']}/start").text == "OK"
    assert target.api("/checks/backup/runs")["runs"][0]["state"] == "running"

    code, out = run_import("healthchecks", "--url", target.url, "--api-key", TARGET_TOKEN, *target_args(target))
    assert code == 0 and "0 created, 0 updated, 2 unchanged" in out, out  # twice changes nothing
    assert hc_checks(target)["backup"]["uuid"] == made[0]["uuid"]


def test_a_file_shaped_like_healthchecks_documented_answer(tmp_path: Path, target: Server) -> None:
    # A check of the same slug already here keeps its own UUID and answers to the imported one too.
    r = target.post("/api/v3/checks/", headers={"X-Api-Key": TARGET_TOKEN},
                    json={"slug": "database-backup", "timeout": 86400})
    own_uuid = r.json()["uuid"]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(HC_EXPORT))
    code, out = run_import("healthchecks", "--from-file", str(path), *target_args(target))
    assert code == 0, out
    assert "database-backup: update (its UUID becomes an alias); paused" in out and "1 created, 1 updated" in out
    fs = target.api("/checks/filesystem-backup")
    assert fs["uuid"] == "31365bce-8da9-4729-8ff3-aaa71d56b712" and fs["period"] == "1h"
    assert fs["start_grace"] == "10m" and fs["tags"] == ["backup", "fs"] and fs["resume_on_ping"] is True
    db = target.api("/checks/database-backup")
    assert db["uuid"] == own_uuid and db["schedule"] == "15 5 * * *" and db["timezone"] == "Europe/Riga"
    assert db["methods"] == ["POST"] and db["fail_keywords"] == ["ERROR"] and db["resume_on_ping"] is False
    assert db["paused"] is True
    assert httpx.post(f"{target.url}/ping/803f680d-e89b-492b-82ef-2be7b774a92d", content=b"done").text == "OK"
    assert target.api("/checks/database-backup/events")["events"][0]["body"] == "done"

    code, out = run_import("healthchecks", "--from-file", str(path), *target_args(target))
    assert "0 created, 0 updated, 2 unchanged" in out, out


def test_kuma_push_monitors_keep_their_push_urls(tmp_path: Path, target: Server) -> None:
    path = tmp_path / "kuma.json"
    path.write_text(json.dumps(KUMA_BACKUP))
    code, out = run_import("kuma", "--from-file", str(path), *target_args(target))
    assert code == 0, out
    assert "skipped 'Web site': a http monitor" in out and "2 created" in out and "1 skipped" in out
    assert "interval 20s raised to 60s" in out
    rsync = target.api("/checks/nightly-rsync")
    assert rsync["period"] == "1d" and rsync["start_grace"] == "20m" and rsync["tags"] == ["nas"]
    assert target.api("/checks/queue-worker")["paused"] is True
    r = httpx.get(f"{target.url}/api/push/Xq3vL9kPz2?status=up&msg=OK&ping=")
    assert r.json() == {"ok": True}
    assert target.api("/checks/nightly-rsync/runs")["runs"][0]["state"] == "ok"
    code, out = run_import("kuma", "--from-file", str(path), *target_args(target))
    assert "0 created, 0 updated, 2 unchanged" in out, out


def test_what_stops_an_import_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ImportProblem, match="read-only API keys hide UUIDs"):
        healthchecks_plan({"checks": [{"name": "x", "unique_key": "abc"}]})
    with pytest.raises(ImportProblem, match="monitorList"):
        kuma_plan({"checks": []})
    code, out = run_import("healthchecks", "--from-file", str(tmp_path / "missing.json"), "--token", "t")
    assert code == 1 and "cannot read" in out
    code, out = run_import("healthchecks", "--token", "t")
    assert code == 2 and "give --url (with --api-key) or --from-file" in out
