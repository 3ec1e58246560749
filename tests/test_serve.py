"""The real `heartwatch serve` on a free loopback port, driven over HTTP as jobs and users do."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.ports import free_port
from support.server import Server, answers_healthz, running_server
from support.waiting import wait_for

BACKUP = """
[checks.backup]
name = "Nightly backup"
schedule = "0 2 * * *"
timezone = "Europe/Berlin"
steps = ["dump", "upload"]
"""
SYNC = """
[checks.sync]
period = "1h"
"""
# One check per test on the shared server, so tests stay independent of each other and of their order.
CHAINS = "".join(f'\n[checks.{slug}]\nsteps = ["dump", "upload"]\n'
                 for slug in ["chain-slug", "chain-rid", "overlap", "bodies", "errors"])
CONFIG = BACKUP + SYNC + CHAINS

LIMIT = "10000"  # the default body limit, announced on every ping answer

#: One connection pool for the whole module: a fresh httpx client per request costs ~50 ms (TLS setup).
HTTP = httpx.Client(timeout=10)


@pytest.fixture
def server_config() -> str:
    """For the tests that restart or reload their own server."""
    return BACKUP + SYNC


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that only add pings to their own checks; restarts get their own `server`."""
    with running_server(tmp_path_factory.mktemp("shared"), CONFIG) as srv:
        yield srv


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    HTTP.close()


def api(server: Server, path: str) -> Any:
    r = HTTP.get(f"{server.url}/api/v1{path}")
    r.raise_for_status()
    return r.json()


def ping(url: str, method: str = "GET", content: bytes | None = None) -> httpx.Response:
    r = HTTP.request(method, url, content=content)
    assert r.headers.get("Ping-Body-Limit") == LIMIT, (url, r.status_code)
    return r


def ok(url: str, method: str = "GET", content: bytes | None = None) -> None:
    r = ping(url, method, content)
    assert r.status_code == 200, (url, r.text)
    assert r.text == ("" if method == "HEAD" else "OK")


def uuid_url(server: Server, slug: str, suffix: str = "") -> str:
    return f"{server.url}/ping/{api(server, f'/checks/{slug}')['uuid']}{suffix}"


def runs(server: Server, slug: str, limit: int = 50) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api(server, f"/checks/{slug}/runs?limit={limit}")["runs"]
    return result


def events(server: Server, slug: str, limit: int = 100) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api(server, f"/checks/{slug}/events?limit={limit}")["events"]
    return result


def ts(text: str) -> datetime:
    assert text.endswith("Z"), text  # ISO 8601 UTC
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_chain(run: dict[str, Any], rid: str | None, state: str, steps: list[str],
                 exit_code: int | None = None) -> None:
    assert (run["rid"], run["state"], run["exit_code"]) == (rid, state, exit_code)
    assert [s["name"] for s in run["steps"]] == steps
    assert run["last_step"] == (steps[-1] if steps else None)
    started, ended = ts(run["started_at"]), ts(run["ended_at"])
    times = [ts(s["at"]) for s in run["steps"]]
    assert [started, *times, ended] == sorted([started, *times, ended])
    assert run["duration_s"] == pytest.approx((ended - started).total_seconds(), abs=0.002)


# --- the job chain ---------------------------------------------------------------------------------------------


def test_job_chain_without_rid_over_the_slug_form(shared: Server) -> None:
    for query in ["?step=start", "?step=dump", "?step=upload", "?step=finish"]:
        ok(shared.slug_url("chain-slug", query))
    [run] = runs(shared, "chain-slug")
    assert_chain(run, None, "ok", ["dump", "upload"])
    assert run["flags"] == [] and isinstance(run["id"], int)
    assert run["last_step_at"] == run["steps"][-1]["at"]
    check = api(shared, "/checks/chain-slug")
    assert check["status"] == "up" and check["last_run"] == run


def test_job_chain_with_rid_over_the_uuid_form(shared: Server) -> None:
    rid = "6f1c0e9e-3b7a-4e0c-9a55-7d2f0c1b8e11"
    base = uuid_url(shared, "chain-rid")
    ok(f"{base}/start?rid={rid}")
    assert api(shared, "/checks/chain-rid")["status"] == "running"
    ok(f"{base}?step=dump&rid={rid}")
    ok(f"{base}?step=upload&rid={rid}")
    ok(f"{base}/0?rid={rid}")
    [run] = runs(shared, "chain-rid")
    assert_chain(run, rid, "ok", ["dump", "upload"], exit_code=0)
    assert [(e["kind"], e["step"], e["rid"]) for e in reversed(events(shared, "chain-rid"))] == [
        ("start", None, rid), ("step", "dump", rid), ("step", "upload", rid), ("success", None, rid)]
    assert {e["run_id"] for e in events(shared, "chain-rid")} == {run["id"]}


