"""The store's reads (store/reads.py, the Reads interface of store/base.py) on a temporary database: what a
second implementation of the store must answer alike."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from heartwatch.core.model import Check, CheckSource, CheckSpec, Ping, PingKind, RunState, Watch
from heartwatch.core.pings import PingRequest
from heartwatch.store.base import UnreadableDatabase
from heartwatch.store.reads import ReadOnlyStore
from heartwatch.store.sqlite import Store

T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)


async def checks(store: Store, *slugs: str) -> list[Check]:
    await store.sync_config({s: CheckSpec(slug=s, schedule="0 2 * * *") for s in slugs}, T0)
    found = [await store.check(s) for s in slugs]
    assert all(found)
    return [c for c in found if c is not None]


async def ping(store: Store, check: Check, kind: PingKind, at: datetime) -> None:
    await store.record_ping(PingRequest(kind=kind, uuid=check.uuid), Ping(kind=kind, at=at))


async def set_watch(store: Store, check: Check, expected_at: datetime) -> None:
    def op(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM watches WHERE check_id = ?", (check.id,))
        conn.execute("INSERT INTO watches (check_id, expected_at, start_deadline, bad_streak)"
                     " VALUES (?, ?, ?, 0)", (check.id, expected_at.timestamp(), expected_at.timestamp() + 900))

    await store.writer.submit(op)


async def test_a_snapshot_is_the_check_its_newest_run_and_its_watch(store: Store) -> None:
    backup, idle = await checks(store, "backup", "idle")
    await ping(store, backup, PingKind.START, T0)
    await ping(store, backup, PingKind.SUCCESS, T0 + timedelta(minutes=1))
    await ping(store, backup, PingKind.START, T0 + timedelta(hours=1))
    await set_watch(store, backup, T0 + timedelta(days=1))

    snap = await store.snapshot("backup")
    assert snap is not None
    assert (snap.check.id, snap.check.source) == (backup.id, CheckSource.CONFIG)
    assert snap.last_run is not None and (snap.last_run.state, snap.last_run.started_at) == (
        RunState.RUNNING, T0 + timedelta(hours=1))
    assert snap.watch == Watch(expected_at=T0 + timedelta(days=1), start_deadline=T0 + timedelta(days=1, minutes=15))

    empty = await store.snapshot("idle")
    # A check is given its first expectation when it is created: the snapshot carries that watch, no run.
    assert empty is not None and (empty.check.id, empty.last_run) == (idle.id, None)
    assert empty.watch is not None and empty.watch == (await store.watches_of([idle.id]))[idle.id]
    assert empty.watch.down_since is None and empty.watch.bad_streak == 0
    assert await store.snapshot("nope") is None


async def test_snapshots_are_every_live_check_by_slug_and_archived_ones_on_request(store: Store) -> None:
    b, a = await checks(store, "b", "a")
    await ping(store, a, PingKind.SUCCESS, T0)
    assert [(s.check.slug, s.last_run is not None) for s in await store.snapshots()] == [("a", True), ("b", False)]
    await store.sync_config({"a": (await store.check("a")).spec}, T0)  # type: ignore[union-attr]  # b archived
    assert [s.check.slug for s in await store.snapshots()] == ["a"]
    assert [s.check.slug for s in await store.snapshots(include_archived=True)] == ["a", "b"]
    archived = await store.snapshot("b")
    assert archived is not None and archived.check.archived and archived.check.id == b.id


async def test_status_lines_carry_name_tags_state_and_only_the_due_watches(store: Store) -> None:
    await store.sync_config({"a": CheckSpec(slug="a", name="Alpha", tags=("db",)), "b": CheckSpec(slug="b")}, T0)
    a, b = await store.check("a"), await store.check("b")
    assert a is not None and b is not None
    await ping(store, a, PingKind.FAIL, T0)
    await set_watch(store, a, T0 + timedelta(hours=1))  # not due at T0 + 30 min
    await set_watch(store, b, T0)  # due
    read = await store.status_lines(T0 + timedelta(minutes=30))
    assert sorted(read.lines) == [
        (a.id, "Alpha", ("db",), False, RunState.FAILED, "a"),
        (b.id, "b", (), False, None, "b"),
    ]
    assert read.due == {b.id: (T0, T0 + timedelta(minutes=15))}


async def test_the_read_only_store_reads_without_writing_and_names_what_is_wrong(store: Store, tmp_path: Path,
                                                                                 db_kind: str) -> None:
    if db_kind != "sqlite":
        pytest.skip("ReadOnlyStore opens a SQLite file (heartwatch checks --db)")
    [backup] = await checks(store, "backup")
    await ping(store, backup, PingKind.SUCCESS, T0)
    async with ReadOnlyStore.open(store.path) as reads:
        [snap] = await reads.snapshots()
        assert snap.last_run is not None and snap.last_run.state is RunState.OK
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await reads._all("DELETE FROM checks")

    other = tmp_path / "other.db"
    sqlite3.connect(other).close()  # a SQLite file, but not heartwatch's
    with pytest.raises(UnreadableDatabase, match="is not a heartwatch database"):
        async with ReadOnlyStore.open(other) as reads:
            await reads.snapshots()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(UnreadableDatabase, match=r"^cannot read"):
        async with ReadOnlyStore.open(garbage) as reads:
            await reads.snapshots()
