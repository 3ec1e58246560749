"""The one writer: every change to the database goes through here, and concurrent writes share commits.

Callers hand in an operation (a function of the sqlite3 connection). Operations that arrive while a
commit is under way wait and then go together in the next transaction, so N concurrent pings cost one
fsync, not N (group commit). One operation that raises gets its exception; the rest of its batch still
commits. A caller's await returns only after COMMIT.

Where a batch runs: with `synchronous=normal` (the default) a commit only appends to the WAL, no fsync,
so a batch of pings is some tens of microseconds of SQLite and runs right on the event loop. Handing it to
a thread and back costs more than that (two wake-ups, ~100-150 µs of CPU per batch on a small VM, plus
the GIL going back and forth): at concurrency 16, three interleaved runs gave 2,570-4,260 pings/s inline
against 1,660-2,740 through a thread. A batch goes to the writer thread instead when it would stall every
request for too long: with `synchronous=full` (each commit waits on an fsync) and for operations submitted
as `long` (a config reload with thousands of checks, a scheduler pass over hundreds of due checks). The WAL is
copied into the database by a checkpointer thread of its own, so no commit waits on those fsyncs either.
Batches run one at a time, wherever they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from heartwatch.core.settings import Synchronous

T = TypeVar("T")
log = logging.getLogger("heartwatch.store.writer")

#: Seconds between WAL checkpoints beside the writer while writes are coming in.
CHECKPOINT_EVERY = 0.5
#: WAL pages after which the writer checkpoints itself after a commit. SQLite's default is 1,000 (~4 MB),
#: reached about twice a second under a flood of pings, and each such checkpoint stalls that batch on two
#: fsyncs (2-30 ms on a VM disk). The checkpointer below copies the WAL off the commit path instead; this
#: larger backstop remains because only the writer can restart a WAL that is never idle, and by the time it
#: fires the checkpointer has copied nearly all of it, leaving the fsyncs and a few pages.
WAL_BACKSTOP_PAGES = 10_000
#: WAL pages after which the writer finishes the checkpointer's copy itself, between two batches, so that its
#: next transaction starts the WAL over. Under a flood of pings the checkpointer never copies the whole WAL
#: (commits keep adding to it), so the WAL only started over at the backstop: a checkpoint inside a commit on
#: the event loop, fsyncs of the WAL written since the last one included, every ~0.5 s at 8,000 pings/s and
#: 5-13 ms each (strace), which every ping in flight waited for. Right after a checkpointer round the rest
#: is a few milliseconds of frames.
WAL_RESTART_PAGES = 2_000
Operation = Callable[[sqlite3.Connection], Any]
#: The writer's page cache while a config is synced (thousands of checks written at once), and after.
#: Kept at 64 MB, the cache held every page a first start with 100,000 checks had written, and everything
#: the start-up scans read, for the life of the process: 40-60 MB of its idle RSS. Pings touch the newest
#: pages of a few tables and indexes, which fit in far less.
SYNC_CACHE_KB = 65536
SETTLED_CACHE_KB = 8192


def connect(path: Path, synchronous: Synchronous | str = Synchronous.NORMAL) -> sqlite3.Connection:
    """The writer's connection.

    synchronous, in WAL mode: "normal" (default) — a committed transaction is in the WAL file before the
    ping is answered, so it survives a crash or SIGKILL of heartwatch; a power cut or kernel crash may lose
    the last commits before the next checkpoint, never the database's consistency. "full" — every commit
    is fsynced before the answer, so an answered ping survives a power cut too, at about 0.6 ms per
    commit (shared by the pings of one group commit).
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if Synchronous(synchronous) is Synchronous.FULL else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys=ON")
    # Up to 64 MB of pages (default 2 MB): a first start creating 100,000 checks writes ~45 MB in one
    # transaction, and with the default cache half of that is spilled and read back (0.6 s of ~3 s).
    # Only pages the writer touches are held, and quick_check reads the whole file on its own connection.
    # Once the config is synced the cache goes down to SETTLED_CACHE_KB (Writer.settle_cache).
    conn.execute(f"PRAGMA cache_size=-{SYNC_CACHE_KB}")
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
    return conn


