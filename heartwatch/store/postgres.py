"""The store on PostgreSQL: the SQLite store's code and SQL, on psycopg 3 connections (store/dialect.py).

Same shape as on SQLite: one writer connection on a thread of its own takes the writes of concurrent requests
in one transaction (group commit), reads go through a connection of their own, and the writer keeps the check
index, the open runs and the watches in memory. What PostgreSQL adds is that several heartwatch processes may
write the same database. The in-memory state stays right because every write transaction starts by bumping
the one row of `writes`: that row's lock makes the processes' transactions take turns (as BEGIN IMMEDIATE does
on SQLite), and its number tells a writer whether another process committed since its own last commit. If one
did, the writer reloads its state from the database before going on: a full reload, 10-18 ms for 1,000 checks
and 100-170 ms for 10,000 on the 2-CPU test VM, which two processes sharing a stream of pings pay on most
alternations (bench/pings.py --stores; docs/postgresql.md, "Limits").

The same number is the pages' change version (`change_version`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import aiosqlite
import psycopg

from heartwatch.config import redact_db
from heartwatch.core.model import CheckSpec, CheckStatus
from heartwatch.core.settings import Synchronous
from heartwatch.store.base import LeaderLock, StatusPage, UnreadableDatabase
from heartwatch.store.dialect import KEEPALIVES, PgConnection, PgReader
from heartwatch.store.migrations import MIGRATIONS, migrate
from heartwatch.store.outbox import AlertPolicy
from heartwatch.store.reads import SqliteReads
from heartwatch.store.sqlite import Store
from heartwatch.store.writer import Writer

log = logging.getLogger("heartwatch.store.postgres")

#: PostgreSQL's own migrations, after the shared ones (numbered from 1001 so the two lists never meet).
PG_MIGRATIONS: list[tuple[int, str, str]] = [
    (1001, "writes: the version row", """
        -- Bumped by every write transaction: its row lock makes the processes' writers take turns, and its
        -- number tells each whether another process wrote since its last commit (store/postgres.py).
        CREATE TABLE writes (version BIGINT NOT NULL);
        INSERT INTO writes VALUES (0);
    """),
]
#: Held (pg_advisory_lock) while a process migrates and reads or makes the ping key: two processes starting at
#: once on an empty database would otherwise both create the schema.
SETUP_LOCK = 0x68770001
#: The leader's advisory lock (session level, on a connection of its own): its holder runs the scheduler and sender.
LEADER_LOCK = 0x68770002
#: How long a look at the leader's lock may take before the lock counts as lost.
LOCK_CHECK_TIMEOUT = 5.0
#: Seconds a leader may go without looking at its lock (it looks every second) before another process ends its
#: session as hung and takes over: well above a busy event loop's stalls, well inside the 10 s of a failover.
HUNG_AFTER = 6.0
_BUMP = "UPDATE writes SET version = version + 1 RETURNING version"


def migrations() -> list[tuple[int, str, str]]:
    return [*MIGRATIONS, *PG_MIGRATIONS]


class PgWriter(Writer):
    """The Writer on PostgreSQL: always on its thread (each statement is a round trip), no WAL to checkpoint,
    a reconnect after the connection broke, and the version row (module docstring)."""

    def __init__(self, url: str, on_failure: Callable[[sqlite3.Connection], None],
                 on_stale: Callable[[sqlite3.Connection], None], synchronous: Synchronous = Synchronous.NORMAL) -> None:
        super().__init__(Path(os.devnull), on_failure=on_failure)
        self._url = url
        self._durable = Synchronous(synchronous) is Synchronous.FULL
        self._inline = False
        self._on_stale = on_stale
        self.seen: int | None = None  # the version after our last commit; None: reload before the next batch
        self.reloads = 0

    def _connect(self) -> sqlite3.Connection:
        conn = PgConnection.connect(self._url, "heartwatch-writer")
        # `synchronous` means on PostgreSQL what it means on SQLite. normal: a commit is answered once PostgreSQL
        # has it, before its WAL reaches the disk, so an answered ping survives any crash of heartwatch, and a
        # crash of PostgreSQL's machine may lose the last moments (at most 3 x wal_writer_delay), never its
        # consistency. full: each commit waits for the disk (and for synchronous replicas, where configured).
        conn.execute(f"SET synchronous_commit = {'on' if self._durable else 'off'}")
        return cast(sqlite3.Connection, conn)

    @staticmethod
    def grow_cache(conn: sqlite3.Connection) -> None:
        """PostgreSQL sizes its own buffers: nothing to do around a large write."""

    @staticmethod
    def settle_cache(conn: sqlite3.Connection) -> None:
        """PostgreSQL sizes its own buffers: nothing to do around a large write."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._connect)
        self._task = asyncio.create_task(self._loop(), name="heartwatch-writer")

    def _transaction(self, ops: list[Any]) -> list[Any]:
        conn = cast(PgConnection, self._conn)
        if conn is None or conn.broken:  # PostgreSQL restarted, or the network dropped the connection
            self.seen = None
            self._conn = self._connect()
            conn = cast(PgConnection, self._conn)
        db = cast(sqlite3.Connection, conn)
        try:
            # Pipeline mode: statements whose results nobody reads (most of a ping's) go without waiting for
            # their answers; reading a result (a new row's id, a rowcount) waits for what was sent before it.
            with conn.pipelined():
                conn.execute("BEGIN")
                [(version,)] = conn.execute(_BUMP)
                if self.seen is None or version != self.seen + 1:
                    self.reloads += 1
                    self._on_stale(db)  # another process wrote: what we hold in memory may be stale
                values = [op(db) for op in ops]
                conn.execute("COMMIT")
            self.seen = version
            return values
        except BaseException:
            self.seen = None  # what is in memory may hold what was rolled back: reload before the next batch
            if not conn.broken and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


