"""SQLite's read queries: what the pages, the API, /metrics and the CLI read (store/base.py's `Reads`).

They run on a read connection of their own (WAL: readers never wait for the writer), so nothing here
writes. Store (store/sqlite.py) has them for the server; ReadOnlyStore opens a database file for
`heartwatch checks --db` without a writer and without creating, migrating or locking anything. Each method
that returns several tables' worth of one check reads them in one statement, so they agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from heartwatch.core import dependencies
from heartwatch.core.model import Check, CheckStatus, Run, RunState, Watch
from heartwatch.store import codec, uptime
from heartwatch.store.base import (
    AlertRecord,
    CheckSnapshot,
    MetricsRows,
    StatusLines,
    StatusPage,
    StripRun,
    UnreadableDatabase,
)
from heartwatch.store.codec import CHECK_COLUMNS, RUN_COLUMNS, WATCH_COLUMNS, from_ts
from heartwatch.store.status_index import Filter, page_of_lines
from heartwatch.store.uptime import Uptime

_STATES = {s.value: s for s in RunState}
_N_CHECK, _N_RUN = len(CHECK_COLUMNS.split(",")), len(RUN_COLUMNS.split(","))


def _prefixed(table: str, columns: str) -> str:
    return ", ".join(f"{table}.{c.strip()}" for c in columns.split(","))


_C, _R, _W = _prefixed("c", CHECK_COLUMNS), _prefixed("r", RUN_COLUMNS), _prefixed("w", WATCH_COLUMNS)
# A check with its newest run (the runs_by_check index finds it) and its watch, in one statement.
_SNAPSHOT = (f"SELECT {_C}, {_R}, w.check_id, {_W} FROM checks c"
             " LEFT JOIN runs r ON r.id = (SELECT MAX(id) FROM runs WHERE check_id = c.id)"
             " LEFT JOIN watches w ON w.check_id = c.id")


def _snapshot(row: Any) -> CheckSnapshot:
    check = codec.check_from_row(row[:_N_CHECK])
    run_row = row[_N_CHECK:_N_CHECK + _N_RUN]
    watch_row = row[_N_CHECK + _N_RUN:]
    return CheckSnapshot(check, codec.run_from_row(run_row) if run_row[0] is not None else None,
                         codec.watch_from_row(watch_row[1:]) if watch_row[0] is not None else None)


#: (name, tags) by spec JSON: what every check's status line needs from its spec, decoded once per distinct
#: spec. Keyed by the text itself, so a changed spec is a new key: the cache never answers with a stale name.
_SUMMARIES: dict[str, tuple[str, tuple[str, ...]]] = {}


def _summary(spec: str) -> tuple[str, tuple[str, ...]]:
    d = json.loads(spec)
    summary = _SUMMARIES[spec] = (d.get("name") or "", tuple(d.get("tags") or ()))
    return summary


class SqliteReads:
    """The read methods; the class using it sets `_reader` (an open aiosqlite connection) before any is called."""

    _reader: aiosqlite.Connection | None

    async def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        assert self._reader is not None, "store not open"
        async with self._reader.execute(sql, params) as cur:
            return list(await cur.fetchall())

    # --- one check, or every check, as a snapshot ------------------------------------------------------

    async def snapshot(self, slug: str) -> CheckSnapshot | None:
        rows = await self._all(f"{_SNAPSHOT} WHERE c.slug = ?", (slug,))
        return _snapshot(rows[0]) if rows else None

    async def snapshots(self, include_archived: bool = False) -> list[CheckSnapshot]:
        where = "" if include_archived else " WHERE c.archived_at IS NULL"
        rows = await self._all(f"{_SNAPSHOT}{where} ORDER BY c.slug")
        # Decoding 30,000 checks takes about a second: a slice at a time, giving the event loop (pings) a turn
        # in between, instead of holding it for the whole list.
        out: list[CheckSnapshot] = []
        for start in range(0, len(rows), SLICE):
            if start:
                await asyncio.sleep(0)
            out.extend(_snapshot(r) for r in rows[start:start + SLICE])
        return out

    async def snapshots_of(self, slugs: Sequence[str]) -> dict[str, CheckSnapshot]:
        """The live checks with these slugs, as snapshots by slug (unknown or archived ones left out)."""
        found: dict[str, CheckSnapshot] = {}
        wanted = list(dict.fromkeys(slugs))
        for k in range(0, len(wanted), 500):
            chunk = wanted[k:k + 500]
            rows = await self._all(f"{_SNAPSHOT} WHERE c.archived_at IS NULL AND c.slug IN"
                                   f" ({', '.join('?' * len(chunk))})", tuple(chunk))
            found.update((s.check.slug, s) for s in map(_snapshot, rows))
        return found

    async def relatives(self, slug: str, limit: int = 100) -> dict[str, CheckSnapshot]:
        """The live checks linked to `slug` through depends_on and after: its parents and theirs, and the checks
        that name it and theirs, as snapshots by slug (the check itself included), at most about `limit`."""
        found: dict[str, CheckSnapshot] = {}
        up, down = [slug], [slug]
        while (up or down) and len(found) < limit:
            wanted = [s for s in up if s not in found]
            if wanted:
                rows = await self._all(f"{_SNAPSHOT} WHERE c.archived_at IS NULL AND c.slug IN"
                                       f" ({', '.join('?' * len(wanted))})", tuple(wanted))
                up = []
                for snap in map(_snapshot, rows):
                    found[snap.check.slug] = snap
                    up += dependencies.parents(snap.check.spec)
            else:
                up = []
            parents, down = down, []
            for parent in parents:
                # The spec's JSON holds the slug in quotes wherever it is named; the match is made exact below.
                rows = await self._all(f"{_SNAPSHOT} WHERE c.archived_at IS NULL AND c.spec LIKE ?",
                                       (f'%"{parent}"%',))
                for snap in map(_snapshot, rows):
                    if parent in dependencies.parents(snap.check.spec) and snap.check.slug not in found:
                        found[snap.check.slug] = snap
                        down.append(snap.check.slug)
        return found

    # --- checks, runs, events, alerts -------------------------------------------------------------------

    async def checks(self, include_archived: bool = False) -> list[Check]:
        where = "" if include_archived else " WHERE archived_at IS NULL"
        rows = await self._all(f"SELECT {CHECK_COLUMNS} FROM checks{where} ORDER BY slug")
        return [codec.check_from_row(r) for r in rows]

    async def check(self, slug: str) -> Check | None:
        rows = await self._all(f"SELECT {CHECK_COLUMNS} FROM checks WHERE slug = ?", (slug,))
        return codec.check_from_row(rows[0]) if rows else None

    async def checks_by_id(self, ids: list[int]) -> dict[int, Check]:
        if not ids:
            return {}
        rows = await self._all(f"SELECT {CHECK_COLUMNS} FROM checks WHERE id IN ({','.join('?' * len(ids))})",
                               tuple(ids))
        return {c.id: c for c in map(codec.check_from_row, rows)}

    async def watches_of(self, ids: list[int]) -> dict[int, Watch]:
        if not ids:
            return {}
        rows = await self._all(
            f"SELECT check_id, {WATCH_COLUMNS} FROM watches WHERE check_id IN ({','.join('?' * len(ids))})", tuple(ids))
        return {r[0]: codec.watch_from_row(r[1:]) for r in rows}

    async def runs(self, check_id: int, limit: int = 50, before: int | None = None) -> list[Run]:
        rows = await self._all(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE check_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (check_id, before if before is not None else 2**62, limit))
        return [codec.run_from_row(r) for r in rows]

    async def run(self, check_id: int, run_id: int) -> Run | None:
        rows = await self._all(f"SELECT {RUN_COLUMNS} FROM runs WHERE check_id = ? AND id = ?", (check_id, run_id))
        return codec.run_from_row(rows[0]) if rows else None

    async def recent_runs(self, check_ids: list[int], limit: int) -> dict[int, tuple[Run, list[StripRun]]]:
        """In one query (the index does the limit)."""
        if not check_ids:
            return {}
        rows = await self._all(
            f"SELECT r.check_id, r.id, r.state, r.started_at, r.ended_at, r.exit_code, r.last_step, {_R}"
            " FROM checks c JOIN runs r ON r.id IN (SELECT id FROM runs WHERE check_id = c.id ORDER BY id DESC LIMIT ?)"
            f" WHERE c.id IN ({','.join('?' * len(check_ids))}) ORDER BY r.id DESC", (limit, *check_ids))
        out: dict[int, tuple[Run, list[StripRun]]] = {}
        for check_id, run_id, state, started, ended, exit_code, last_step, *full in rows:
            cell = StripRun(run_id, _STATES[state], started, ended, exit_code, last_step)
            seen = out.get(check_id)
            if seen is None:
                out[check_id] = (codec.run_from_row(full), [cell])
            else:
                seen[1].append(cell)
        return out

    async def uptimes(self, check_ids: Sequence[int], now: datetime,
                      windows: Sequence[tuple[str, timedelta]] = uptime.WINDOWS) -> dict[int, list[Uptime]]:
        """Each check's share of ok runs over the last 24 h, 7 d and 30 d (or the windows given), with its
        failures (store/uptime.py)."""
        if not check_ids:
            return {}
        sql, params = uptime.uptime_query(check_ids, now, windows)
        return uptime.uptimes_from(await self._all(sql, params), check_ids, windows)

    async def events(self, check_id: int, limit: int = 100, run_id: int | None = None) -> list[dict[str, Any]]:
        where, params = ("check_id = ?", (check_id,)) if run_id is None else ("run_id = ?", (run_id,))
        rows = await self._all(
            "SELECT id, run_id, at, kind, step, rid, exit_code, body, remote_addr, user_agent, method, ping_ms"
            f" FROM events WHERE {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        keys = ("id", "run_id", "at", "kind", "step", "rid", "exit_code", "body", "remote_addr", "user_agent",
                "method", "ping_ms")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def alerts(self, check_id: int, limit: int = 20, run_id: int | None = None) -> list[AlertRecord]:
        where, params = (("check_id = ?", (check_id,)) if run_id is None
                         else ("check_id = ? AND run_id = ?", (check_id, run_id)))
        rows = await self._all(f"SELECT id, run_id, kind, title, body, created_at FROM alerts WHERE {where}"
                               " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [AlertRecord(r[0], r[1], r[2], r[3], r[4], datetime_of(r[5])) for r in rows]

    # --- the overview, /metrics, live refresh, health ---------------------------------------------------

    async def status_lines(self, now: datetime) -> StatusLines:
        # One statement, so one snapshot: every check with its spec's JSON text (decoded only when the spec is
        # new to this process, see _SUMMARIES) and its newest run's state (from the runs_by_check index alone,
        # see migration 3); then, as rows with a NULL slug and their own two columns (one type per column, as
        # PostgreSQL wants), the few watches already due. Only those can make a
        # check late, and reading them apart costs one scan of watches instead of a lookup per check.
        rows = await self._all(
            "SELECT c.id, c.slug, c.spec, c.paused,"
            " (SELECT state FROM runs r WHERE r.check_id = c.id ORDER BY r.id DESC LIMIT 1), NULL, NULL"
            " FROM checks c WHERE c.archived_at IS NULL"
            " UNION ALL SELECT check_id, NULL, NULL, NULL, NULL, expected_at, start_deadline FROM watches"
            " WHERE expected_at <= ?", (now.timestamp(),))
        if len(_SUMMARIES) > 2 * len(rows) + 1000:
            _SUMMARIES.clear()  # specs changed many times over: forget the old ones
        summaries, states = _SUMMARIES, _STATES
        lines = []
        due = {}
        for cid, slug, spec, paused, state, expected_at, start_deadline in rows:
            if slug is None:  # a due watch
                due[cid] = (from_ts(expected_at), from_ts(start_deadline))
                continue
            name, tags = summaries.get(spec) or _summary(spec)
            lines.append((cid, name or slug, tags, bool(paused), states[state] if state else None, slug))
        down = frozenset(r[0] for r in await self._all("SELECT check_id FROM watches WHERE down_since IS NOT NULL"))
        return StatusLines(lines, due, down)

    async def status_page(self, now: datetime, wanted: CheckStatus | None, page: int, per_page: int,
                          tag: str | None = None, query: str = "", slugs: frozenset[str] | None = None
                          ) -> StatusPage:
        # Without a writer there is no status index (store/status_index.py): every check's line, as before it.
        return page_of_lines(await self.status_lines(now), now, wanted, page, per_page, Filter(tag, query, slugs))

    async def late_checks(self, now: datetime) -> list[int]:
        """Checks whose expected start is overdue, still inside its grace: few, found by watches_by_expected."""
        ts = now.timestamp()
        rows = await self._all("SELECT check_id FROM watches WHERE expected_at <= ?"
                               " AND (start_deadline IS NULL OR start_deadline > ?)", (ts, ts))
        return [r[0] for r in rows]

    async def metrics_rows(self) -> MetricsRows:
        # The newest run that ended, missed ones aside: a missed run never ran, so it has no duration.
        durations = {r[0]: r[2] - r[1] for r in await self._all(
            "SELECT check_id, started_at, ended_at FROM runs WHERE id IN (SELECT MAX(id) FROM runs"
            " WHERE ended_at IS NOT NULL AND state != 'missed' GROUP BY check_id)")}
        last_ok = {r[0]: r[1] for r in await self._all(
            "SELECT check_id, MAX(ended_at) FROM runs WHERE state = 'ok' GROUP BY check_id")}
        run_counts = {(r[0], _STATES[r[1]]): r[2] for r in await self._all(
            "SELECT check_id, state, count(*) FROM runs GROUP BY check_id, state")}
        # Counters: what retention pruned (store/retention.py counts it in pruned_counts) plus what is left.
        pruned = {str(k): int(n) for k, n in await self._all("SELECT what, n FROM pruned_counts")}
        alert_counts = Counter({f"alerts:{k}": int(n) for k, n in await self._all(
            "SELECT kind, count(*) FROM alerts GROUP BY kind")})
        alert_counts.update({k: n for k, n in pruned.items() if k.startswith("alerts:")})
        alerts = sorted((k.removeprefix("alerts:"), n) for k, n in alert_counts.items())
        [(delivered, gave_up, pending)] = await self._all(
            "SELECT count(delivered_at), count(gave_up_at), count(next_attempt_at) FROM deliveries")
        return MetricsRows(durations, last_ok, run_counts, alerts, delivered + pruned.get("deliveries:delivered", 0),
                           gave_up + pruned.get("deliveries:gave_up", 0), pending)

    async def change_version(self) -> int:
        [(version,)] = await self._all("PRAGMA data_version")
        return int(version)

    async def is_healthy(self) -> bool:
        return bool(await self._all("SELECT 1"))


def datetime_of(ts: float) -> datetime:
    at = from_ts(ts)
    assert at is not None
    return at


#: Rows decoded between two turns of the event loop (about a millisecond).
SLICE = 20


class ReadOnlyStore(SqliteReads):
    """A database file opened to read only: never created, migrated or locked for writing, so it is safe
    beside a running server (which stays its only writer). For `heartwatch checks --db`."""

    def __init__(self, reader: aiosqlite.Connection) -> None:
        self._reader = reader

    @staticmethod
    @contextlib.asynccontextmanager
    async def open(path: Path) -> AsyncIterator[ReadOnlyStore]:
        """Raises UnreadableDatabase with the line to show, here or from a read inside the `async with`."""
        try:
            reader = await aiosqlite.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        except sqlite3.Error as e:
            raise UnreadableDatabase(f"cannot open {path}: {e}") from None
        try:
            yield ReadOnlyStore(reader)
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                raise UnreadableDatabase(
                    f"{path} is not a heartwatch database (or one a server has not opened yet)") from None
            raise UnreadableDatabase(f"cannot read {path}: {e}") from None
        except sqlite3.DatabaseError as e:
            raise UnreadableDatabase(f"cannot read {path}: {e}") from None
        finally:
            await reader.close()