class Writer:
    def __init__(self, path: Path, on_failure: Callable[[sqlite3.Connection], None] | None = None,
                 synchronous: Synchronous | str = Synchronous.NORMAL) -> None:
        self._path = path
        self._synchronous = synchronous = Synchronous(synchronous)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="heartwatch-writer")
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[Operation, asyncio.Future[Any]]] = []
        self._pending_long = False  # a pending operation asked for the writer thread
        self._inline = synchronous is not Synchronous.FULL
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Called on the writer thread after a rollback, so in-memory caches can be rebuilt from disk.
        self._on_failure = on_failure
        self.batches = 0  # commits made, for benchmarks and tests of group commit
        self.operations = 0
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="heartwatch-checkpoint")
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._written = asyncio.Event()  # set after each batch: the WAL has something to copy
        self._restart_wal = False  # the checkpointer copied a large WAL: the writer finishes the copy

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, connect, self._path, self._synchronous)
        self._task = asyncio.create_task(self._loop(), name="heartwatch-writer")
        self._checkpoint_task = asyncio.create_task(self._checkpoints(), name="heartwatch-checkpoint")

    async def call(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run `op` on the writer thread outside any batch: start-up work (migrations, cache loads) done before
        anything is submitted, as nothing keeps it apart from a batch running on the event loop."""
        loop = asyncio.get_running_loop()
        assert self._conn is not None, "writer not started"
        conn = self._conn
        return await loop.run_in_executor(self._executor, op, conn)

    @staticmethod
    def grow_cache(conn: sqlite3.Connection) -> None:
        """Before a large write (a first start or a reload may write 100,000 checks): the large page cache."""
        conn.execute(f"PRAGMA cache_size=-{SYNC_CACHE_KB}")

    @staticmethod
    def settle_cache(conn: sqlite3.Connection) -> None:
        """After a large write: back to the everyday cache size, and give the pages beyond it back."""
        conn.execute(f"PRAGMA cache_size=-{SETTLED_CACHE_KB}")
        conn.execute("PRAGMA shrink_memory")

    async def submit(self, op: Callable[[sqlite3.Connection], T], long: bool = False) -> T:
        """Run `op` in the next transaction; returns its result once that transaction is committed.

        `long`: the operation may take more than a few milliseconds, so its batch runs on the writer thread
        and the event loop goes on serving meanwhile."""
        if self._closing:
            raise RuntimeError("heartwatch is shutting down")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, fut))
        self._pending_long |= long
        self._wake.set()
        return await fut

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            inline, self._pending_long = self._inline and not self._pending_long, False
            if batch:
                await self._commit(loop, batch, inline)
                self._written.set()
            if self._closing and not self._pending:
                return

    async def _commit(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Operation, Any]], inline: bool) -> None:
        ops = [op for op, _ in batch]
        try:
            if inline:
                results = self._run_batch(ops)
            else:
                results = await loop.run_in_executor(self._executor, self._run_batch, ops)
        except Exception as e:  # the COMMIT itself failed (disk full, I/O error): nothing was stored
            results = [(False, e)] * len(batch)
        for (_, fut), (ok, value) in zip(batch, results, strict=True):
            if fut.done():  # the caller went away (client disconnected); the write stands
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def _run_batch(self, ops: list[Operation]) -> list[tuple[bool, Any]]:
        """All operations in one transaction. If one raises, the batch is rolled back and each operation is
        re-run in a transaction of its own, so the others still land and only the bad one gets its error.
        (Cheaper than a savepoint around every operation: failures are rare, pings are not.)"""
        try:
            results = [(True, value) for value in self._transaction(ops)]
        except Exception:
            if len(ops) == 1:
                raise
            results = []
            for op in ops:
                try:
                    results.append((True, self._transaction([op])[0]))
                except Exception as e:
                    results.append((False, e))
        self.batches += 1
        self.operations += len(ops)
        return results

    def _transaction(self, ops: list[Operation]) -> list[Any]:
        conn = self._conn
        assert conn is not None
        if self._restart_wal:
            # Copy what the checkpointer has not (the last few batches): with every frame copied, the BEGIN
            # below starts the WAL over instead of letting it grow to the backstop.
            self._restart_wal = False
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        conn.execute("BEGIN IMMEDIATE")
        try:
            values = [op(conn) for op in ops]
            conn.execute("COMMIT")
            return values
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if self._on_failure:
                self._on_failure(conn)  # in-memory state may hold what was just rolled back
            raise

    async def _checkpoints(self, every: float = CHECKPOINT_EVERY) -> None:
        """Copy the WAL into the database file from a thread of its own while writes are coming in.

        A PASSIVE checkpoint takes no lock a writer needs, so commits go on meanwhile; its fsyncs are what a
        checkpoint inside a commit would have made a batch of pings wait for."""
        loop = asyncio.get_running_loop()
        while True:
            await self._written.wait()  # an idle server has nothing to copy: no wake-ups at all
            await asyncio.sleep(every)  # and a busy one copies what `every` seconds of batches wrote, at once
            self._written.clear()
            try:
                wal_pages = await loop.run_in_executor(self._checkpointer, self._checkpoint)
            except sqlite3.Error as e:  # busy or I/O: the next round or the writer's backstop tries again
                log.warning("WAL checkpoint failed: %s", e)
            else:
                self._restart_wal = wal_pages >= WAL_RESTART_PAGES

    def _checkpoint(self) -> int:
        """A PASSIVE checkpoint; returns the pages in the WAL."""
        if self._checkpoint_conn is None:
            self._checkpoint_conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        _busy, wal_pages, _copied = self._checkpoint_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(wal_pages)

    async def _stop_checkpoints(self) -> None:
        if self._checkpoint_task:
            self._checkpoint_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoint_task
        if self._checkpoint_conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._checkpointer, self._checkpoint_conn.close)
            self._checkpoint_conn = None
        self._checkpointer.shutdown(wait=True)

    async def close(self) -> None:
        """Finish what is queued, then close the connection (checkpointing the WAL)."""
        await self._stop_checkpoints()
        self._closing = True
        self._wake.set()
        if self._task:
            await self._task
        if self._conn is not None:
            conn = self._conn
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
