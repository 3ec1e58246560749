"""The alert sender: delivers the outbox (`deliveries`) through Apprise, retrying with backoff.

Each delivery is one alert to one target. The sender claims due rows in memory (one process, one
sender), hands them to Apprise on worker threads with a timeout, and records every attempt with its
error. A target that is down only delays its own deliveries: pings and other targets go on. After
MAX_ATTEMPTS (about a day of backoff) a delivery is given up, and that too is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from heartwatch import notify
from heartwatch.clock import Clock
from heartwatch.store import Store

log = logging.getLogger("heartwatch.sender")

Deliver = Callable[..., Awaitable[list[notify.TargetResult]]]

_NOTIFY_TYPE = {"recovered": "success", "too_fast": "warning", "reminder": "warning"}


class Sender:
    def __init__(self, store: Store, clock: Clock, deliver: Deliver = notify.deliver_async,
                 concurrency: int = 32, timeout: float = notify.DEFAULT_TIMEOUT,
                 retry_first: timedelta = notify.FIRST_RETRY) -> None:
        self.store, self.clock, self.deliver = store, clock, deliver
        self.timeout, self.retry_first = timeout, retry_first
        self._limit = asyncio.Semaphore(concurrency)
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.handed_off = 0  # deliveries given to Apprise, for benchmarks

    def wake(self) -> None:
        self._wake.set()

    async def send_due(self) -> int:
        """Start delivering every due delivery not already under way; returns how many were started."""
        now = self.clock()
        rows = await self.store.fetchall(
            "SELECT d.id, d.target, d.attempts, a.kind, a.title, a.body FROM deliveries d"
            " JOIN alerts a ON a.id = d.alert_id WHERE d.next_attempt_at <= ? ORDER BY d.next_attempt_at LIMIT 10000",
            (now.timestamp(),))
        started = 0
        for row in rows:
            if row[0] in self._in_flight:
                continue
            self._in_flight[row[0]] = asyncio.create_task(self._attempt(*row))
            started += 1
        return started

    async def drain(self) -> None:
        """Wait for every delivery under way (tests and shutdown)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight.values()), return_exceptions=True)

    async def _attempt(self, delivery_id: int, target: str, attempts: int, kind: str, title: str, body: str) -> None:
        try:
            async with self._limit:
                self.handed_off += 1
                try:
                    results: Sequence[notify.TargetResult] = await self.deliver(
                        [target], title, body, kind=_NOTIFY_TYPE.get(kind, "failure"), timeout=self.timeout)
                    ok, error = results[0].ok, results[0].error
                except Exception as e:  # whatever goes wrong here is this delivery's error, not the sender's end
                    ok, error = False, f"{type(e).__name__}: {e}"
            await self._record(delivery_id, attempts + 1, ok, error)
        except Exception:
            log.exception("could not record a delivery attempt")
        finally:
            self._in_flight.pop(delivery_id, None)

    async def _record(self, delivery_id: int, attempt: int, ok: bool, error: str | None) -> None:
        now = self.clock()
        at = now.timestamp()
        if ok:
            fields: dict[str, Any] = {"delivered_at": at, "next_attempt_at": None, "last_error": None}
        elif attempt >= notify.MAX_ATTEMPTS:
            fields = {"gave_up_at": at, "next_attempt_at": None, "last_error": error}
            log.error("alert delivery %d given up after %d attempts: %s", delivery_id, attempt, error)
        else:
            retry = now + notify.backoff(attempt, self.retry_first)
            fields = {"next_attempt_at": retry.timestamp(), "last_error": error}
            log.warning("alert delivery %d failed (attempt %d), retrying at %s: %s",
                        delivery_id, attempt, retry.isoformat(timespec="seconds"), error)

        def op(conn: sqlite3.Connection) -> None:
            sets = ", ".join(f"{k} = ?" for k in fields)
            conn.execute(f"UPDATE deliveries SET attempts = ?, {sets} WHERE id = ?",
                         (attempt, *fields.values(), delivery_id))
            conn.execute("INSERT INTO delivery_attempts (delivery_id, at, ok, error) VALUES (?, ?, ?, ?)",
                         (delivery_id, at, int(ok), error))

        await self.store.writer.submit(op)
        if not ok:
            self.wake()  # re-plan the sleep: this row's next attempt may be the earliest

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="heartwatch-sender")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._in_flight.values()):
            task.cancel()  # an unfinished attempt stays due and is retried at the next start
        with contextlib.suppress(Exception):
            await asyncio.gather(*list(self._in_flight.values()), return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            timeout: float | None
            try:
                self._wake.clear()
                await self.send_due()
                rows = await self.store.fetchall(
                    "SELECT MIN(next_attempt_at) FROM deliveries WHERE next_attempt_at IS NOT NULL"
                    + (f" AND id NOT IN ({','.join(map(str, self._in_flight))})" if self._in_flight else ""))
                nxt = rows[0][0] if rows else None
                timeout = None if nxt is None else max(0.05, nxt - self.clock().timestamp())
            except Exception:
                log.exception("sender pass failed; retrying in 5 s")
                timeout = 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(timeout, 60.0) if timeout is not None else 60.0)