def test_two_overlapping_runs_with_rids_and_an_interrupted_one(shared: Server) -> None:
    base = uuid_url(shared, "overlap")
    ok(f"{base}/start?rid=a")
    ok(f"{base}/start?rid=b")
    ok(f"{base}?step=dump&rid=a")
    ok(f"{base}?step=dump&rid=b")
    ok(f"{base}?step=upload&rid=b")
    ok(f"{base}/3?rid=a")
    ok(f"{base}?step=finish&rid=b")
    b, a = runs(shared, "overlap")  # newest first
    assert_chain(a, "a", "failed", ["dump"], exit_code=3)
    assert_chain(b, "b", "ok", ["dump", "upload"])

    # Without rid: a second start interrupts the open run, which keeps where it stopped.
    ok(f"{base}/start")
    ok(f"{base}?step=dump")
    ok(f"{base}/start")
    newest, interrupted, *_ = runs(shared, "overlap")
    assert (interrupted["state"], interrupted["last_step"], interrupted["rid"]) == ("interrupted", "dump", None)
    assert (newest["state"], newest["steps"], newest["ended_at"]) == ("running", [], None)


# --- every URL form, method and body -----------------------------------------------------------------------------


def test_every_healthchecks_style_url_form(shared: Server) -> None:
    uuid = api(shared, "/checks/sync")["uuid"]
    for base in [f"{shared.url}/ping/{uuid}", f"{shared.url}/ping/{uuid.upper()}", shared.slug_url("sync")]:
        ok(f"{base}/start")
        ok(f"{base}/log", "POST", b"halfway there")
        ok(f"{base}/0")
        ok(f"{base}/start", "HEAD")
        ok(f"{base}/fail", "PUT", b"disk full")
        ok(f"{base}/start", "POST")
        ok(f"{base}/3")
        ok(base, "POST", b"all good")  # a plain ping is a success with no start seen
    got = [(r["state"], r["exit_code"], r["flags"]) for r in runs(shared, "sync")]
    assert got == [
        ("ok", None, ["start_not_seen"]), ("failed", 3, []), ("failed", None, []), ("ok", 0, []),
    ] * 3
    latest = list(reversed(events(shared, "sync", limit=8)))
    assert [(e["kind"], e["exit_code"], e["method"], e["body"]) for e in latest] == [
        ("start", None, "GET", ""), ("log", None, "POST", "halfway there"), ("success", 0, "GET", ""),
        ("start", None, "HEAD", ""), ("fail", None, "PUT", "disk full"), ("start", None, "POST", ""),
        ("fail", 3, "GET", ""), ("success", None, "POST", "all good"),
    ]
    assert all(e["remote_addr"] == "127.0.0.1" and e["user_agent"].startswith("python-httpx") for e in latest)


def test_body_keeps_the_tail_up_to_the_limit(shared: Server) -> None:
    body = b"HEAD-OF-OUTPUT" + b"." * 11_000 + b"exit: done"
    ok(shared.slug_url("bodies", "/log"), "POST", body)
    event = events(shared, "bodies")[0]
    assert event["body"] == body[-10_000:].decode()
    assert len(event["body"]) == 10_000 and event["body"].endswith("exit: done") and "HEAD" not in event["body"]


def test_step_and_fail_pings_carry_their_body(shared: Server) -> None:
    ok(shared.slug_url("bodies", "/start"))
    ok(shared.slug_url("bodies", "/fail?step=upload"), "POST", b"upload: connection refused\n")
    run = runs(shared, "bodies")[0]
    assert (run["state"], run["last_step"]) == ("failed", "upload")
    assert events(shared, "bodies")[0]["body"] == "upload: connection refused\n"


# --- error answers ---------------------------------------------------------------------------------------------------


