"""The scheduler: persists each check's deadlines with every change, and wakes exactly when one falls due.

Deadlines live in an indexed column (`watches.next_deadline`), written in the same transaction as the
ping or change that moved them. The loop sleeps until the earliest one, or until a ping or config change
moves a deadline earlier; there is no periodic scan. After a restart, every deadline that passed while
heartwatch was down is already due and is evaluated once.

Alerts are written to the outbox (`alerts` + `deliveries`) in the same transaction as the state change
that causes them; the Sender delivers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from heartwatch.clock import Clock
from heartwatch.config import Settings
from heartwatch.core import alert_text, schedule, watching
from heartwatch.core.model import Check, Ping, Run, RunState, Watch
from heartwatch.core.runs import Applied
from heartwatch.core.watching import AlertIntent, Decision
from heartwatch.store import codec
from heartwatch.store.sqlite import PingResult, Store

log = logging.getLogger("heartwatch.engine.scheduler")

#: Checks evaluated per transaction when many fall due at once: keeps pings flowing in between.
DUE_BATCH = 500
#: Alerts logged one line each per batch: a burst of thousands (after an outage) would flood the log and
#: slow the writer; the outbox and the status page have every one.
LOGGED_PER_BATCH = 20
_UNREAD = object()  # not in the watches cache: not read yet
#: An upsert rather than INSERT OR REPLACE: an existing row is updated in place instead of deleted and
#: inserted again (with its index entries), a third less work per write.
_SAVE_WATCH = (f"INSERT INTO watches (check_id, {codec.WATCH_COLUMNS}, next_deadline) VALUES (?, ?, ?, ?, ?, ?, ?)"
               " ON CONFLICT (check_id) DO UPDATE SET"
               f" {', '.join(f'{c} = excluded.{c}' for c in [*codec.WATCH_COLUMNS.split(', '), 'next_deadline'])}")


class Scheduler:
    def __init__(self, settings: Settings, store: Store, clock: Clock,
                 on_alerts: Callable[[], None] | None = None) -> None:
        self.settings, self.store, self.clock = settings, store, clock
        self.on_alerts = on_alerts or (lambda: None)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sleep_until: float | None = None
        # Set on the writer thread by the hooks, read on the loop: hints, so a stale read only costs a wake-up.
        self._earliest_written: float | None = None
        self._alerts_written = 0
        self._logged = 0  # alerts logged one by one in the current batch (writer thread)
        # Writer-thread cache of the watches table: check id -> (watch, its stored next_deadline), or None for a
        # check without a row; so a ping reads no row and writes one only when something moved. Rows are read
        # as their checks are first touched (a restart with 100,000 checks reads none up front) and forgotten
        # after a rollback. Every row this scheduler writes goes through the cache.
        self._watches: dict[int, tuple[Watch, float | None] | None] = {}
        # A check id above this that is not in the cache has no row, so a check created now costs no read: the
        # largest id with a row when the cache was (re)started, moved up past rows written but not cached.
        self._stored_max: int | None = None
        store.reload_hooks.append(self._forget_watches)
        store.ping_hooks.append(self._on_ping)
        store.check_hooks.append(self._on_checks_changed)

    # --- hooks, on the writer thread inside the transaction of the change -------------------------------

    def _forget_watches(self, conn: sqlite3.Connection) -> None:
        """After a rollback the cache may hold what was rolled back: read again from disk as needed."""
        self._watches = {}
        self._stored_max = None

    def _stored_max_id(self, conn: sqlite3.Connection) -> int:
        if self._stored_max is None:
            self._stored_max = int(conn.execute("SELECT COALESCE(MAX(check_id), 0) FROM watches").fetchone()[0])
        return self._stored_max

    def _read_watches(self, conn: sqlite3.Connection, check_ids: list[int]) -> None:
        """Bring the watches of `check_ids` into the cache (those not there yet), a few hundred per query."""
        stored_max = self._stored_max_id(conn)
        unread = [i for i in check_ids if i not in self._watches]
        for check_id in unread:
            self._watches[check_id] = None  # until a row below says otherwise
        unread = [i for i in unread if i <= stored_max]
        for k in range(0, len(unread), 500):
            chunk = unread[k:k + 500]
            rows = conn.execute(f"SELECT check_id, {codec.WATCH_COLUMNS}, next_deadline FROM watches"
                                f" WHERE check_id IN ({', '.join('?' * len(chunk))})", chunk)
            for r in rows:
                self._watches[r[0]] = (codec.watch_from_row(r[1:6]), r[6])

    def _watch(self, conn: sqlite3.Connection, check_id: int) -> Watch | None:
        try:
            entry = self._watches[check_id]
        except KeyError:
            if self._stored_max is not None and check_id > self._stored_max:
                entry = self._watches[check_id] = None  # a check created since: no row
            else:
                self._read_watches(conn, [check_id])
                entry = self._watches[check_id]
        return entry[0] if entry else None

    def _save_watch(self, conn: sqlite3.Connection, check: Check, watch: Watch) -> None:
        row = self._watch_row(check, watch)
        if row is not None:
            conn.execute(_SAVE_WATCH, row)

    def _watch_row(self, check: Check, watch: Watch) -> tuple[Any, ...] | None:
        """The watches row to write for `check` (the cache already updated), or None when nothing moved."""
        if check.paused or check.archived:
            deadline = None
        else:
            runs = self.store.open_runs(check.id)
            deadline = codec.to_ts(watching.next_deadline(watch, [r.deadline for r in runs]))
        if self._watches.get(check.id) == (watch, deadline):
            return None  # most pings move nothing: skip the write
        self._watches[check.id] = (watch, deadline)
        return self._new_row(check.id, watch, deadline)

    def _new_row(self, check_id: int, watch: Watch, deadline: float | None) -> tuple[Any, ...]:
        if deadline is not None and (self._earliest_written is None or deadline < self._earliest_written):
            self._earliest_written = deadline
        return (check_id, *codec.watch_values(watch), deadline)

    def _on_checks_changed(self, conn: sqlite3.Connection, checks: list[Check], now: datetime) -> None:
        """Created, changed, paused, resumed or archived checks expect their next start from `now`."""
        rows: list[tuple[Any, ...]] = []
        stored_max = newest = self._stored_max_id(conn)
        new_rows: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # a new check's row but its id, by what decides it
        for check in checks:
            cached = self._watches.get(check.id, _UNREAD)
            if ((cached is None or (cached is _UNREAD and check.id > stored_max))
                    and not (check.paused or check.archived) and not self.store.open_runs(check.id)):
                # Known to have no row (a first start creates 100,000 such checks): the row is written but not
                # kept here; _stored_max moves past it below, so its first ping reads the row back.
                self._watches.pop(check.id, None)
                spec = check.spec
                key = (spec.schedule, spec.period, spec.timezone, spec.start_grace)
                tail = new_rows.get(key)
                if tail is None:
                    watch = watching.fresh_watch(spec, now)
                    tail = new_rows[key] = self._new_row(0, watch, codec.to_ts(watching.next_deadline(watch, [])))[1:]
                rows.append((check.id, *tail))
                newest = max(newest, check.id)
                continue
            watch = watching.fresh_watch(check.spec, now, self._watch(conn, check.id))
            if check.paused or check.archived:
                watch.next_reminder = None
            for run in self.store.open_runs(check.id):
                self._set_deadline(conn, check, run)
            row = self._watch_row(check, watch)
            if row is not None:
                rows.append(row)
        conn.executemany(_SAVE_WATCH, rows)  # one statement for all
        self._stored_max = newest

    def _set_deadline(self, conn: sqlite3.Connection, check: Check, run: Run) -> bool:
        """Keep a run's stored deadline in step with its steps; written only when it moved (returns whether)."""
        deadline = schedule.run_deadline(check.spec, run) if run.ended_at is None else None
        if deadline == run.deadline:
            return False
        run.deadline = deadline
        conn.execute("UPDATE runs SET deadline = ? WHERE id = ?", (codec.to_ts(deadline), run.id))
        return True

    def _on_ping(self, conn: sqlite3.Connection, check: Check, ping: Ping, applied: Applied) -> None:
        moved = False
        for run in applied.changed:
            moved |= self._set_deadline(conn, check, run)
        if not moved and not any(r.started_at == ping.at or r.ended_at == ping.at for r in applied.changed):
            return  # a step that moved no deadline (most pings): nothing for the watch to decide
        watch = self._watch(conn, check.id) or watching.fresh_watch(check.spec, ping.at)
        decision = watching.after_ping(check.spec, watch, applied.changed, ping.at, self.settings.remind_every,
                                       paused=check.paused or check.archived)
        self._write_alerts(conn, check, decision.alerts, ping.body)
        self._save_watch(conn, check, decision.watch)

    async def prepare(self) -> None:
        """Give every check without a watch (created before deadlines existed) a fresh expectation."""

        def op(conn: sqlite3.Connection) -> None:
            now = self.clock()
            missing = [r[0] for r in conn.execute(
                "SELECT id FROM checks WHERE NOT EXISTS (SELECT 1 FROM watches WHERE check_id = checks.id)")]
            checks = [c for c in map(self.store.check_by_id, missing) if c is not None]
            for check in checks:
                self._watches[check.id] = None  # known: no row
            self._on_checks_changed(conn, checks, now)

        await self.store.writer.submit(op, long=True)  # every check, at start-up

    # --- deadlines ---------------------------------------------------------------------------------------

    def _evaluate(self, conn: sqlite3.Connection, check_ids: list[int], now: datetime) -> int:
        alerts = 0
        self._logged = 0
        self._read_watches(conn, check_ids)
        for check_id in check_ids:
            check = self.store.check_by_id(check_id)
            watch = self._watch(conn, check_id)
            if check is None or watch is None:
                continue
            open_runs = [r for r in self.store.open_runs(check_id) if r.state is RunState.RUNNING]
            decision = watching.on_due(check_id, check.spec, watch, open_runs, now, self.settings.remind_every)
            for run in decision.runs:
                run.deadline = schedule.run_deadline(check.spec, run) if run.ended_at is None else None
                self.store.save_run(conn, run)
            self._write_alerts(conn, check, decision.alerts, self._last_output(conn, decision))
            self._save_watch(conn, check, decision.watch)
            alerts += len(decision.alerts)
        return alerts

    def _last_output(self, conn: sqlite3.Connection, decision: Decision) -> bytes:
        run_ids = [r.id for r in decision.runs if r.id is not None and r.state is RunState.TIMED_OUT]
        if not run_ids:
            return b""
        row = conn.execute("SELECT body FROM events WHERE run_id = ? AND body IS NOT NULL ORDER BY id DESC LIMIT 1",
                           (run_ids[0],)).fetchone()
        return bytes(row[0]) if row else b""

    async def run_due(self, now: datetime | None = None) -> int:
        """Evaluate every check whose deadline has passed by `now`; returns the number of alerts written."""
        now = now or self.clock()
        total = 0
        while True:
            rows = await self.store.fetchall(
                "SELECT check_id FROM watches WHERE next_deadline <= ? ORDER BY next_deadline LIMIT ?",
                (now.timestamp(), DUE_BATCH))
            if not rows:
                break
            ids = [r[0] for r in rows]
            # long: up to DUE_BATCH checks evaluated in one transaction, off the event loop
            written = await self.store.writer.submit(partial(self._evaluate, check_ids=ids, now=now), long=True)
            if written:
                self.on_alerts()  # per batch: the sender starts on these while the next batch is evaluated
            total += written
            if len(ids) < DUE_BATCH:
                break
        return total

    # --- the outbox ----------------------------------------------------------------------------------------

    def _write_alerts(self, conn: sqlite3.Connection, check: Check, alerts: list[AlertIntent], output: bytes) -> None:
        if not alerts:
            return
        targets = list(dict.fromkeys([*self.settings.alert_urls, *check.spec.alerts]))
        for intent in alerts:
            run = intent.run
            link = f"{self.settings.public_url}/checks/{check.slug}" + (f"/runs/{run.id}" if run and run.id else "")
            title = alert_text.title(check.slug, intent)
            body = alert_text.body(check.spec, intent, link, output)
            cur = conn.execute(
                "INSERT INTO alerts (check_id, run_id, kind, title, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (check.id, run.id if run else None, intent.kind.value, title, body, intent.at.timestamp()))
            conn.executemany("INSERT INTO deliveries (alert_id, target, next_attempt_at) VALUES (?, ?, ?)",
                             [(cur.lastrowid, t, intent.at.timestamp()) for t in targets])
            self._alerts_written += 1
            self._logged += 1
            if self._logged <= LOGGED_PER_BATCH:
                log.info("alert: %s", title)
            elif self._logged == LOGGED_PER_BATCH + 1:
                log.info("more alerts in this batch are not logged one by one: see the status page or the API")

    # --- the loop ------------------------------------------------------------------------------------------

    def ping_listener(self, result: PingResult) -> None:
        """After a ping is committed: wake the loop if it moved a deadline earlier, the sender if it alerted."""
        if self._alerts_written:
            self._alerts_written = 0
            self.on_alerts()
        earliest = self._earliest_written
        if earliest is not None and (self._sleep_until is None or earliest < self._sleep_until):
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="heartwatch-scheduler")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                self._wake.clear()
                self._earliest_written = None
                await self.run_due(self.clock())
                rows = await self.store.fetchall("SELECT MIN(next_deadline) FROM watches")
                self._sleep_until = rows[0][0] if rows else None
                timeout = None if self._sleep_until is None else max(0.0, self._sleep_until - self.clock().timestamp())
            except Exception:  # keep watching: one bad evaluation must not stop every later deadline
                log.exception("scheduler pass failed; retrying in 5 s")
                timeout = 5.0
            with contextlib.suppress(TimeoutError):
                # A long sleep is capped so a wall-clock jump is noticed within a minute.
                await asyncio.wait_for(self._wake.wait(), min(timeout, 60.0) if timeout is not None else 60.0)