class PostgresStore(Store):
    """Store (store/sqlite.py) on a PostgreSQL database given by its URL."""

    WRITE_ERRORS: tuple[type[Exception], ...] = (psycopg.Error, RuntimeError)
    UNAVAILABLE: tuple[type[Exception], ...] = (psycopg.OperationalError,)

    def __init__(self, url: str, retention: int = 1000, synchronous: Synchronous = Synchronous.NORMAL,
                 policy: AlertPolicy | None = None, max_checks: int = 10_000) -> None:
        super().__init__(Path(os.devnull), retention=retention, synchronous=synchronous, policy=policy,
                         max_checks=max_checks)
        self.url = url
        self.writer = PgWriter(url, on_failure=self._load_state, on_stale=self._load_state, synchronous=synchronous)
        self._pg_reader: PgReader | None = None

    async def open(self, ping_key: str | None = None, specs: Mapping[str, CheckSpec] | None = None) -> None:
        self._known_specs = specs or {}
        await self.writer.start()
        writer = cast(PgWriter, self.writer)

        def setup(conn: sqlite3.Connection) -> str:
            conn.execute(f"SELECT pg_advisory_lock({SETUP_LOCK})")
            try:
                migrate(conn, migrations())
                key = self._ensure_ping_key(conn, ping_key)
                [(writer.seen,)] = conn.execute("SELECT version FROM writes")  # read before the state below
                return key
            finally:
                conn.execute(f"SELECT pg_advisory_unlock({SETUP_LOCK})")

        try:
            self._ping_key = await self.writer.call(setup)
            await self.writer.call(self._load_state)
        except BaseException:
            await self.writer.close()
            raise
        self._pg_reader = PgReader(self.url)
        self._reader = cast(aiosqlite.Connection, self._pg_reader)

    async def close(self) -> None:
        await self.writer.close()
        if self._pg_reader is not None:
            await self._pg_reader.close()
            self._pg_reader = None
            self._reader = None

    shared = True

    def leader_lock(self, name: str) -> LeaderLock:
        return PgLeaderLock(self.url, name)

    async def is_healthy(self) -> bool:
        try:
            return await super().is_healthy()
        except self.UNAVAILABLE:
            return False

    async def change_version(self) -> int:
        [(version,)] = await self._all("SELECT version FROM writes")
        return int(version)

    async def status_page(self, now: datetime, wanted: CheckStatus | None, page: int, per_page: int,
                          tag: str | None = None, query: str = "", slugs: frozenset[str] | None = None
                          ) -> StatusPage:
        # The status index follows this process's writes; another process's are seen at this writer's next batch,
        # which reads the in-memory state again. When the version row has moved past what this writer committed,
        # an empty batch brings that about before the page is read (and the index is built again: O(checks)).
        writer = cast(PgWriter, self.writer)
        if await self.change_version() != writer.seen:
            await writer.submit(_nothing)
        return await super().status_page(now, wanted, page, per_page, tag, query, slugs)


def _nothing(conn: sqlite3.Connection) -> None:
    """An empty write batch: it bumps the version row and, when another process wrote, reloads (see above)."""


