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

from heartwatch import alert_text, codec, schedule, watching
from heartwatch.clock import Clock
from heartwatch.config import Settings
from heartwatch.model import Check, Ping, Run, RunState, Watch
from heartwatch.runs import Applied
from heartwatch.store import PingResult, Store
from heartwatch.watching import AlertIntent, Decision

log = logging.getLogger("heartwatch.scheduler")

#: Checks evaluated per transaction when many fall due at once: keeps pings flowing in between.
DUE_BATCH = 500
#: Alerts logged one line each per batch: a burst of thousands (after an outage) would flood the log and
#: slow the writer; the outbox and the status page have every one.
LOGGED_PER_BATCH = 20


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
        # Writer-thread copy of the watches table (check id -> watch and its stored next_deadline), so a ping
        # reads no row and writes one only when something moved. Loaded lazily, reloaded after a rollback.
        self._watches: dict[int, tuple[Watch, float | None]] | None = None
        store.reload_hooks.append(self._load_watches)
        store.ping_hooks.append(self._on_ping)
        store.check_hooks.append(self._on_check_changed)

    # --- hooks, on the writer thread inside the transaction of the change -------------------------------

    def _load_watches(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(f"SELECT check_id, {codec.WATCH_COLUMNS}, next_deadline FROM watches")
        self._watches = {r[0]: (codec.watch_from_row(r[1:6]), r[6]) for r in rows}

    def _watch(self, conn: sqlite3.Connection, check_id: int) -> Watch | None:
        if self._watches is None:
            self._load_watches(conn)
        assert self._watches is not None
        entry = self._watches.get(check_id)
        return entry[0] if entry else None

    def _save_watch(self, conn: sqlite3.Connection, check: Check, watch: Watch) -> None:
        if check.paused or check.archived:
            deadline = None
        else:
            runs = self.store.open_runs(check.id)
            deadline = codec.to_ts(watching.next_deadline(watch, [r.deadline for r in runs]))
        if self._watches is not None and self._watches.get(check.id) == (watch, deadline):
            return  # most pings move nothing: skip the write
        conn.execute(f"INSERT OR REPLACE INTO watches (check_id, {codec.WATCH_COLUMNS}, next_deadline)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)", (check.id, *codec.watch_values(watch), deadline))
        if self._watches is not None:
            self._watches[check.id] = (watch, deadline)
        if deadline is not None and (self._earliest_written is None or deadline < self._earliest_written):
            self._earliest_written = deadline

    def _on_check_changed(self, conn: sqlite3.Connection, check: Check, now: datetime) -> None:
        watch = watching.fresh_watch(check.spec, now, self._watch(conn, check.id))
        if check.paused or check.archived:
            watch.next_reminder = None
        for run in self.store.open_runs(check.id):
            self._set_deadline(conn, check, run)
        self._save_watch(conn, check, watch)

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
            if self._watches is None:  # else loaded by sync_config and kept in step since
                self._load_watches(conn)
            have = set(self._watches or ())
            now = self.clock()
            for check_id in self.store.check_ids():
                check = self.store.check_by_id(check_id)
                if check is not None and check_id not in have:
                    self._on_check_changed(conn, check, now)

        await self.store.writer.submit(op)

    # --- deadlines ---------------------------------------------------------------------------------------

    def _evaluate(self, conn: sqlite3.Connection, check_ids: list[int], now: datetime) -> int:
        alerts = 0
        self._logged = 0
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
            total += await self.store.writer.submit(partial(self._evaluate, check_ids=ids, now=now))
            if len(ids) < DUE_BATCH:
                break
        if total:
            self.on_alerts()
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
