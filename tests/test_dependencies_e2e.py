"""Dependencies end to end: a real server whose clock runs 30 times fast (libfaketime, as in test_faketime.py),
a real json:// receiver, counting what arrives for a router outage with three jobs behind it and for a
three-job pipeline that stops in the middle. The rules themselves are tested pure in test_dependencies.py.

The test process, the receiver and the pings run in real time: one real second is 30 server seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import fastclock
from support.fastclock import FAKETIME_MARK
from support.receivers import HttpReceiver
from support.server import Server
from support.waiting import wait_for

JOBS = ("job-a", "job-b", "job-c")
CONFIG = """
[alerts]
urls = ["{url}"]
retry_first = "1s"

[checks.router]
period = "30s"
start_grace = "10s"
""" + "".join(f"""
[checks.{job}]
period = "60s"
start_grace = "60s"
depends_on = ["router"]
""" for job in JOBS) + """
[checks.dump]

[checks.upload]
after = "dump"
start_grace = "30s"

[checks.verify]
after = "upload"
start_grace = "30s"
"""

pytestmark = FAKETIME_MARK


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[tuple[Server, HttpReceiver]]:
    with fastclock.fast_server(tmp_path, CONFIG) as both:
        yield both


class Pinger:
    """Pings a set of checks (success) every quarter of a real second (7.5 server seconds), from a thread."""

    def __init__(self, server: Server) -> None:
        self.server, self.slugs = server, list[str]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                for slug in list(self.slugs):  # in order: the router first
                    client.post(self.server.slug_url(slug)).raise_for_status()
                self._stop.wait(0.25)

    def __enter__(self) -> Pinger:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def titles(receiver: HttpReceiver, slug: str) -> list[str]:
    return [t for t in receiver.titles() if f" {slug}:" in t]


def test_a_router_outage_and_a_pipeline_stopping_in_the_middle(fast_server: tuple[Server, HttpReceiver]) -> None:
    server, receiver = fast_server
    ping = lambda slug, suffix="": httpx.post(server.slug_url(slug, suffix), timeout=10).raise_for_status()  # noqa: E731
    with Pinger(server) as pinger:
        # Healthy for a minute of server time; the pipeline runs through once.
        pinger.slugs = ["router", *JOBS]
        for slug in ("dump", "upload", "verify"):
            ping(slug, "/start")
            ping(slug)
        time.sleep(2)
        assert receiver.titles() == []

        # The router goes down and takes every job with it; the pipeline's dump runs, upload never starts.
        pinger.slugs = []
        ping("dump", "/start")
        ping("dump")
        dump_run = server.api("/checks/dump")["last_run"]["id"]
        wait_for(lambda: server.api("/checks/job-c")["status"] == "down", timeout=30, what="the jobs to miss")
        for job in JOBS:
            held = server.api(f"/checks/{job}")
            assert (held["status"], held["waiting_on"], held["status_note"]) == ("down", ["router"],
                                                                                 "waiting on router")
        verify = server.api("/checks/verify")
        assert verify["status_note"] == "not expected, upload failed"  # upload's missed run is its parent's end
        page = server.get("/checks/job-b").text
        assert 'id="status-note">waiting on router<' in page and 'id="pipeline"' in page
        assert server.get("/").text.count('<span class="status-note">waiting on router</span>') == 3  # the overview
        assert titles(receiver, "router") == ["DOWN router: did not start (3 checks depend on it)"]
        assert [t for j in JOBS for t in titles(receiver, j)] == []  # held back: no avalanche

        # The router is back; job-a runs at once, job-b and job-c stay down and alert after their own grace.
        pinger.slugs = ["router", "job-a"]
        wait_for(lambda: len(receiver.titles()) >= 5, timeout=30, what="the jobs' alerts")
        time.sleep(3)  # 90 server seconds: anything more would arrive now

    router = titles(receiver, "router")
    assert router[0] == "DOWN router: did not start (3 checks depend on it)"
    assert [t.split(" after ")[0] for t in router[1:]] == ["UP router: recovered"]
    assert titles(receiver, "job-a") == []
    assert titles(receiver, "job-b") == ["DOWN job-b: did not start"]
    assert titles(receiver, "job-c") == ["DOWN job-c: did not start"]
    # The pipeline: one alert, for the job that stopped; none for the one before or the one after.
    assert titles(receiver, "dump") == [] and titles(receiver, "verify") == []
    assert titles(receiver, "upload") == ["DOWN upload: did not start after dump"]
    [message] = [p["message"] for _, p in receiver.received if p["title"].startswith("DOWN upload")]
    assert f"after dump's run #{dump_run} finished well" in message
    assert len(receiver.titles()) == 5  # without depends_on: 2 + 3 more DOWN alerts for the jobs
