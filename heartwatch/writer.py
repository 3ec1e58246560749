"""The one writer: every change to the database goes through here, and concurrent writes share commits.

Callers hand in an operation (a function of the sqlite3 connection). Operations that arrive while a
commit is under way wait and then go together in the next transaction, so N concurrent pings cost one
fsync, not N (group commit). One operation that raises gets its exception; the rest of its batch still
commits. A caller's await returns only after COMMIT.

The connection lives on one dedicated thread. aiosqlite hops to its thread once per statement and has
no public way to run a whole batch there; one hop per batch is what makes group commit cheap.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]


def connect(path: Path, synchronous: str = "normal") -> sqlite3.Connection:
    """The writer's connection.

    synchronous, in WAL mode: "normal" (default) — a committed transaction is in the WAL file before the
    ping is answered, so it survives a crash or SIGKILL of heartwatch; a power cut or kernel crash may lose
    the last commits before the next checkpoint, never the database's consistency. "full" — every commit
    is fsynced before the answer, so an answered ping survives a power cut too, at about 0.6 ms per
    commit (shared by the pings of one group commit).
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Writer:
    def __init__(self, path: Path, on_failure: Callable[[sqlite3.Connection], None] | None = None,
                 synchronous: str = "normal") -> None:
        self._path = path
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="heartwatch-writer")
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[Operation, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Called on the writer thread after a rollback, so in-memory caches can be rebuilt from disk.
        self._on_failure = on_failure
        self.batches = 0  # commits made, for benchmarks and tests of group commit
        self.operations = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, connect, self._path, self._synchronous)
        self._task = asyncio.create_task(self._loop(), name="heartwatch-writer")

    async def call(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run `op` on the writer thread outside any batch (start-up work: migrations, cache loads)."""
        loop = asyncio.get_running_loop()
        assert self._conn is not None, "writer not started"
        conn = self._conn
        return await loop.run_in_executor(self._executor, op, conn)

    async def submit(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run `op` in the next transaction; returns its result once that transaction is committed."""
        if self._closing:
            raise RuntimeError("heartwatch is shutting down")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, fut))
        self._wake.set()
        return await fut

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._commit(loop, batch)
            if self._closing and not self._pending:
                return

    async def _commit(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Operation, Any]]) -> None:
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, [op for op, _ in batch])
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

    async def close(self) -> None:
        """Finish what is queued, then close the connection (checkpointing the WAL)."""
        self._closing = True
        self._wake.set()
        if self._task:
            await self._task
        if self._conn is not None:
            conn = self._conn
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
