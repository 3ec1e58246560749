"""Other tools' ping URLs against a real heartwatch, sent as their clients send them (curl-like requests):
Uptime Kuma push, upti.my heartbeats and Cronitor telemetry become runs, rids, exit statuses and bodies."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support.server import Server, shared_server

from heartwatch.core.compat_pings import Dialect, parse_compat
from heartwatch.core.model import PingKind
from heartwatch.core.pings import BadPing

TOKEN = "compat-test-token"
KEY = {"X-Api-Key": TOKEN}
server = shared_server("", env={"HEARTWATCH_API_TOKEN": TOKEN})


def make(srv: Server, slug: str, **extra: Any) -> dict[str, Any]:
    r = srv.post("/api/v3/checks/", headers=KEY, json={"slug": slug, "timeout": 3600, **extra})
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


def runs(srv: Server, slug: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = srv.api(f"/checks/{slug}/runs")["runs"]
    return out


def bodies(srv: Server, slug: str) -> list[str]:
    return [e["body"] for e in srv.api(f"/checks/{slug}/events")["events"]]


def test_kuma_push_up_and_down_with_its_message_and_ping_time(server: Server) -> None:
    check = make(server, "kuma-job", aliases=["q1w2e3r4t5"])
    r = httpx.get(f"{server.url}/api/push/q1w2e3r4t5", params={"status": "up", "msg": "OK", "ping": "42.5"})
    assert (r.status_code, r.json(), r.headers["content-type"]) == (200, {"ok": True}, "application/json")
    r = httpx.get(f"{server.url}/api/push/q1w2e3r4t5?status=down&msg=disk%20full&ping=")
    assert r.json() == {"ok": True}
    assert [run["state"] for run in runs(server, "kuma-job")] == ["failed", "ok"]
    assert bodies(server, "kuma-job") == ["disk full", "OK"]
    pings = server.get(f"/api/v3/checks/{check['uuid']}/pings/", headers=KEY).json()["pings"]
    assert [(p["type"], p.get("ping_ms")) for p in pings] == [("fail", None), ("success", 42.5)]
    assert [e["ping_ms"] for e in server.api("/checks/kuma-job/events")["events"]] == [None, 42.5]
    # Kuma's own defaults: no status is up, no msg is "OK"; the check's UUID works as a token too.
    assert httpx.post(f"{server.url}/api/push/{check['uuid'].upper()}").json() == {"ok": True}
    assert runs(server, "kuma-job")[0]["state"] == "ok" and bodies(server, "kuma-job")[0] == "OK"


def test_kuma_refusals_are_its_json(server: Server) -> None:
    r = httpx.get(f"{server.url}/api/push/no-such-token")
    assert r.status_code == 404 and r.json() == {"ok": False, "msg": "not found"}
    make(server, "kuma-bad", aliases=["badping1"])
    r = httpx.get(f"{server.url}/api/push/badping1?ping=fast")
    assert r.status_code == 400 and r.json() == {"ok": False, "msg": "Invalid ping value: 'fast' is not a valid number"}
    assert httpx.get(f"{server.url}/api/push/badping1?ping=90000000").status_code == 400
    assert runs(server, "kuma-bad") == []


def test_uptimy_heartbeat_job_chain_by_uuid_and_by_token(server: Server) -> None:
    check = make(server, "uptimy-job", aliases=["hb_4f9a"])
    base = f"{server.url}/v1/heartbeat/{check['uuid']}"
    for step in ("start", "dump", "upload"):
        assert httpx.get(base, params={"step": step, "rid": "night-1"}).text == "OK"
    r = httpx.post(f"{server.url}/v1/heartbeat/hb_4f9a", params={"step": "finish", "rid": "night-1"},
                   content=b"3 tables")
    assert (r.status_code, r.text) == (200, "OK")
    [run] = runs(server, "uptimy-job")
    assert run["state"] == "ok" and run["rid"] == "night-1" and [s["name"] for s in run["steps"]] == ["dump", "upload"]
    assert bodies(server, "uptimy-job")[0] == "3 tables"
    assert httpx.get(f"{base}/fail").text == "OK" and runs(server, "uptimy-job")[0]["state"] == "failed"
    assert httpx.get(f"{server.url}/v1/heartbeat/unknown-token").status_code == 404
    assert httpx.get(base, params={"step": "bad step!"}).status_code == 400


def test_cronitor_telemetry_run_complete_fail_with_series_status_code_and_message(server: Server) -> None:
    make(server, "cronitor-job")
    base = f"{server.url}/p/{server.ping_key}/cronitor-job"
    r = httpx.get(base, params={"state": "run", "series": "s-1", "host": "web-1"})
    assert (r.status_code, r.text) == (200, "")
    assert httpx.get(base, params={"state": "complete", "series": "s-1", "status_code": "0"}).text == ""
    r = httpx.get(base, params={"state": "fail", "series": "s-2", "status_code": "3", "message": "disk full"})
    assert (r.status_code, r.text) == (200, "")
    failed, ok = runs(server, "cronitor-job")
    assert (ok["state"], ok["rid"], ok["exit_code"]) == ("ok", "s-1", 0)
    assert (failed["state"], failed["rid"], failed["exit_code"]) == ("failed", "s-2", 3)
    assert bodies(server, "cronitor-job")[0] == "disk full"
    httpx.get(base)  # no state: a heartbeat, a finish
    assert runs(server, "cronitor-job")[0]["state"] == "ok"
    httpx.get(base, params={"status_code": "1"})  # a non-zero status code alone is a failure
    assert runs(server, "cronitor-job")[0]["exit_code"] == 1


def test_cronitor_refusals(server: Server) -> None:
    base = f"{server.url}/p/{server.ping_key}"
    assert httpx.get(f"{base}/no-such-job?state=run").status_code == 404
    assert httpx.get(f"{server.url}/p/wrong-key/cronitor-job?state=run").status_code == 404
    r = httpx.get(f"{base}/cronitor-job?state=paused")
    assert r.status_code == 400 and r.text == "bad state: use run, complete, ok or fail"
    assert httpx.get(f"{base}/cronitor-job?state=fail&status_code=300").status_code == 400
    assert httpx.get(f"{base}/cronitor-job?state=run&series=bad%20rid").status_code == 400
    # As on /ping/<key>/<slug>, create=1 makes the check (Cronitor makes monitors on first use).
    r = httpx.get(f"{base}/made-by-cronitor?state=run&create=1&schedule=1h")
    assert (r.status_code, r.text) == (200, "") and server.api("/checks/made-by-cronitor")["period"] == "1h"


# --- the URL forms, pure ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "rest", "query", "kind", "exit_code", "rid"), [
    (Dialect.KUMA, "tok", {}, PingKind.SUCCESS, None, None),
    (Dialect.KUMA, "tok", {"status": "down"}, PingKind.FAIL, None, None),
    (Dialect.UPTIMY, "tok", {"step": "start"}, PingKind.START, None, None),
    (Dialect.UPTIMY, "tok/7", {}, PingKind.FAIL, 7, None),
    (Dialect.CRONITOR, "k/job", {"state": "run", "series": "r"}, PingKind.START, None, "r"),
    (Dialect.CRONITOR, "k/job", {"state": "ok"}, PingKind.SUCCESS, None, None),
    (Dialect.CRONITOR, "k/job", {"state": "complete", "status_code": "2"}, PingKind.FAIL, 2, None),
    (Dialect.CRONITOR, "k/job", {"state": "fail", "status_code": "0"}, PingKind.FAIL, None, None),
])
def test_each_form_reads_as_a_native_ping(dialect: Dialect, rest: str, query: dict[str, str], kind: PingKind,
                                          exit_code: int | None, rid: str | None) -> None:
    req = parse_compat(dialect, rest, query).request
    assert (req.kind, req.exit_code, req.rid) == (kind, exit_code, rid)


def test_tokens_keep_their_case_and_uuids_do_not() -> None:
    assert parse_compat(Dialect.KUMA, "AbC", {}).request.uuid == "AbC"
    uuid = "3F0C2A9E-1B2C-4D5E-8F90-ABCDEF012345"
    assert parse_compat(Dialect.UPTIMY, uuid, {}).request.uuid == uuid.lower()
    with pytest.raises(BadPing):
        parse_compat(Dialect.KUMA, "a/b", {})