class PgReadOnlyStore(SqliteReads):
    """A PostgreSQL database opened to read only (`heartwatch checks --db postgresql://...`): no writer, no
    migrations, nothing written."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pg = PgReader(url)
        self._reader = cast(aiosqlite.Connection, self._pg)

    @staticmethod
    @contextlib.asynccontextmanager
    async def open(url: str) -> AsyncIterator[PgReadOnlyStore]:
        """Raises UnreadableDatabase with the line to show, here or from a read inside the `async with`."""
        store = PgReadOnlyStore(url)
        try:
            yield store
        except psycopg.errors.UndefinedTable:
            raise UnreadableDatabase(f"{redact_db(url)} is not a heartwatch database (or one a server has not"
                                     " opened yet)") from None
        except psycopg.Error as e:
            raise UnreadableDatabase(f"cannot read {redact_db(url)}: {' '.join(str(e).split())}") from None
        finally:
            await store._pg.close()


class PgLeaderLock:
    """The leader's lock: pg_try_advisory_lock on a connection that does nothing else.

    PostgreSQL releases a session's advisory locks when its connection ends, so a leader killed with -9 lets
    go as soon as its socket closes. A leader cut off by the network is found dead by TCP keepalives set on both
    sides (about 10 s): the server then ends its session and another process takes the lock, while the cut-off
    leader's own look at the lock fails (or times out) and it stops leading. The connection's
    application_name is the process's name, which is how any process tells who leads (`holder`).
    """

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._held = False
        self._unreachable = False  # said once per outage, not at every look

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is None or conn.broken or conn.closed:
            self._held = False
            conn = self._conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, application_name=self.name[:63], **KEEPALIVES)
            # The server's side of the keepalives: it ends the session (and frees the lock) of a leader it can no
            # longer reach in about 10 s, instead of the kernel's two hours.
            for setting in ("tcp_keepalives_idle = 3", "tcp_keepalives_interval = 2", "tcp_keepalives_count = 3"):
                await conn.execute(f"SET {setting}")
        return conn

    async def _drop(self) -> None:
        self._held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: closing is all that is left
                await conn.close()

    async def acquire(self) -> bool:
        if self._held:
            return await self.still_held()
        try:
            async with asyncio.timeout(LOCK_CHECK_TIMEOUT):
                conn = await self._connection()
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,))
                row = await cur.fetchone()
                if not (row and row[0]):
                    await self._end_a_hung_leader(conn)
        except (psycopg.Error, OSError, TimeoutError) as e:
            if not self._unreachable:
                log.warning("cannot reach PostgreSQL to ask for the leader's lock (asking again every second): %s",
                            str(e).strip() or type(e).__name__)
            self._unreachable = True
            await self._drop()
            return False
        self._unreachable = False
        self._held = bool(row and row[0])
        return self._held

    async def _end_a_hung_leader(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """A leader that is alive to TCP but runs nothing (stopped, its event loop blocked, its VM paused) keeps its
        connection, so PostgreSQL keeps its lock. A leader looks at its lock every second, which moves its
        session's `state_change`; one that has not for HUNG_AFTER seconds has its session ended here, and the
        lock is free at the next ask. If it wakes, its next look finds the lock gone and it stops leading."""
        cur = await conn.execute(
            "SELECT a.pid, a.application_name, now() - a.state_change FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.objid::bigint = %s"
            " AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND a.state = 'idle' AND now() - a.state_change > make_interval(secs => %s)",
            (LEADER_LOCK & 0xFFFFFFFF, HUNG_AFTER))
        for pid, name, quiet in await cur.fetchall():
            log.warning("the leader %s has not looked at its lock for %s (hung?): ending its session", name, quiet)
            await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

    async def still_held(self) -> bool:
        if not self._held or self._conn is None:
            return False
        try:
            async with asyncio.timeout(LOCK_CHECK_TIMEOUT):
                cur = await self._conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid::bigint = %s AND granted"
                    " AND pid = pg_backend_pid()", (LEADER_LOCK & 0xFFFFFFFF,))
                row = await cur.fetchone()
        except (psycopg.Error, OSError, TimeoutError) as e:
            log.warning("lost the connection holding the leader's lock: %s", str(e).strip() or type(e).__name__)
            await self._drop()
            return False
        self._held = bool(row and row[0])
        return self._held

    async def holder(self) -> str | None:
        try:
            async with asyncio.timeout(LOCK_CHECK_TIMEOUT):
                conn = await self._connection()
                cur = await conn.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.objid::bigint = %s AND l.granted"
                    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                    (LEADER_LOCK & 0xFFFFFFFF,))
                row = await cur.fetchone()
        except (psycopg.Error, OSError, TimeoutError):
            await self._drop()
            return None
        return str(row[0]) if row else None

    async def release(self) -> None:
        await self._drop()  # the session ends, and with it the lock
