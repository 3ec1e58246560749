"""`[server] heartbeat_url`: the process running the scheduler pings another monitor every minute, and fails the
ping with the reason when the scheduler or the sender is stuck (engine/heartbeat.py). The watcher here is a
second real heartwatch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.server import Server, running_server
from support.waiting import wait_for

from heartwatch.engine.heartbeat import STUCK_AFTER, Health, Heartbeat, beat_request, verdict
from heartwatch.store.choose import new_store

NOW = 1_700_000_000.0


def test_all_well_is_no_failure() -> None:
    assert verdict(NOW, NOW - 600, Health(NOW - 30, NOW - 1, 0), 0) is None
    # Just started leading: no pass yet is not stuck yet.
    assert verdict(NOW, NOW - 10, Health(None, None, 0), 0) is None


def test_a_part_without_a_pass_for_two_minutes_is_stuck() -> None:
    reason = verdict(NOW, NOW - 600, Health(NOW - STUCK_AFTER - 5, NOW - 1, 0), 0)
    assert reason == "the scheduler has made no pass for 125 s"
    reason = verdict(NOW, NOW - 300, Health(NOW, None, 0), 0)
    assert reason == "the sender has made no pass for 300 s"


def test_a_growing_backlog_is_a_failure_and_a_steady_or_shrinking_one_is_not() -> None:
    reason = verdict(NOW, NOW - 600, Health(NOW, NOW, 7), 3)
    assert reason is not None and "backlog is growing: 7 alert deliveries" in reason and "(was 3)" in reason
    assert verdict(NOW, NOW - 600, Health(NOW, NOW, 7), 7) is None
    assert verdict(NOW, NOW - 600, Health(NOW, NOW, 2), 7) is None


def test_a_failure_goes_to_fail_or_to_kumas_status_down() -> None:
    assert beat_request("https://hc.example/ping/abc", None) == ("https://hc.example/ping/abc", b"")
    assert beat_request("https://hc.example/ping/abc/", "stuck") == ("https://hc.example/ping/abc/fail", b"stuck")
    assert beat_request("http://h/ping/k/a?create=1", "x")[0] == "http://h/ping/k/a/fail?create=1"
    url, _ = beat_request("https://kuma.example/api/push/T0k?status=up&msg=OK&ping=", "the sender is stuck")
    assert url == "https://kuma.example/api/push/T0k?status=down&ping=&msg=the+sender+is+stuck"


@pytest.fixture
def watcher(tmp_path: Path) -> Iterator[Server]:
    """The outside monitor: another heartwatch."""
    folder = tmp_path / "watcher"
    folder.mkdir()
    with running_server(folder, "") as srv:
        yield srv


def test_a_server_pings_its_heartbeat_url_as_it_starts_leading(tmp_path: Path, watcher: Server) -> None:
    url = watcher.slug_url("heartwatch-a") + "?create=1"
    with running_server(tmp_path, f'[server]\nheartbeat_url = "{url}"\n') as watched:
        def beats() -> list[dict[str, object]]:
            try:
                return list(watcher.api("/checks/heartwatch-a/events")["events"])
            except Exception:  # not created yet: 404
                return []

        [event] = wait_for(beats, 10, "the first heartbeat")
        assert str(event["body"]).startswith("ok: scheduler pass")
        assert f":{watched.port} pid " in str(event["body"])  # says which process beats
    [run] = watcher.api("/checks/heartwatch-a/runs")["runs"]
    assert run["state"] == "ok"


async def test_a_stuck_scheduler_fails_the_heartbeat_with_the_reason(tmp_path: Path, watcher: Server) -> None:
    store = new_store(tmp_path / "hw.db")
    await store.open()
    try:
        stuck_since = NOW - 3 * 60
        heartbeat = Heartbeat(watcher.slug_url("heartwatch-b") + "?create=1", store,
                              lambda: datetime.fromtimestamp(NOW, UTC), scheduler_pass=lambda: stuck_since,
                              sender_pass=lambda: NOW - 2)
        reason = await heartbeat.beat()
    finally:
        await store.close()
    assert reason == "the scheduler has made no pass for 180 s"
    assert heartbeat.sent == 1
    [run] = watcher.api("/checks/heartwatch-b/runs")["runs"]
    assert run["state"] == "failed"
    [event] = watcher.api("/checks/heartwatch-b/events")["events"]
    assert event["body"] == reason
