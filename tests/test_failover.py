"""Two real `heartwatch serve` processes on one PostgreSQL: both answer, one leads, and kill -9 of the leader
loses no acknowledged ping and no alert, and sends none twice but the one it was sending (at least once).

Needs PostgreSQL (tests/support/postgres.py); skips, saying why, without it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.ports import free_port
from support.postgres import Cluster
from support.receivers import HttpReceiver
from support.server import Server
from support.waiting import wait_for

pytestmark = pytest.mark.postgresql

CONFIG = """
[alerts]
urls = ["{url}"]
retry_first = "1s"

[checks.busy]
period = "1d"

[checks.backup]
period = "1d"
max_runtime = "{max_runtime}s"

[checks.job]
period = "1d"
"""
MAX_RUNTIME = 5
#: The issue's bar: a follower takes over within 10 s of the leader's death.
TAKEOVER = 10


def hit(url: str, **kw: Any) -> httpx.Response:
    return httpx.post(url, timeout=10, **kw)


def health(server: Server) -> dict[str, Any]:
    return dict(httpx.get(server.url + "/healthz", timeout=5).json())


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    # The first alert is received, then answered only after a while: the leader is killed in the middle of it.
    r = HttpReceiver(delay=8, delayed=1).start()
    yield r
    r.stop()


@pytest.fixture
def pair(tmp_path: Path, pg_cluster: Cluster, receiver: HttpReceiver) -> Iterator[tuple[Server, Server]]:
    url = pg_cluster.new_database()
    config = tmp_path / "heartwatch.toml"
    config.write_text(CONFIG.format(url=receiver.url(), max_runtime=MAX_RUNTIME))
    a = Server(config, tmp_path / "a.db", db_url=url)
    b = Server(config, tmp_path / "b.db", db_url=url)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        for s in (a, b):
            if s.proc is not None:
                s.stop()


def test_two_processes_share_the_work_and_the_survivor_of_a_kill_9_alerts_once(
        pair: tuple[Server, Server], receiver: HttpReceiver) -> None:
    a, b = pair
    # One leader, and both say which.
    ha, hb = health(a), health(b)
    assert (ha["leading"], hb["leading"]) == (True, False)
    assert ha["leader"] == ha["process"]
    wait_for(lambda: health(b)["leader"] == ha["process"], 5, "the follower to name the leader")
    assert ha["process"] in b.get("/").text  # the pages say it too

    # Both answer pings, for checks either one created.
    acknowledged = []
    for i in range(40):
        server = (a, b)[i % 2]
        r = hit(server.slug_url("busy", "/log"), content=f"ping {i}".encode())
        if r.status_code == 200:
            acknowledged.append(f"ping {i}")
    assert len(acknowledged) == 40
    assert hit(a.slug_url("adhoc", "/start") + "?create=1").status_code == 201
    assert hit(b.slug_url("adhoc")).status_code == 200  # created on a, known on b at once
    assert b.api("/checks/adhoc/runs")["runs"][0]["state"] == "ok"

    # A run that will overrun while nobody leads, and an alert the leader is still sending when it dies.
    started = time.time()
    assert hit(b.slug_url("backup", "/start")).status_code == 200
    assert hit(b.slug_url("job", "/fail")).status_code == 200
    wait_for(lambda: receiver.received, 10, "the leader to send the failure alert")
    a.stop(signal.SIGKILL)
    killed = time.time()

    wait_for(lambda: health(b)["leading"], TAKEOVER, "the follower to take over")
    took_over = time.time() - killed
    assert health(b)["leader"] == health(b)["process"]

    def timed_out() -> list[str]:
        return [t for t in receiver.titles() if "backup" in t]

    wait_for(timed_out, started + MAX_RUNTIME + TAKEOVER - time.time() + 1, "the overdue alert")
    alerted_after = time.time() - started
    wait_for(lambda: outbox_empty(b), 20, "the outbox to empty")

    print(f"takeover {took_over:.1f} s, overdue alert {alerted_after:.1f} s after the start ping")
    assert len(timed_out()) == 1, receiver.titles()  # exactly once
    assert alerted_after <= MAX_RUNTIME + TAKEOVER, (alerted_after, took_over)
    job = [h["X-Heartwatch-Alert-Id"] for (_, p), h in zip(receiver.received, receiver.headers, strict=True)
           if "job" in p["title"]]
    assert len(job) == 2 and job[0] == job[1], job  # sent again by the new leader, with the same alert id
    bodies = sorted(bytes(e["body"]).decode() for e in events(b, "busy"))
    assert bodies == sorted(acknowledged)  # every acknowledged ping is there


def outbox_empty(server: Server) -> bool:
    [(pending,)] = server.query("SELECT count(*) FROM deliveries WHERE next_attempt_at IS NOT NULL")
    return bool(pending == 0)


def events(server: Server, slug: str) -> list[dict[str, Any]]:
    rows = server.query("SELECT e.body FROM events e JOIN checks c ON c.id = e.check_id WHERE c.slug = ?"
                        " AND e.kind = 'log'", slug)
    return [{"body": r[0]} for r in rows]


def test_a_leader_that_loses_its_lock_stops_leading_and_one_process_leads_again(
        pair: tuple[Server, Server], pg_cluster: Cluster) -> None:
    a, b = pair
    leader = health(a)["process"]
    # PostgreSQL ends the session holding the lock, as it does for a leader it can no longer reach.
    [(ended,)] = a.query("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = ?",
                         leader)
    assert ended == 1
    wait_for(lambda: "lost the leader's lock" in a.log(), 5, "the leader to notice")
    wait_for(lambda: [health(s)["leading"] for s in (a, b)].count(True) == 1, TAKEOVER, "one leader again")
    assert "scheduler and sender stopped" in a.log()


def test_a_reload_on_one_process_reaches_the_other(pair: tuple[Server, Server]) -> None:
    a, b = pair
    a.config_path.write_text(a.config_path.read_text() + '\n[checks.nightly]\nschedule = "0 3 * * *"\n')
    assert a.proc is not None
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded" in a.log(), 10, "the reload")
    assert [c["slug"] for c in b.api("/checks")["checks"] if c["slug"] == "nightly"] == ["nightly"]
    assert hit(b.slug_url("nightly", "/start")).status_code == 200


def test_while_postgresql_is_away_pings_are_refused_and_after_it_returns_all_goes_on(
        tmp_path: Path, pg_cluster: Cluster) -> None:
    cluster = Cluster()  # a cluster of its own: the session's stays up for the other tests
    cluster.start()
    try:
        config = tmp_path / "heartwatch.toml"
        config.write_text('[checks.job]\nperiod = "1d"\n')
        server = Server(config, tmp_path / "hw.db", db_url=cluster.new_database())
        server.start()
        try:
            assert hit(server.slug_url("job", "/start")).status_code == 200
            cluster.halt()
            refused = hit(server.slug_url("job"))
            assert (refused.status_code, refused.text) == (503, "could not store the ping; try again")
            assert health(server)["status"] == "degraded"
            page = server.get("/")
            assert (page.status_code, page.text) == (503, "the database is unavailable; try again")
            wait_for(lambda: "lost the leader's lock" in server.log(), 5, "the leader to notice")
            cluster.run()
            assert hit(server.slug_url("job")).status_code == 200  # the connections are made again
            wait_for(lambda: health(server)["leading"], TAKEOVER, "the process to lead again")
            assert [r["state"] for r in server.api("/checks/job/runs")["runs"]] == ["ok"]
        finally:
            server.stop()
    finally:
        cluster.stop()


def test_serve_on_a_postgresql_it_cannot_reach_exits_1_with_one_line(tmp_path: Path) -> None:
    url = f"postgresql://hw:s3cret@127.0.0.1:{free_port()}/heartwatch"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTWATCH_")}
    proc = subprocess.run([sys.executable, "-m", "heartwatch", "serve", "--db", url, "--port", str(free_port())],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("heartwatch: cannot open the database postgresql://hw:***@127.0.0.1:")
    assert "s3cret" not in proc.stderr + proc.stdout and "Connection refused" in line
    assert list(tmp_path.iterdir()) == []  # no SQLite file named after the URL


def test_the_checks_command_reads_a_postgresql_database(pair: tuple[Server, Server], pg_cluster: Cluster) -> None:
    a, _ = pair
    assert a.db_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTWATCH_")}
    shown = subprocess.run([sys.executable, "-m", "heartwatch", "checks", "--db", a.db_url, "--json"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert sorted(c["slug"] for c in json.loads(shown.stdout)) == ["backup", "busy", "job"]
    empty = subprocess.run([sys.executable, "-m", "heartwatch", "checks", "--db", pg_cluster.new_database()],
                           capture_output=True, text=True, env=env, timeout=60)
    assert empty.returncode == 1 and "is not a heartwatch database" in empty.stderr, empty.stderr


def test_a_hung_leader_is_replaced_and_steps_down_when_it_wakes(pair: tuple[Server, Server]) -> None:
    a, b = pair
    assert a.proc is not None and health(a)["leading"]
    a.proc.send_signal(signal.SIGSTOP)  # alive to TCP (the kernel answers keepalives), running nothing
    stopped = time.time()
    try:
        wait_for(lambda: health(b)["leading"], TAKEOVER + 2, "the follower to replace the hung leader")
        took_over = time.time() - stopped
    finally:
        a.proc.send_signal(signal.SIGCONT)
    assert took_over <= TAKEOVER, took_over
    follower = {"leading": False, "leader": health(b)["process"]}
    wait_for(lambda: {k: health(a)[k] for k in follower} == follower, TAKEOVER, "the woken leader to step down")
    assert "hung?" in b.log() and "lost the leader's lock" in a.log()
