"""Retention of runs, alerts and deliveries (store/retention.py; issue 14, finding 2): runs, alerts and
deliveries were never pruned, so a flood of starts grew the database without bound. On a real store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.db import query

from heartwatch.core.model import Check, CheckSpec, Ping, PingKind
from heartwatch.core.pings import PingRequest
from heartwatch.store.choose import new_store
from heartwatch.store.outbox import AlertPolicy, Attempt
from heartwatch.store.sqlite import PRUNE_EVERY, Store

T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
KEEP = 10


@pytest.fixture
async def store(db_location: Path | str) -> AsyncIterator[Store]:
    s = new_store(db_location, retention=KEEP, policy=AlertPolicy(targets=("json://localhost/x",)))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def add_check(store: Store, slug: str = "busy", *others: str) -> Check:
    await store.sync_config({s: CheckSpec(slug=s) for s in (slug, *others)}, T0)
    check = await store.check(slug)
    assert check is not None
    return check


async def ping(store: Store, check: Check, kind: PingKind, at: datetime) -> None:
    await store.record_ping(PingRequest(kind=kind, uuid=check.uuid), Ping(kind=kind, at=at))


async def count(store: Store, sql: str, *params: object) -> int:
    [(n,)] = await query(store, sql, params)
    return int(n)


async def deliver_all(store: Store, at: datetime) -> None:
    """What the sender does once every delivery went out."""
    rows = await query(store, "SELECT id, attempts FROM deliveries WHERE next_attempt_at IS NOT NULL")
    attempts = [Attempt(d, n + 1, None, at.timestamp(), None, None) for d, n in rows]
    if attempts:
        await store.record_attempts(attempts, at.timestamp(), True, None, None)


async def runs_of(store: Store, check: Check) -> int:
    return await count(store, "SELECT count(*) FROM runs WHERE check_id = ?", check.id)


async def test_a_flood_of_runs_is_pruned_to_the_retention_with_its_alerts(store: Store) -> None:
    check = await add_check(store, "busy", "quiet")
    quiet = await store.check("quiet")
    assert quiet is not None
    await ping(store, quiet, PingKind.FAIL, T0)
    n = PRUNE_EVERY * 3
    for i in range(n):  # fail, succeed, fail, ...: each flip may write an alert
        await ping(store, check, PingKind.FAIL if i % 2 == 0 else PingKind.SUCCESS, T0 + timedelta(seconds=i))
        if i % 50 == 0:
            await deliver_all(store, T0 + timedelta(seconds=i))
        if i == 10:
            assert await count(store, "SELECT count(*) FROM alerts WHERE check_id = ?", check.id) > 0
    await deliver_all(store, T0 + timedelta(seconds=n))
    for i in range(PRUNE_EVERY):  # log pings: the next prune comes with them
        await ping(store, check, PingKind.LOG, T0 + timedelta(seconds=n + i))
    assert await runs_of(store, check) <= KEEP
    alerts = await count(store, "SELECT count(*) FROM alerts WHERE check_id = ?", check.id)
    assert alerts <= KEEP
    orphans = await count(store, "SELECT count(*) FROM deliveries WHERE alert_id NOT IN (SELECT id FROM alerts)")
    assert orphans == 0
    attempts = await count(store, "SELECT count(*) FROM delivery_attempts WHERE delivery_id NOT IN"
                                  " (SELECT id FROM deliveries)")
    assert attempts == 0
    assert await runs_of(store, quiet) == 1  # per check


async def test_uptime_is_the_same_after_runs_are_pruned(store: Store) -> None:
    check = await add_check(store)
    n = PRUNE_EVERY * 2
    for i in range(n):  # one in four fails
        await ping(store, check, PingKind.FAIL if i % 4 == 0 else PingKind.SUCCESS, T0 + timedelta(minutes=i))
    await deliver_all(store, T0 + timedelta(minutes=n))
    for i in range(PRUNE_EVERY):
        await ping(store, check, PingKind.LOG, T0 + timedelta(minutes=n, seconds=i))
    assert await runs_of(store, check) <= KEEP  # pruned ...
    now = T0 + timedelta(minutes=n + 1)
    month = (await store.uptimes([check.id], now))[check.id][-1]
    assert (month.runs, month.failures) == (n, n // 4)  # ... but counted


async def test_a_run_whose_alert_is_still_to_be_delivered_is_kept(store: Store) -> None:
    check = await add_check(store)
    await ping(store, check, PingKind.FAIL, T0)  # alerts; never delivered
    [(first,)] = await query(store, "SELECT min(id) FROM runs WHERE check_id = ?", (check.id,))
    for i in range(1, PRUNE_EVERY * 2):
        await ping(store, check, PingKind.SUCCESS, T0 + timedelta(seconds=i))
    assert await count(store, "SELECT count(*) FROM runs WHERE id = ?", first) == 1
    pending = await count(store, "SELECT count(*) FROM deliveries WHERE next_attempt_at IS NOT NULL")
    assert pending >= 1
    assert await runs_of(store, check) <= KEEP + 2  # the failure's and the recovery's runs wait for delivery


async def test_a_long_backlog_is_pruned_in_batches_not_at_once(db_location: Path | str) -> None:
    from heartwatch.store import retention

    path = db_location
    big = new_store(path, retention=10_000)
    await big.open()
    check = await add_check(big)
    await asyncio.gather(*(ping(big, check, PingKind.SUCCESS, T0 + timedelta(seconds=i))
                           for i in range(retention.BATCH * 2 + PRUNE_EVERY)))
    await big.close()
    small = new_store(path, retention=KEEP)  # the retention lowered: the backlog is worked down a batch at a time
    await small.open()
    try:
        for i in range(PRUNE_EVERY):
            await ping(small, check, PingKind.LOG, T0 + timedelta(hours=1, seconds=i))
        left = await runs_of(small, check)
        assert left == retention.BATCH * 2 + PRUNE_EVERY - retention.BATCH  # one batch went
        for i in range(3):
            await ping(small, check, PingKind.LOG, T0 + timedelta(hours=2, seconds=i))
        assert await runs_of(small, check) <= KEEP
    finally:
        await small.close()


async def test_metrics_counters_keep_counting_what_was_pruned(store: Store) -> None:
    check = await add_check(store)
    for i in range(40):  # fail, succeed, ...: alerts on the flips
        await ping(store, check, PingKind.FAIL if i % 2 == 0 else PingKind.SUCCESS, T0 + timedelta(hours=i))
        await deliver_all(store, T0 + timedelta(hours=i, minutes=1))
    before = await store.metrics_rows()
    assert sum(n for _, n in before.alerts_by_kind) > KEEP  # more than retention keeps
    for i in range(PRUNE_EVERY * 2):
        await ping(store, check, PingKind.LOG, T0 + timedelta(days=2, seconds=i))
    assert await count(store, "SELECT count(*) FROM alerts") <= KEEP  # pruned ...
    after = await store.metrics_rows()
    assert after.alerts_by_kind == before.alerts_by_kind  # ... and still counted
    assert (after.delivered, after.gave_up) == (before.delivered, before.gave_up)


async def test_a_pruned_run_named_by_a_kept_event_does_not_fail_the_ping(db_location: Path | str) -> None:
    # Foreign keys are on: deleting a run that a kept event names would fail the ping's whole transaction.
    store = new_store(db_location, retention=KEEP)
    await store.open()
    try:
        check = await add_check(store)
        req = PingRequest(kind=PingKind.START, uuid=check.uuid, rid="old")
        await store.record_ping(req, Ping(kind=PingKind.START, at=T0, rid="old"))  # the oldest run, by id
        for i in range(1, PRUNE_EVERY - 1):
            await ping(store, check, PingKind.SUCCESS, T0 + timedelta(seconds=i))
        # The PRUNE_EVERY-th event: its run is the oldest finished one and goes, the event stays.
        req = PingRequest(kind=PingKind.SUCCESS, uuid=check.uuid, rid="old")
        await store.record_ping(req, Ping(kind=PingKind.SUCCESS, at=T0 + timedelta(minutes=5), rid="old"))
        [finish] = await store.events(check.id, limit=1)
        assert finish["rid"] == "old" and finish["run_id"] is None
        for i in range(PRUNE_EVERY):
            await ping(store, check, PingKind.LOG, T0 + timedelta(minutes=6, seconds=i))
        assert await runs_of(store, check) <= KEEP
        events = await store.events(check.id, limit=1000)
        assert len(events) <= KEEP + PRUNE_EVERY
    finally:
        await store.close()
