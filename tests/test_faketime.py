"""Fifteen simulated minutes of alerts on a real server whose clock runs 30 times fast, counting what arrives.

Only the server process runs under libfaketime (Debian's `faketime` package): LD_PRELOAD with FAKETIME="+0 x30".
libfaketime speeds up CLOCK_MONOTONIC as well as the wall clock, and scales the timeouts of epoll_wait, so
uvloop's timers (libuv reads the monotonic clock) fire 30 times sooner too: measured, `asyncio.sleep(3)` under
uvloop returns after 0.1 s of real time with 3.4 s seen on both clocks. With FAKETIME_DONT_FAKE_MONOTONIC=1 the
loop would sleep real seconds while the wall clock raced ahead; we leave the monotonic clock faked.

The test process, the json:// receiver and the pings run in real time; 30 real seconds are 15 server minutes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import fastclock
from support.fastclock import FAKETIME_MARK, SPEED
from support.receivers import HttpReceiver
from support.server import Server
from support.waiting import wait_for

SIMULATED = 15 * 60  # seconds of server time
CONFIG = """
[alerts]
urls = ["{url}"]
retry_first = "1s"

[checks.down]
schedule = "* * * * *"
start_grace = "5s"

[checks.hung]
schedule = "* * * * *"
start_grace = "5s"

[checks.flappy]
name = "Flappy job"

[checks.reminded]
remind_every = "4m"
"""

pytestmark = FAKETIME_MARK


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[tuple[Server, HttpReceiver]]:
    with fastclock.fast_server(tmp_path, CONFIG) as both:
        yield both


def titles(receiver: HttpReceiver, slug: str) -> list[str]:
    return [t for t in receiver.titles() if f" {slug}:" in t or f"({slug}):" in t]


def test_fifteen_fast_minutes_of_a_down_check_a_hung_run_a_flapping_check_and_reminders(
        fast_server: tuple[Server, HttpReceiver]) -> None:
    server, receiver = fast_server
    began = time.monotonic()
    with httpx.Client(timeout=10) as client:

        def ping(slug: str, suffix: str = "", **kw: object) -> None:
            r = client.post(server.slug_url(slug, suffix), **kw)  # type: ignore[arg-type]
            assert r.status_code == 200, r.text

        ping("hung", "/start")
        ping("hung", params={"step": "dump"})
        ping("reminded", "/3")
        reminded_at = time.monotonic()
        flips = 0
        while time.monotonic() - began < SIMULATED / SPEED:
            ping("flappy", "/fail" if flips % 2 == 0 else "")  # down, up, down, ... every 15 server seconds
            flips += 1
            time.sleep(0.5)
    elapsed = time.monotonic() - reminded_at
    wait_for(lambda: len(titles(receiver, "reminded")) >= 1 + math.floor(elapsed * SPEED / 240) - 1,
             what="the reminders")
    time.sleep(1)  # anything late would arrive now

    # Never pinged for 15 minutes: one DOWN (before: one a minute, 15).
    assert titles(receiver, "down") == ["DOWN down: did not start"]
    # Started, reached "dump", then silent: one alert, still running (before: "did not start", every minute).
    assert titles(receiver, "hung") == ['DOWN hung: still running at step "dump" when the next run was due']
    # 30 flips or more: the hourly limit lets ten alerts through (before: one per flip).
    assert flips > 20
    flappy = titles(receiver, "flappy")
    assert len(flappy) == 10
    assert flappy[:2] == ["DOWN Flappy job (flappy): failed", "UP Flappy job (flappy): recovered after 15s down"] \
        or flappy[0] == "DOWN Flappy job (flappy): failed"
    # One failure, then a reminder every 4 server minutes that says why.
    reminded = titles(receiver, "reminded")
    expected = math.floor(elapsed * SPEED / 240)
    assert reminded[0] == "DOWN reminded: failed with exit status 3"
    assert set(reminded[1:]) == {"STILL DOWN reminded: failed with exit status 3"}
    assert expected - 1 <= len(reminded) - 1 <= expected
