"""Scheduler and Sender on a real Store (temporary database) with a clock the test moves; no sleeping.

The Scheduler's deadlines and outbox rows, and the Sender's deliveries to real receivers on loopback.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import db
from support.ports import free_port
from support.receivers import HttpReceiver, SilentPort

from heartwatch.config import Settings
from heartwatch.core.model import Check, CheckSpec, Ping, PingKind, StepSpec
from heartwatch.core.pings import PingRequest
from heartwatch.engine import notify
from heartwatch.engine.scheduler import DUE_BATCH, Scheduler
from heartwatch.engine.sender import Sender
from heartwatch.store.sqlite import Store

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class FakeClock:
    """The time is what the test says it is."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


@dataclass
class World:
    path: Path
    clock: FakeClock
    settings: Settings
    store: Store
    scheduler: Scheduler

    async def reopen(self) -> None:
        """A restart: close the database, open it again with a new Store and Scheduler."""
        await self.store.close()
        self.store = Store(self.path)
        await self.store.open()
        self.scheduler = Scheduler(self.settings, self.store, self.clock)
        await self.scheduler.prepare()

    async def add(self, specs: dict[str, CheckSpec] | CheckSpec) -> None:
        if isinstance(specs, CheckSpec):
            specs = {specs.slug: specs}
        await self.store.sync_config(specs, self.clock())

    async def check(self, slug: str) -> Check:
        check = await self.store.check(slug)
        assert check is not None
        return check

    async def ping(self, slug: str, kind: PingKind, step: str | None = None, exit_code: int | None = None,
                   rid: str | None = None, body: bytes = b"") -> None:
        check = await self.check(slug)
        req = PingRequest(kind=kind, uuid=check.uuid, step=step, rid=rid, exit_code=exit_code)
        await self.store.record_ping(req, Ping(kind=kind, at=self.clock(), step=step, rid=rid, exit_code=exit_code,
                                               body=body))

    async def alerts(self, slug: str | None = None) -> list[tuple[str, str, str]]:
        """(slug, kind, title) of every alert row, oldest first."""
        rows = await db.query(self.store,
            "SELECT c.slug, a.kind, a.title FROM alerts a JOIN checks c ON c.id = a.check_id ORDER BY a.id")
        return [tuple(r) for r in rows if slug is None or r[0] == slug]  # type: ignore[misc]

    async def deliveries(self) -> list[dict[str, Any]]:
        keys = ("id", "target", "attempts", "next_attempt_at", "delivered_at", "gave_up_at", "last_error")
        rows = await db.query(self.store, f"SELECT {', '.join(keys)} FROM deliveries ORDER BY id")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def attempts(self) -> list[tuple[int, int, str | None]]:
        rows = await db.query(self.store, "SELECT delivery_id, ok, error FROM delivery_attempts ORDER BY id")
        return [tuple(r) for r in rows]  # type: ignore[misc]

    async def next_deadline(self, slug: str) -> datetime | None:
        check = await self.check(slug)
        [(ts,)] = await db.query(self.store, "SELECT next_deadline FROM watches WHERE check_id = ?", (check.id,))
        return None if ts is None else datetime.fromtimestamp(ts, UTC)


async def open_world(tmp_path: Path, alert_urls: tuple[str, ...] = (), remind_every: timedelta = timedelta(0)
                     ) -> World:
    clock = FakeClock()
    settings = Settings(db=tmp_path / "hw.db", alert_urls=alert_urls, remind_every=remind_every,
                        base_url="http://hw.test")
    store = Store(settings.db)
    await store.open()
    return World(settings.db, clock, settings, store, Scheduler(settings, store, clock))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await open_world(tmp_path)
    try:
        yield w
    finally:
        await w.store.close()


HOURLY = CheckSpec(slug="hourly", period=HOUR, start_grace=timedelta(minutes=5))
BACKUP = CheckSpec(slug="backup", max_runtime=2 * HOUR,
                   steps=(StepSpec("dump"), StepSpec("upload", timedelta(minutes=45))))


# --- deadlines and the outbox ---------------------------------------------------------------------------------


