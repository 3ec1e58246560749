"""`heartwatch copy-db SRC DST`: every row of one heartwatch database into another, SQLite or PostgreSQL either way.

Everything is copied as it is: checks with their ids, UUIDs and specs, runs, events, watches (so deadlines and
alert memory carry over), alerts and their deliveries (pending ones are sent by the next server on DST), the
ping key and the login's session secret (`meta`). DST is made (or brought to the newest schema) by opening it
as a server would; it must be empty unless `force`, which first empties it. The copy is one transaction on
each side: SRC read as of one moment (stop the servers first anyway: what they write after that moment is not
copied), DST written all or nothing. PostgreSQL's id sequences are moved past the copied ids.

SRC must be at DST's schema version (start a server of this version on it once, or copy with the version
that wrote it): rows are copied column by column, by name.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heartwatch.config import is_database_url, redact_db
from heartwatch.store.choose import new_store
from heartwatch.store.migrations import MIGRATIONS

#: Tables in an order that satisfies their foreign keys; tables found besides these are copied after them.
ORDER = ("meta", "checks", "runs", "events", "watches", "alerts", "deliveries", "delivery_attempts")
#: Bookkeeping each store keeps for itself: never copied.
OWN = frozenset({"schema_migrations", "writes", "sqlite_sequence"})
#: Rows per INSERT batch.
CHUNK = 2000


class CopyError(Exception):
    """Why nothing was copied, in one line."""


class NotEmpty(CopyError):
    """DST holds checks and `force` was not given: a usage error (exit 2)."""


@dataclass(frozen=True)
class CopyReport:
    source: str
    target: str
    rows: dict[str, int]
    seconds: float

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {table}" for table, n in self.rows.items() if n)
        return f"copied {self.source} to {self.target}: {counts or 'nothing (empty)'}, in {self.seconds:.1f} s"


class _Db:
    """A raw connection in the store's dialect, with what the copy needs of either database."""

    def __init__(self, where: Path | str, read_only: bool) -> None:
        self.where, self.pg = where, is_database_url(where)
        if self.pg:
            from heartwatch.store.dialect import PgConnection

            self.conn: Any = PgConnection.connect(str(where), "heartwatch-copy-db")
        else:
            path = Path(where)
            if read_only and not path.is_file():
                raise CopyError(f"no database at {path}")
            uri = f"{path.resolve().as_uri()}{'?mode=ro' if read_only else ''}"
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)

    def tables(self) -> list[str]:
        if self.pg:
            sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        found = {str(r[0]) for r in self.conn.execute(sql)} - OWN
        return [t for t in ORDER if t in found] + sorted(found - set(ORDER))

    def columns(self, table: str) -> list[str]:
        if self.pg:
            rows = self.conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?"
                                     " AND table_schema = current_schema() ORDER BY ordinal_position", (table,))
            return [str(r[0]) for r in rows]
        return [str(r[1]) for r in self.conn.execute(f"PRAGMA table_info({table})")]

    def versions(self) -> set[int]:
        try:
            return {int(r[0]) for r in self.conn.execute("SELECT version FROM schema_migrations")}
        except Exception:  # no such table: not a heartwatch database (said by the caller)
            return set()

    def rows(self, table: str, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
        sql = f"SELECT {', '.join(columns)} FROM {table}"
        if self.pg:  # a server-side cursor: a table of millions of events is streamed, not held in memory
            cur = self.conn.raw.cursor(name=f"copy_{table}")
            cur.itersize = CHUNK
            cur.execute(sql)
        else:
            cur = self.conn.execute(sql)
        batch = []
        for row in cur:
            batch.append(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row))
            if len(batch) >= CHUNK:
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        self.conn.close()


def copy_db(source: Path | str, target: Path | str, force: bool = False) -> CopyReport:
    """Copy every row of `source` into `target` (made if missing); refuses a `target` with checks unless `force`."""
    started = time.monotonic()
    if str(source) == str(target) or (not is_database_url(source) and not is_database_url(target)
                                      and Path(target).exists() and Path(source).resolve() == Path(target).resolve()):
        raise CopyError("SRC and DST are the same database")
    src = _Db(source, read_only=True)
    try:
        have = src.versions()
        if not have:
            raise CopyError(f"{redact_db(source)} is not a heartwatch database (no schema_migrations)")
        want = {v for v, _, _ in MIGRATIONS}
        if not want <= have:
            raise CopyError(f"{redact_db(source)} is at an older schema: start this version of heartwatch on it once"
                            " (it migrates at start), then copy")
        asyncio.run(_prepare(target))  # schema made or migrated, as a server would
        dst = _Db(target, read_only=False)
        try:
            rows = _copy(src, dst, force, redact_db(target))
        finally:
            dst.close()
    finally:
        src.close()
    return CopyReport(redact_db(source), redact_db(target), rows, time.monotonic() - started)


async def _prepare(target: Path | str) -> None:
    store = new_store(target)
    await store.open()
    await store.close()


def _copy(src: _Db, dst: _Db, force: bool, name: str) -> dict[str, int]:
    tables = src.tables()
    missing = set(tables) - set(dst.tables())
    if missing:
        raise CopyError(f"{name} has no table {', '.join(sorted(missing))}: copy with the heartwatch that wrote SRC")
    src.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if src.pg else "BEGIN")
    dst.conn.execute("BEGIN" if dst.pg else "BEGIN IMMEDIATE")
    try:
        [(checks,)] = dst.conn.execute("SELECT count(*) FROM checks").fetchall()
        if checks and not force:
            raise NotEmpty(f"{name} already holds {checks} checks; pass --force to replace everything in it")
        for table in reversed(dst.tables()):  # children first; meta too: SRC's ping key replaces DST's
            dst.conn.execute(f"DELETE FROM {table}")
        copied: dict[str, int] = {}
        for table in tables:
            columns = [c for c in src.columns(table) if c in set(dst.columns(table))]
            insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            copied[table] = 0
            for batch in src.rows(table, columns):
                dst.conn.executemany(insert, batch)
                copied[table] += len(batch)
            if dst.pg and "id" in columns:
                dst.conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                                 f" (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)")
        if dst.pg:
            dst.conn.execute("UPDATE writes SET version = version + 1")  # a running writer reloads what it holds
        dst.conn.execute("COMMIT")
        return copied
    except BaseException:
        dst.conn.execute("ROLLBACK")
        raise
    finally:
        src.conn.execute("COMMIT")
