"""What the compatibility layer keeps and reads: ping URL aliases, and the figures of Healthchecks' check JSON.

An alias is another name a check answers pings to (table `check_aliases`, migration 9): a Healthchecks UUID
imported onto a check that already had a UUID of its own, an Uptime Kuma push token, an upti.my token. Aliases
are written by the Store's API write (`api_save_check(..., aliases=...)`), in the same transaction as the check,
and resolved on the writer thread from an in-memory index like UUIDs. Only SQL lives here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite


class AliasTaken(Exception):
    """An alias (or imported UUID) that already names another check."""


def load_aliases(conn: sqlite3.Connection) -> dict[str, int]:
    """Every alias -> its check's id."""
    return {alias: check_id for alias, check_id in conn.execute("SELECT alias, check_id FROM check_aliases")}


def add_aliases(conn: sqlite3.Connection, check_id: int, aliases: Iterable[str], at: float) -> None:
    conn.executemany("INSERT OR IGNORE INTO check_aliases (alias, check_id, created_at) VALUES (?, ?, ?)",
                     [(alias, check_id, at) for alias in aliases])


async def _all(reader: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    async with reader.execute(sql, params) as cur:
        return list(await cur.fetchall())


async def slug_of(reader: aiosqlite.Connection, code: str) -> str | None:
    """The slug of the live (not archived) check whose UUID or alias is `code`."""
    rows = await _all(reader, "SELECT slug FROM checks WHERE uuid = ? AND archived_at IS NULL"
                      " UNION ALL SELECT c.slug FROM check_aliases a JOIN checks c ON c.id = a.check_id"
                      " WHERE a.alias = ? AND c.archived_at IS NULL LIMIT 1", (code, code))
    return str(rows[0][0]) if rows else None


async def aliases_of(reader: aiosqlite.Connection, check_ids: list[int]) -> dict[int, list[str]]:
    marks = ",".join("?" * len(check_ids))
    out: dict[int, list[str]] = {}
    if not check_ids:
        return out
    for check_id, alias in await _all(
            reader, f"SELECT check_id, alias FROM check_aliases WHERE check_id IN ({marks}) ORDER BY alias",
            tuple(check_ids)):
        out.setdefault(check_id, []).append(alias)
    return out


@dataclass(frozen=True, slots=True)
class PingStats:
    """What Healthchecks' `n_pings` and `last_ping` say, from the events kept (`[server] retention`)."""

    count: int
    last_at: float | None


async def ping_stats(reader: aiosqlite.Connection, check_ids: list[int]) -> dict[int, PingStats]:
    if not check_ids:
        return {}
    marks = ",".join("?" * len(check_ids))
    rows = await _all(reader, f"SELECT check_id, COUNT(*), MAX(at) FROM events WHERE check_id IN ({marks})"
                      " GROUP BY check_id", tuple(check_ids))
    return {r[0]: PingStats(int(r[1]), r[2]) for r in rows}


@dataclass(frozen=True, slots=True)
class LoggedPing:
    """One stored event as Healthchecks' ping list shows it."""

    id: int
    at: float
    kind: str
    rid: str | None
    exit_code: int | None
    has_body: bool
    remote_addr: str | None
    user_agent: str | None
    method: str | None
    ping_ms: float | None
    run_started: float | None  # the start of the run a finish closed: its duration
    run_ended: float | None


async def logged_pings(reader: aiosqlite.Connection, check_id: int, limit: int) -> list[LoggedPing]:
    """The newest `limit` events of a check, newest first."""
    rows = await _all(
        reader,
        "SELECT e.id, e.at, e.kind, e.rid, e.exit_code, e.body IS NOT NULL AND length(e.body) > 0, e.remote_addr,"
        " e.user_agent, e.method, e.ping_ms, r.started_at, r.ended_at"
        " FROM events e LEFT JOIN runs r ON r.id = e.run_id WHERE e.check_id = ? ORDER BY e.id DESC LIMIT ?",
        (check_id, limit))
    return [LoggedPing(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8], r[9], r[10], r[11]) for r in rows]


async def alert_kinds(reader: aiosqlite.Connection, check_id: int) -> list[tuple[str, float]]:
    """A check's alerts as (kind, when), oldest first: Healthchecks' flips are read from these."""
    rows = await _all(reader, "SELECT kind, created_at FROM alerts WHERE check_id = ? ORDER BY id", (check_id,))
    return [(str(r[0]), float(r[1])) for r in rows]