async def test_a_missed_start_writes_one_alert_row_with_a_delivery_per_target(tmp_path: Path) -> None:
    w = await open_world(tmp_path, alert_urls=("json://127.0.0.1:9/a",))
    try:
        await w.add(CheckSpec(slug="hourly", period=HOUR, start_grace=timedelta(minutes=5),
                              alerts=("json://127.0.0.1:9/b", "json://127.0.0.1:9/a")))
        assert await w.next_deadline("hourly") == T0 + HOUR + timedelta(minutes=5)

        assert await w.scheduler.run_due(T0 + HOUR + timedelta(minutes=4)) == 0
        assert await w.scheduler.run_due(T0 + HOUR + timedelta(minutes=5)) == 1
        assert await w.scheduler.run_due(T0 + HOUR + timedelta(minutes=6)) == 0

        assert await w.alerts() == [("hourly", "missed", "DOWN hourly: did not start")]
        assert [d["target"] for d in await w.deliveries()] == ["json://127.0.0.1:9/a", "json://127.0.0.1:9/b"]
        [(body,)] = await db.query(w.store, "SELECT body FROM alerts")
        assert "http://hw.test/checks/hourly/runs/" in body
        runs = await w.store.runs((await w.check("hourly")).id)
        assert [r.state.value for r in runs] == ["missed"]
    finally:
        await w.store.close()


async def test_a_run_that_stops_at_a_step_times_out_once_naming_it(world: World) -> None:
    await world.add(BACKUP)
    await world.ping("backup", PingKind.START)
    world.clock.advance(timedelta(minutes=10))
    await world.ping("backup", PingKind.STEP, step="dump", body=b"dumping table users")
    assert await world.next_deadline("backup") == T0 + timedelta(minutes=55)

    for minutes in (54, 55, 56, 120, 121, 600):
        await world.scheduler.run_due(T0 + timedelta(minutes=minutes))
    assert await world.alerts() == [("backup", "timed_out", 'DOWN backup: timed out at step "dump", still running')]
    [(body,)] = await db.query(world.store, "SELECT body FROM alerts")
    assert "dumping table users" in body  # the output tail of the step it stopped at
    assert await world.next_deadline("backup") is None  # remind_every = 0 here: nothing more can fall due


async def test_ping_alerts_are_written_in_the_pings_transaction(world: World) -> None:
    await world.add(BACKUP)
    await world.ping("backup", PingKind.FAIL, exit_code=3, body=b"disk full")
    world.clock.advance(timedelta(minutes=1))
    await world.ping("backup", PingKind.SUCCESS, exit_code=0)
    assert await world.alerts() == [("backup", "failed", "DOWN backup: failed with exit status 3"),
                                     ("backup", "recovered", "UP backup: recovered after 1m down")]
    assert await world.scheduler.run_due(T0 + 100 * HOUR) == 0


async def test_the_clock_moving_forward_then_back_makes_no_duplicates(world: World) -> None:
    await world.add(HOURLY)
    assert await world.scheduler.run_due(T0 + 3 * HOUR) == 1  # 1h and 2h coalesced into one missed
    assert await world.scheduler.run_due(T0 + 30 * timedelta(minutes=1)) == 0  # NTP stepped back
    assert await world.scheduler.run_due(T0 + 3 * HOUR) == 0
    assert await world.scheduler.run_due(T0 + 2 * HOUR) == 0
    assert len(await world.alerts()) == 1
    # The next slot passes too: still down for the same reason, so it folds into the missed run, no new alert.
    assert await world.scheduler.run_due(T0 + 3 * HOUR + timedelta(minutes=5)) == 0
    assert len(await world.alerts()) == 1
    [(count, state)] = await db.query(world.store, "SELECT missed, state FROM runs")
    assert state == "missed" and count >= 3


