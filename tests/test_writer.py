"""The writer: where batches run (on the event loop, or on its thread when long or fsynced) and the
checkpointer that copies the WAL into the database beside it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from heartwatch.store.writer import WAL_BACKSTOP_PAGES, Writer


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    w = Writer(tmp_path / "w.db")
    await w.start()
    await w.call(lambda c: c.execute("CREATE TABLE t (v BLOB)"))
    try:
        yield w
    finally:
        await w.close()


def thread_of_op(conn: sqlite3.Connection) -> int:
    conn.execute("INSERT INTO t VALUES (x'00')")
    return threading.get_ident()


async def test_a_short_batch_runs_on_the_event_loop_and_a_long_one_on_the_writer_thread(writer: Writer) -> None:
    loop_thread = threading.get_ident()
    assert await writer.submit(thread_of_op) == loop_thread
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    def slow(conn: sqlite3.Connection) -> tuple[int, int]:
        before = ticks
        time.sleep(0.3)  # stands for a reload of thousands of checks
        return threading.get_ident(), ticks - before

    task = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0.02)
        # A short operation queued beside a long one goes with it, off the loop.
        (thread, ticked), short_thread = await asyncio.gather(writer.submit(slow, long=True),
                                                             writer.submit(thread_of_op))
    finally:
        task.cancel()
    assert thread != loop_thread and short_thread == thread
    assert ticked > 0  # the event loop kept running while the long operation held the writer
    assert await writer.submit(thread_of_op) == loop_thread  # and the next short batch is inline again


async def test_with_synchronous_full_every_batch_runs_off_the_event_loop(tmp_path: Path) -> None:
    w = Writer(tmp_path / "full.db", synchronous="full")
    await w.start()
    try:
        await w.call(lambda c: c.execute("CREATE TABLE t (v BLOB)"))
        assert await w.submit(thread_of_op) != threading.get_ident()
        [(level,)] = await w.call(lambda c: c.execute("PRAGMA synchronous").fetchall())
        assert level == 2  # FULL: each commit is fsynced, which must not stall the event loop
    finally:
        await w.close()


async def test_a_failing_long_operation_does_not_lose_the_short_ones_beside_it(writer: Writer) -> None:
    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (x'ff')")
        raise RuntimeError("boom")

    results = await asyncio.gather(writer.submit(thread_of_op), writer.submit(boom, long=True),
                                   writer.submit(thread_of_op), return_exceptions=True)
    assert isinstance(results[1], RuntimeError)
    assert all(isinstance(r, int) for r in (results[0], results[2]))
    rows = await writer.call(lambda c: c.execute("SELECT hex(v) FROM t").fetchall())
    assert sorted(r[0] for r in rows) == ["00", "00"]


async def test_the_checkpointer_copies_the_wal_into_the_database_while_the_writer_never_does(
        tmp_path: Path, writer: Writer) -> None:
    db = tmp_path / "w.db"
    [(backstop,)] = await writer.call(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchall())
    assert backstop == WAL_BACKSTOP_PAGES
    page = bytes(4000)
    pages = 1500  # more than SQLite's default autocheckpoint (1,000), far under the writer's backstop
    size_before = db.stat().st_size
    for _ in range(pages // 50):
        await asyncio.gather(*(writer.submit(lambda c: c.execute("INSERT INTO t VALUES (?)", (page,)))
                               for _ in range(50)))
    deadline = time.monotonic() + 10
    while db.stat().st_size < size_before + pages * 4000 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    # The pages reached the database file: only a checkpoint puts them there, and the writer's own would
    # not have started before WAL_BACKSTOP_PAGES.
    assert db.stat().st_size >= size_before + pages * 4000
    [(n,)] = await writer.call(lambda c: c.execute("SELECT count(*) FROM t").fetchall())
    assert n == pages
