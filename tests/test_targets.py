"""Alert targets that misbehave: one hangs, one answers 500 every time, one has a URL Apprise cannot use.

With the real server: pings are still answered and the good target still gets its alerts, every attempt
is recorded with its error, and the bad URL is named in the start-up log. With the Sender on a fake clock:
the retries stop at notify.MAX_ATTEMPTS, counted at the target itself.

Already proven elsewhere, not repeated here: a hanging target does not delay another one in the sender
(test_scheduler.py), a refused target's alerts arrive once when it comes back (test_alerts_e2e.py), and
`heartwatch notify-test` reports a bad URL and a refused port (test_cli_notify.py).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.receivers import HttpReceiver, SilentPort
from support.server import Server
from support.waiting import wait_for

from heartwatch.config import Settings
from heartwatch.core.model import CheckSpec, Ping, PingKind
from heartwatch.core.pings import PingRequest
from heartwatch.engine import notify
from heartwatch.engine.sender import Sender
from heartwatch.store.sqlite import Store

BAD_URL = "bogus://alerts.example.org/token"


class Failing:
    """An HTTP server that answers every request with 500, and counts them."""

    def __init__(self) -> None:
        self.requests = 0
        failing = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                failing.requests += 1
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def good() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def hanging() -> Iterator[SilentPort]:
    s = SilentPort()
    yield s
    s.close()


@pytest.fixture
def failing() -> Iterator[Failing]:
    f = Failing()
    yield f
    f.close()


@pytest.fixture
def server_config(good: HttpReceiver, hanging: SilentPort, failing: Failing) -> str:
    urls = ", ".join(f'"{u}"' for u in (hanging.url(), failing.url(), BAD_URL, good.url()))
    return f'[alerts]\nurls = [{urls}]\nretry_first = "1s"\n\n[checks.job]\n[checks.other]\n'


def attempts_by_target(server: Server) -> dict[str, list[tuple[int, str | None]]]:
    conn = sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT d.target, a.ok, a.error FROM delivery_attempts a"
                            " JOIN deliveries d ON d.id = a.delivery_id ORDER BY a.id").fetchall()
    finally:
        conn.close()
    found: dict[str, list[tuple[int, str | None]]] = {}
    for target, ok, error in rows:
        found.setdefault(target, []).append((ok, error))
    return found


def test_misbehaving_targets_leave_pings_and_the_good_target_alone(server: Server, good: HttpReceiver,
                                                                   hanging: SilentPort, failing: Failing) -> None:
    [line] = [x for x in server.log().splitlines() if "will not work" in x]
    assert "ERROR" in line and "alert target bogus://... will not work: unknown service bogus://" in line
    assert "alerts.example.org" not in line and "token" not in line  # the URL's secrets stay out of the log

    stop = threading.Event()
    answered: list[float] = []
    problems: list[str] = []

    def pinger() -> None:  # a job pinging another check all along, timing each answer
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                for suffix in ("/start", ""):
                    t0 = time.monotonic()
                    try:
                        r = http.post(server.slug_url("other", suffix))
                    except httpx.HTTPError as e:
                        problems.append(repr(e))
                        continue
                    if r.status_code == 200:
                        answered.append(time.monotonic() - t0)
                    else:
                        problems.append(f"{r.status_code} {r.text}")

    thread = threading.Thread(target=pinger, daemon=True)
    thread.start()
    try:
        assert httpx.post(server.slug_url("job", "/1"), timeout=10).status_code == 200  # the alert: 4 targets
        wait_for(lambda: good.titles(), what="the good target's alert")
        # Three attempts at the 500 target: the first and two retries (retry_first 1 s, then 2 s).
        wait_for(lambda: len(attempts_by_target(server).get(failing.url(), [])) >= 3, timeout=20,
                 what="three attempts at the failing target")
    finally:
        stop.set()
        thread.join(timeout=15)

    attempts = attempts_by_target(server)
    assert attempts[good.url()] == [(1, None)]
    assert good.titles() == ["DOWN job: failed with exit status 1"]
    assert failing.requests >= 3
    assert all(ok == 0 and error for ok, error in attempts[failing.url()])
    assert all(ok == 0 and error and "unknown service bogus://" in error for ok, error in attempts[BAD_URL])
    assert len(attempts[BAD_URL]) >= 2  # retried like any other failure, until the limit
    assert hanging.url() not in attempts  # still waiting for its answer (30 s) while all of the above happened

    print(f"\nmisbehaving targets: {len(answered)} pings answered while they failed, max latency "
          f"{max(answered) * 1000:.0f} ms; attempts recorded: "
          + ", ".join(f"{role} {len(attempts.get(url, []))}" for role, url in
                      (("500", failing.url()), ("bad URL", BAD_URL), ("hanging", hanging.url()), ("good", good.url()))))
    assert problems == []
    assert len(answered) >= 20


# --- the retry limit, on a fake clock ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def failed_check_alert(tmp_path: Path, urls: tuple[str, ...], clock: FakeClock) -> Store:
    """A store with one alert in the outbox (written by the Scheduler's ping hook), addressed to `urls`."""
    from heartwatch.engine.scheduler import Scheduler

    settings = Settings(db=tmp_path / "hw.db", alert_urls=urls)
    store = Store(settings.db)
    await store.open()
    Scheduler(settings, store, clock)  # installs the hooks that write alerts with the ping
    await store.sync_config({"job": CheckSpec(slug="job")}, clock())
    check = await store.check("job")
    assert check is not None
    await store.record_ping(PingRequest(kind=PingKind.FAIL, uuid=check.uuid, exit_code=1),
                            Ping(kind=PingKind.FAIL, at=clock(), exit_code=1))
    return store


async def test_retries_stop_at_the_documented_limit(tmp_path: Path, failing: Failing) -> None:
    clock = FakeClock()
    store = await failed_check_alert(tmp_path, (failing.url(), BAD_URL), clock)
    try:
        sender = Sender(store, clock, timeout=5)
        first = clock.now
        passes = 0
        while await sender.send_due():  # each pass: attempt what is due, then go to the next retry time
            await sender.drain()
            passes += 1
            [(nxt,)] = await store.fetchall("SELECT MIN(next_attempt_at) FROM deliveries")
            if nxt is None:
                break
            clock.now = datetime.fromtimestamp(nxt, UTC)
            assert passes <= notify.MAX_ATTEMPTS + 1, "retries did not stop"

        rows = await store.fetchall("SELECT target, attempts, gave_up_at, delivered_at, next_attempt_at"
                                    " FROM deliveries ORDER BY target")
        assert sorted(rows) == sorted([(failing.url(), notify.MAX_ATTEMPTS, clock.now.timestamp(), None, None),
                                       (BAD_URL, notify.MAX_ATTEMPTS, clock.now.timestamp(), None, None)])
        assert failing.requests == notify.MAX_ATTEMPTS  # counted at the target: not one request more
        errors = await store.fetchall("SELECT d.target, a.ok, a.error FROM delivery_attempts a"
                                      " JOIN deliveries d ON d.id = a.delivery_id")
        assert len(errors) == 2 * notify.MAX_ATTEMPTS and all(ok == 0 and error for _, ok, error in errors)
        # The documented limit: retries from 10 s doubling to hourly, given up about a day after the first.
        gave_up_after = clock.now - first
        assert gave_up_after == sum((notify.backoff(n) for n in range(1, notify.MAX_ATTEMPTS)), timedelta())
        assert timedelta(hours=20) < gave_up_after < timedelta(days=1)

        clock.now += timedelta(days=7)
        assert await sender.send_due() == 0
        assert failing.requests == notify.MAX_ATTEMPTS
        print(f"\nretry limit: {notify.MAX_ATTEMPTS} attempts per target, given up "
              f"{gave_up_after.total_seconds() / 3600:.1f} h after the first; 500 target saw {failing.requests}")
    finally:
        await store.close()


async def test_a_hanging_target_counts_as_a_failed_attempt_with_its_reason(tmp_path: Path,
                                                                           hanging: SilentPort) -> None:
    clock = FakeClock()
    store = await failed_check_alert(tmp_path, (hanging.url(),), clock)
    try:
        sender = Sender(store, clock, timeout=0.5)
        for attempt in (1, 2):
            assert await sender.send_due() == 1
            await sender.drain()
            clock.now += notify.backoff(attempt)
        [(attempts, next_at)] = await store.fetchall("SELECT attempts, next_attempt_at FROM deliveries")
        assert attempts == 2 and next_at is not None
        errors = [e for (e,) in await store.fetchall("SELECT error FROM delivery_attempts WHERE ok = 0")]
        assert len(errors) == 2 and all("did not finish within" in e or "no answer within" in e for e in errors), errors
    finally:
        await store.close()