async def test_deadlines_survive_a_restart_and_alert_exactly_once(world: World) -> None:
    await world.add({"hourly": HOURLY, "backup": BACKUP})
    await world.ping("backup", PingKind.START)
    await world.store.close()  # "down" from here

    world.clock.advance(5 * HOUR)
    await world.reopen()
    assert await world.scheduler.run_due() == 2  # everything that fell due while down, once
    assert sorted(kind for _, kind, _ in await world.alerts()) == ["missed", "timed_out"]
    assert await world.scheduler.run_due() == 0

    await world.reopen()  # and a second restart does not repeat them
    assert await world.scheduler.run_due() == 0
    assert len(await world.alerts()) == 2


async def world_with_a_check_without_a_watch(tmp_path: Path) -> World:
    """"hourly" stored by a store without a scheduler (as before deadlines existed), then opened with one."""
    store = Store(tmp_path / "hw.db")
    await store.open()
    await store.sync_config({"hourly": HOURLY}, T0)
    await store.writer.call(lambda conn: conn.execute("DELETE FROM watches"))  # as before watches existed
    await store.close()
    return await open_world(tmp_path)


async def test_prepare_gives_checks_without_a_watch_a_fresh_expectation(tmp_path: Path) -> None:
    w = await world_with_a_check_without_a_watch(tmp_path)
    try:
        w.clock.advance(HOUR)
        await w.scheduler.prepare()
        assert await w.next_deadline("hourly") == T0 + 2 * HOUR + timedelta(minutes=5)
    finally:
        await w.store.close()


async def test_a_thousand_checks_due_in_the_same_second_each_alert_once(world: World) -> None:
    n = 2 * DUE_BATCH
    await world.add({f"c{i}": CheckSpec(slug=f"c{i}", period=timedelta(minutes=1), start_grace=timedelta(0))
                     for i in range(n)})
    assert await world.scheduler.run_due(T0 + timedelta(minutes=1)) == n
    assert await world.scheduler.run_due(T0 + timedelta(minutes=1, seconds=30)) == 0
    alerts = await world.alerts()
    assert len(alerts) == n and len({slug for slug, _, _ in alerts}) == n


async def test_a_paused_check_has_no_deadline_and_resume_expects_from_now(world: World) -> None:
    await world.add(HOURLY)
    await world.store.set_paused("hourly", True, world.clock())
    assert await world.next_deadline("hourly") is None
    await world.ping("hourly", PingKind.FAIL, exit_code=1)
    assert await world.scheduler.run_due(T0 + 10 * HOUR) == 0
    assert await world.alerts() == []

    world.clock.advance(10 * HOUR)
    await world.store.set_paused("hourly", False, world.clock())
    assert await world.next_deadline("hourly") == T0 + 11 * HOUR + timedelta(minutes=5)
    assert await world.scheduler.run_due(T0 + 11 * HOUR + timedelta(minutes=4)) == 0
    assert await world.scheduler.run_due(T0 + 11 * HOUR + timedelta(minutes=5)) == 1


async def test_reminders_are_persisted_deadlines(tmp_path: Path) -> None:
    w = await open_world(tmp_path, remind_every=HOUR)
    try:
        await w.add(BACKUP)
        await w.ping("backup", PingKind.FAIL, exit_code=1)
        assert await w.next_deadline("backup") == T0 + HOUR
        assert await w.scheduler.run_due(T0 + 3 * HOUR + timedelta(minutes=30)) == 1  # one, not three
        assert await w.next_deadline("backup") == T0 + 4 * HOUR
        assert [k for _, k, _ in await w.alerts()] == ["failed", "reminder"]
    finally:
        await w.store.close()


# --- the sender --------------------------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.stop()


async def alert_world(tmp_path: Path, urls: tuple[str, ...], alerts: int = 1) -> World:
    """A world with `alerts` failed checks in the outbox, addressed to `urls`."""
    w = await open_world(tmp_path, alert_urls=urls)
    await w.add({f"job{i}": CheckSpec(slug=f"job{i}") for i in range(alerts)})
    for i in range(alerts):
        await w.ping(f"job{i}", PingKind.FAIL, exit_code=i + 1)
    return w