def test_error_answers(shared: Server) -> None:
    base = uuid_url(shared, "errors")
    unknown = f"{shared.url}/ping/00000000-0000-4000-8000-000000000000"
    cases = [
        (f"{base}/256", 400, "exit status"),
        (f"{base}/-1", 400, "exit status"),
        (f"{base}?step=two%20words", 400, "step name"),
        (f"{base}?step={'x' * 65}", 400, "step name"),
        (f"{base}/start?step=finish", 400, "contradicts"),
        (f"{base}/start?rid=has%20space", 400, "rid"),
        (f"{base}/start?rid={'r' * 65}", 400, "rid"),
        (f"{base}/started", 404, "not found"),
        (f"{base}/start/extra", 404, "not found"),
        (unknown, 404, "not found"),
        (f"{unknown}/start", 404, "not found"),
        (f"{shared.url}/ping/wrong-key/errors", 404, "not found"),
        (f"{shared.url}/ping/wrong-key/brand-new?create=1", 404, "not found"),
        (shared.slug_url("nope"), 404, "not found"),
        (f"{shared.url}/ping/", 404, "not found"),
    ]
    for url, status, reason in cases:
        r = ping(url)
        assert r.status_code == status, (url, r.text)
        assert reason in r.text and "\n" not in r.text.strip(), (url, r.text)
    assert events(shared, "errors") == [] and runs(shared, "errors") == []  # nothing was stored

    r = ping(shared.slug_url("errors", "/log"), "POST", b"x" * 1_000_001)
    assert r.status_code == 413 and "too large" in r.text
    assert events(shared, "errors") == []

    def chunks() -> Any:
        for _ in range(11):
            yield b"y" * 100_000

    r = HTTP.post(shared.slug_url("errors", "/log"), content=chunks())  # no Content-Length
    assert r.status_code == 413 and r.headers["Ping-Body-Limit"] == LIMIT
    assert events(shared, "errors") == []


def test_create_on_a_slug_url(shared: Server) -> None:
    r = ping(shared.slug_url("brand-new", "/start?create=1"))
    assert (r.status_code, r.text) == (201, "Created")
    r = ping(shared.slug_url("brand-new", "?create=1"))
    assert (r.status_code, r.text) == (200, "OK")
    check = api(shared, "/checks/brand-new")
    assert (check["source"], check["status"]) == ("ping", "up")
    [run] = runs(shared, "brand-new")
    assert run["state"] == "ok" and run["flags"] == []
    assert "brand-new" in [c["slug"] for c in api(shared, "/checks")["checks"]]


# --- reading back -------------------------------------------------------------------------------------------------


def test_json_api_and_healthz(shared: Server) -> None:
    health = HTTP.get(shared.url + "/healthz").json()
    assert (health["status"], health["leading"], health["leader"]) == ("ok", True, health["process"])
    assert health["process"].endswith(f":{shared.port} pid {shared.proc.pid}")  # type: ignore[union-attr]
    checks = api(shared, "/checks")["checks"]
    slugs = [c["slug"] for c in checks]
    assert slugs == sorted(slugs) and {"backup", "sync", "chain-slug", "errors"} <= set(slugs)
    by_slug = {c["slug"]: c for c in checks}
    backup = by_slug["backup"]
    assert {"slug", "name", "uuid", "status", "ping_url", "schedule", "last_run"} <= set(backup)
    assert (backup["name"], backup["schedule"], backup["status"], backup["last_run"]) == (
        "Nightly backup", "0 2 * * *", "new", None)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", backup["uuid"])
    assert backup["ping_url"] == f"{shared.url}/ping/{backup['uuid']}"
    assert backup["slug_ping_url"] == shared.slug_url("backup")
    assert [s["name"] for s in backup["steps"]] == ["dump", "upload"]
    assert (by_slug["sync"]["name"], by_slug["sync"]["schedule"], by_slug["sync"]["period"]) == ("sync", None, "1h")
    assert api(shared, "/checks/backup") == backup

    ok(backup["ping_url"] + "/start?rid=r1", "POST", b"starting")
    ok(backup["ping_url"] + "?step=dump&rid=r1")
    ok(backup["ping_url"] + "/start?rid=r2")
    [r2, r1] = runs(shared, "backup")
    assert set(r1) >= {"id", "rid", "state", "started_at", "ended_at", "duration_s", "exit_code", "last_step",
                       "steps", "flags"}
    assert (r1["rid"], r1["state"], r1["ended_at"], r1["duration_s"], r1["last_step"]) == (
        "r1", "running", None, None, "dump")
    assert r1["steps"][0]["name"] == "dump" and ts(r1["steps"][0]["at"]) >= ts(r1["started_at"])
    assert r2["id"] > r1["id"]
    assert [r["rid"] for r in runs(shared, "backup", limit=1)] == ["r2"]
    assert api(shared, "/checks/backup")["last_run"]["rid"] == "r2"

    newest, step, first = events(shared, "backup")
    assert set(first) == {"id", "run_id", "at", "kind", "step", "rid", "exit_code", "body", "remote_addr",
                          "user_agent", "method", "ping_ms"}
    assert (first["kind"], first["rid"], first["body"], first["method"], first["run_id"]) == (
        "start", "r1", "starting", "POST", r1["id"])
    assert (step["kind"], step["step"]) == ("step", "dump")
    assert newest["run_id"] == r2["id"] and newest["id"] > step["id"] > first["id"]
    assert len(events(shared, "backup", limit=2)) == 2

    for path, status in [("/api/v1/checks/nope", 404), ("/api/v1/checks/nope/runs", 404),
                         ("/api/v1/checks/nope/events", 404), ("/api/v1/checks/backup/runs?limit=0", 400),
                         ("/api/v1/checks/backup/events?limit=abc", 400)]:
        r = HTTP.get(shared.url + path)
        assert r.status_code == status and "error" in r.json(), path