async def test_the_sender_delivers_and_records_the_attempt(tmp_path: Path, receiver: HttpReceiver) -> None:
    w = await alert_world(tmp_path, (receiver.url("hw"),))
    try:
        sender = Sender(w.store, w.clock, timeout=5)
        assert await sender.send_due() == 1
        await sender.drain()

        [(path, payload)] = receiver.received
        assert path == "/hw"
        assert payload["title"] == "DOWN job0: failed with exit status 1"
        assert "Exit status: 1" in payload["message"]
        assert payload["type"] == "failure"
        [d] = await w.deliveries()
        assert (d["attempts"], d["next_attempt_at"], d["delivered_at"]) == (1, None, T0.timestamp())
        assert await w.attempts() == [(d["id"], 1, None)]
        assert await sender.send_due() == 0  # delivered means done
    finally:
        await w.store.close()


async def test_a_burst_is_claimed_at_once_and_each_alert_is_sent_once_by_the_workers(tmp_path: Path) -> None:
    w = await alert_world(tmp_path, ("json://127.0.0.1:9/hook",), alerts=12)
    sent: list[str] = []
    gate = asyncio.Event()

    async def deliver(urls: list[str], title: str, body: str, **_: object) -> list[notify.TargetResult]:
        await gate.wait()  # every worker busy: the rest of the burst waits in the queue
        sent.append(title)
        return [notify.TargetResult("json://127.0.0.1:9/...", True)]

    try:
        # No digests here (see test_sender_grouping.py), and all three workers may serve the one target.
        sender = Sender(w.store, w.clock, deliver=deliver, concurrency=3, digest_from=13, per_target=3)
        assert await sender.send_due() == 12  # all claimed, although only 3 can be sent at a time
        await asyncio.sleep(0)
        assert sender.handed_off == 3
        assert await sender.send_due() == 0  # claimed ones are not claimed again
        gate.set()
        await sender.drain()
        assert sorted(sent) == sorted(set(sent)) and len(sent) == 12
        assert [len(e) for e in sender.handoff_log] == [3] * 12
        assert await sender.send_due() == 0  # delivered means done
        assert all(d["delivered_at"] is not None for d in await w.deliveries())
    finally:
        await w.store.close()


async def test_a_refused_target_is_retried_with_backoff_and_every_alert_arrives_once(tmp_path: Path) -> None:
    down = HttpReceiver()  # not started: the port refuses connections
    w = await alert_world(tmp_path, (down.url(),), alerts=3)
    try:
        sender = Sender(w.store, w.clock, timeout=5)
        assert await sender.send_due() == 3
        await sender.drain()
        for d in await w.deliveries():
            assert d["attempts"] == 1 and d["delivered_at"] is None
            assert d["next_attempt_at"] == (T0 + notify.backoff(1)).timestamp()
            assert d["last_error"] and "connection" in d["last_error"].lower()
        assert [ok for _, ok, _ in await w.attempts()] == [0, 0, 0]
        assert all(error for _, _, error in await w.attempts())

        w.clock.advance(notify.backoff(1) - timedelta(seconds=1))
        assert await sender.send_due() == 0  # not yet

        down.start()
        try:
            w.clock.advance(timedelta(seconds=1))
            assert await sender.send_due() == 3
            await sender.drain()
            assert sorted(down.titles()) == [f"DOWN job{i}: failed with exit status {i + 1}" for i in range(3)]
            w.clock.advance(HOUR)
            assert await sender.send_due() == 0
            assert len(down.received) == 3
        finally:
            down.stop()
        assert [d["attempts"] for d in await w.deliveries()] == [2, 2, 2]
        assert [ok for _, ok, _ in await w.attempts()] == [0, 0, 0, 1, 1, 1]
    finally:
        await w.store.close()


async def test_a_hanging_target_does_not_delay_another_target(tmp_path: Path, receiver: HttpReceiver) -> None:
    silent = SilentPort()
    w = await alert_world(tmp_path, (silent.url(), receiver.url()))
    try:
        sender = Sender(w.store, w.clock, timeout=3)
        assert await sender.send_due() == 2
        [hanging, good] = await w.deliveries()

        async def good_delivered() -> None:
            while not receiver.received or (await w.deliveries())[1]["delivered_at"] is None:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(good_delivered(), 30)
        assert await w.attempts() == [(good["id"], 1, None)]  # while the other one still hangs
        assert hanging["id"] in sender._in_flight

        await sender.drain()
        [hanging_after, _] = await w.deliveries()
        assert hanging_after["attempts"] == 1 and hanging_after["delivered_at"] is None
        assert hanging_after["next_attempt_at"] is not None
    finally:
        silent.close()
        await w.store.close()


async def test_delivery_is_given_up_after_max_attempts(tmp_path: Path) -> None:
    w = await alert_world(tmp_path, (f"json://127.0.0.1:{free_port()}/hook",))
    try:
        sender = Sender(w.store, w.clock, timeout=5)
        for attempt in range(1, notify.MAX_ATTEMPTS + 1):
            assert await sender.send_due() == 1, f"attempt {attempt}"
            await sender.drain()
            w.clock.advance(notify.backoff(attempt))
        [d] = await w.deliveries()
        assert d["attempts"] == notify.MAX_ATTEMPTS
        assert d["gave_up_at"] is not None and d["next_attempt_at"] is None and d["delivered_at"] is None
        assert len(await w.attempts()) == notify.MAX_ATTEMPTS
        w.clock.advance(timedelta(days=30))
        assert await sender.send_due() == 0
    finally:
        await w.store.close()


async def test_retry_first_shortens_the_first_wait(tmp_path: Path) -> None:
    w = await alert_world(tmp_path, (f"json://127.0.0.1:{free_port()}/hook",))
    try:
        sender = Sender(w.store, w.clock, timeout=5, retry_first=timedelta(seconds=1))
        await sender.send_due()
        await sender.drain()
        [d] = await w.deliveries()
        assert d["next_attempt_at"] == (T0 + timedelta(seconds=1)).timestamp()
    finally:
        await w.store.close()


async def test_a_day_forward_and_back_neither_repeats_nor_loses_an_alert(tmp_path: Path, receiver: HttpReceiver
                                                                         ) -> None:
    """Scheduler and Sender on one fake clock that NTP steps a day forward, then back, then time catches up.

    Two targets: one up, one down until the end, so a pending retry also lives through both jumps.
    Every alert must reach each target exactly once, whatever order the clock took.
    """
    late = HttpReceiver()  # refuses until started
    w = await open_world(tmp_path, alert_urls=(receiver.url("up"), late.url("late")))
    try:
        sender = Sender(w.store, w.clock, timeout=5)
        await w.add({"hourly": HOURLY, "backup": BACKUP})
        await w.ping("backup", PingKind.START)

        async def tick() -> int:
            """What the running process does at the current clock: evaluate what is due, send what is due."""
            due = await w.scheduler.run_due()
            await sender.send_due()
            await sender.drain()
            return due

        w.clock.advance(timedelta(days=1))  # forward a day: the missed start and the stuck run, once each
        assert await tick() == 2
        assert sorted(k for _, k, _ in await w.alerts()) == ["missed", "timed_out"]
        assert len(receiver.received) == 2 and late.received == []
        assert all(a[1] == 0 for a in await w.attempts() if a[2])  # the refused target's attempts failed

        w.clock.now = T0 + timedelta(minutes=10)  # ... and back to the true time
        assert await tick() == 0
        assert len(receiver.received) == 2  # nothing re-sent, nothing re-evaluated
        assert len(await w.alerts()) == 2

        await w.ping("hourly", PingKind.START)  # the job runs on time again: the check recovers
        w.clock.advance(timedelta(minutes=1))
        await w.ping("hourly", PingKind.SUCCESS)
        assert await tick() == 0
        [_, (_, _, recovered)] = await w.alerts("hourly")
        # Not "-23h49m" (down since "tomorrow"), nor "0s": the step back brought down_since back to the new now.
        assert recovered == "UP hourly: recovered after 1m down"

        late.start()  # the other target comes back; its retries were planned on the day-ahead clock
        for _ in range(4):
            w.clock.advance(timedelta(minutes=30))
            await tick()
        alerts = await w.alerts()
        assert [k for _, k, _ in alerts] == ["missed", "timed_out", "recovered", "missed"]  # the next miss: once
        assert sorted(receiver.titles()) == sorted(t for _, _, t in alerts)
        assert sorted(late.titles()) == sorted(t for _, _, t in alerts)
        assert all(d["delivered_at"] is not None for d in await w.deliveries())
    finally:
        late.stop()
        await w.store.close()