# --- lifecycle: restart, reload, zero config -----------------------------------------------------------------------


def test_restart_keeps_everything(server: Server) -> None:
    base = uuid_url(server, "backup")
    for url in [f"{base}/start", f"{base}?step=dump", f"{base}?step=upload", f"{base}/0",
                f"{base}/start?rid=overnight", f"{base}?step=dump&rid=overnight"]:
        ok(url)
    ok(server.slug_url("sync", "/fail"), "POST", b"it broke")
    before = {path: api(server, path) for path in [
        "/checks", "/checks/backup/runs", "/checks/backup/events", "/checks/sync/runs", "/checks/sync/events"]}

    assert server.stop() == 0  # SIGTERM: a clean exit
    assert "database closed" in server.log()
    server.start()

    after = {path: api(server, path) for path in before}
    assert after == before
    # The run left open before the restart takes its finish afterwards.
    ok(f"{base}?step=upload&rid=overnight")
    ok(f"{base}/0?rid=overnight")
    newest = runs(server, "backup")[0]
    assert_chain(newest, "overnight", "ok", ["dump", "upload"], exit_code=0)
    assert ts(newest["started_at"]) == ts(before["/checks/backup/runs"]["runs"][0]["started_at"])


def test_sighup_reloads_the_configs_checks(server: Server) -> None:
    ok(server.slug_url("sync", "/start"))
    server.config_path.write_text(BACKUP + """
[checks.weekly]
name = "Weekly report"
schedule = "0 6 * * 1"
""")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    checks = wait_for(lambda: [c["slug"] for c in api(server, "/checks")["checks"]] == ["backup", "weekly"])
    assert checks
    weekly = api(server, "/checks/weekly")
    assert (weekly["name"], weekly["schedule"], weekly["source"]) == ("Weekly report", "0 6 * * 1", "config")
    archived = api(server, "/checks/sync")  # archived, with its history
    assert archived["archived"] is True
    assert [r["state"] for r in runs(server, "sync")] == ["running"]
    assert "config reloaded" in server.log()

    # A broken file on SIGHUP is reported and changes nothing; the server keeps running.
    server.config_path.write_text("[checks.weekly]\nschedule = \"not cron\"\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config not reloaded" in server.log())
    assert "checks.weekly.schedule" in server.log()
    assert [c["slug"] for c in api(server, "/checks")["checks"]] == ["backup", "weekly"]
    assert HTTP.get(f"{server.url}/healthz").status_code == 200


def test_zero_config_start_creates_the_database(tmp_path: Path) -> None:
    db = tmp_path / "state" / "fresh.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTWATCH_")}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "heartwatch", "serve", "--db", str(db), "--port", str(port)],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: answers_healthz(url, proc, log_path.read_text), timeout=20)
        assert db.exists()
        assert HTTP.get(f"{url}/api/v1/checks").json() == {"checks": []}
        # It says where it listens and the ping URL form, with the key it generated.
        match = wait_for(lambda: re.search(rf"{re.escape(url)}/ping/([A-Za-z0-9_-]+)/<slug>", log_path.read_text()),
                         what="the announced ping URL form")
        r = HTTP.get(f"{url}/ping/{match.group(1)}/first-job?create=1")
        assert (r.status_code, r.text) == (201, "Created")
        assert "WARNING: no alert targets" in log_path.read_text()  # alerts would go nowhere: it says so
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C is a clean stop too
        code = proc.wait(timeout=15)
    assert code == 0
    assert "database closed" in log_path.read_text()
    assert not (tmp_path / "heartwatch.db").exists()


def test_no_warning_about_alert_targets_when_a_check_has_one(tmp_path: Path) -> None:
    config = SYNC + 'alerts = ["json://127.0.0.1:9/hook"]\n'
    with running_server(tmp_path, config) as srv:
        wait_for(lambda: "listening on" in srv.log(), what="the start-up announcement")
        assert "no alert targets" not in srv.log()


def test_a_sqlite_server_without_a_heartbeat_loads_neither_psycopg_nor_httpx() -> None:
    # Each was imported at every start for what only some servers use: psycopg (7 MB of RSS) for the errors of
    # a PostgreSQL store, httpx (3 MB, with rich and pygments) for the heartbeat.
    code = ("import sys; from pathlib import Path; import heartwatch.cli.main, heartwatch.web.app;"
            " from heartwatch import server;"
            " print(server._driver_errors(Path('hw.db')), *(m in sys.modules for m in ('psycopg', 'httpx')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["()", "False", "False"]