# --- watches read as needed ------------------------------------------------------------------------------------


async def test_a_check_created_after_a_restart_gets_a_watch_and_alerts_once(world: World) -> None:
    await world.add(HOURLY)
    await world.reopen()
    await world.ping("hourly", PingKind.START)  # the scheduler has read a watch from disk
    await world.add({"hourly": HOURLY, "later": CheckSpec(slug="later", period=HOUR, start_grace=timedelta(0))})
    assert await world.next_deadline("later") == T0 + HOUR
    assert await world.scheduler.run_due(T0 + HOUR) == 1
    assert [slug for slug, _, _ in await world.alerts()] == ["later"]
    assert await world.scheduler.run_due(T0 + HOUR + timedelta(minutes=1)) == 0
    world.clock.advance(90 * timedelta(minutes=1))
    await world.ping("later", PingKind.SUCCESS)  # recovers: the watch read back is the one that went down
    assert [kind for _, kind, _ in await world.alerts("later")] == ["missed", "recovered"]


async def test_a_rolled_back_change_of_a_watch_is_not_remembered(world: World) -> None:
    await world.add(HOURLY)
    check = await world.check("hourly")

    def pause_then_fail(conn: sqlite3.Connection) -> None:
        paused = world.store.check_by_id(check.id)
        assert paused is not None
        paused.paused = True
        world.store._changed(conn, [paused], world.clock())  # the scheduler drops the deadline ...
        raise RuntimeError("boom")  # ... and it is rolled back

    with pytest.raises(RuntimeError):
        await world.store.writer.submit(pause_then_fail)
    assert await world.next_deadline("hourly") == T0 + HOUR + timedelta(minutes=5)
    await world.store.set_paused("hourly", True, world.clock())  # the same change for real is written
    assert await world.next_deadline("hourly") is None
    assert await world.scheduler.run_due(T0 + 3 * HOUR) == 0


async def test_an_older_check_given_a_watch_by_prepare_alerts_from_it(tmp_path: Path) -> None:
    w = await world_with_a_check_without_a_watch(tmp_path)
    try:
        await w.add({"hourly": HOURLY, "backup": BACKUP})  # a newer check gets its watch first
        w.clock.advance(HOUR)
        await w.scheduler.prepare()
        assert await w.next_deadline("hourly") == T0 + 2 * HOUR + timedelta(minutes=5)
        assert await w.scheduler.run_due(T0 + 2 * HOUR + timedelta(minutes=5)) == 1
        assert [kind for _, kind, _ in await w.alerts("hourly")] == ["missed"]
    finally:
        await w.store.close()


async def test_a_cron_checks_expectation_follows_a_clock_stepped_back_by_days(world: World) -> None:
    # Issue 14, finding 10: after the clock stepped back, a cron check's next expectation stayed days ahead,
    # so a job that then did not run raised no alert until the clock caught up.
    daily = CheckSpec(slug="daily", schedule="0 2 * * *", start_grace=timedelta(minutes=5))
    world.clock.now = T0 + timedelta(days=3)  # the clock ran three days ahead ...
    await world.add(daily)
    await world.scheduler.run_due()
    ahead = await world.next_deadline("daily")
    assert ahead is not None and ahead > T0 + timedelta(days=3)
    world.clock.now = T0  # ... and NTP stepped it back
    await world.scheduler.run_due()
    expected = await world.next_deadline("daily")
    assert expected == datetime(2024, 5, 2, 2, 5, tzinfo=UTC)  # the next 02:00 after the new now, plus grace
    world.clock.now = expected + timedelta(minutes=1)
    assert await world.scheduler.run_due() == 1  # the job that did not run is missed on time
