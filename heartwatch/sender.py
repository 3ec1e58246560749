"""The alert sender: delivers the outbox (`deliveries`) through Apprise, retrying with backoff.

Each delivery is one alert to one target. The sender claims due rows in memory (one process, one
sender) and queues them for a fixed pool of workers; each worker hands one delivery at a time to
Apprise (on a worker thread, with a timeout) and records the attempt with its error. Claiming never
waits for a send, so 10,000 alerts due at once are all queued within moments; how fast they then
leave is Apprise's and the targets' pace, `concurrency` at a time. A target that is down only delays
its own deliveries: pings and other targets go on. After MAX_ATTEMPTS (about a day of backoff) a
delivery is given up, and that too is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from heartwatch import notify
from heartwatch.clock import Clock
from heartwatch.store import Store

log = logging.getLogger("heartwatch.sender")

Deliver = Callable[..., Awaitable[list[notify.TargetResult]]]

#: Deliveries claimed per pass of the sender's loop.
_CLAIM_LIMIT = 10_000


class _Due(NamedTuple):
    id: int
    target: str
    attempts: int
    kind: str
    title: str
    body: str
    claimed_at: float


_NOTIFY_TYPE = {"recovered": "success", "too_fast": "warning", "reminder": "warning"}


class Sender:
    def __init__(self, store: Store, clock: Clock, deliver: Deliver = notify.deliver_async,
                 concurrency: int = notify.PARALLEL_SENDS, timeout: float = notify.DEFAULT_TIMEOUT,
                 retry_first: timedelta = notify.FIRST_RETRY) -> None:
        self.store, self.clock, self.deliver = store, clock, deliver
        self.timeout, self.retry_first = timeout, retry_first
        self.concurrency = concurrency
        self._queue: asyncio.Queue[_Due] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        # Claimed deliveries (queued or being sent) -> done once the attempt is recorded.
        self._in_flight: dict[int, asyncio.Future[None]] = {}
        # Recorded since the current claim began: the claim's read may predate the record and see them due.
        self._finished: set[int] = set()
        self._capped = False  # the last claim hit _CLAIM_LIMIT: more are due
        self._claimed_until = 0.0  # every delivery due by then is claimed (unless capped)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.handed_off = 0  # deliveries given to Apprise, for benchmarks
        #: (delivery id, claimed at, handed to Apprise at), as Unix times, of the latest deliveries:
        #: bench/scale.py measures alert latency from these. Bounded: a few MB at most.
        self.handoff_log: deque[tuple[int, float, float]] = deque(maxlen=100_000)

    def wake(self) -> None:
        self._wake.set()

    async def send_due(self) -> int:
        """Claim every due delivery not already under way for the workers; returns how many were claimed."""
        now = self.clock()
        # No backoff is longer than this; a retry planned further ahead was planned before the clock stepped
        # back (NTP, a VM resumed), and is due now rather than after the clock has made up the jump.
        horizon = now + notify.backoff(notify.MAX_ATTEMPTS, self.retry_first)
        self._finished.clear()
        rows = await self.store.fetchall(
            "SELECT d.id, d.target, d.attempts, a.kind, a.title, a.body FROM deliveries d JOIN alerts a"
            " ON a.id = d.alert_id WHERE d.next_attempt_at <= ? OR d.next_attempt_at > ?"
            " ORDER BY d.next_attempt_at LIMIT ?", (now.timestamp(), horizon.timestamp(), _CLAIM_LIMIT))
        self._capped = len(rows) == _CLAIM_LIMIT
        self._claimed_until = now.timestamp()
        loop = asyncio.get_running_loop()
        claimed_at = now.timestamp()
        started = 0
        for row in rows:
            if row[0] in self._in_flight or row[0] in self._finished:
                continue
            self._in_flight[row[0]] = loop.create_future()
            self._queue.put_nowait(_Due(row[0], row[1], row[2], row[3], row[4], row[5], claimed_at))
            started += 1
        while started and len(self._workers) < self.concurrency:
            self._workers.append(asyncio.create_task(self._work(), name="heartwatch-sender-worker"))
        return started

    async def drain(self) -> None:
        """Wait until every claimed delivery has been attempted and recorded (tests and shutdown)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight.values()), return_exceptions=True)

    async def _work(self) -> None:
        while True:
            due = await self._queue.get()
            try:
                await self._attempt(due)
            finally:
                self._finished.add(due.id)
                done = self._in_flight.pop(due.id, None)
                if done is not None and not done.done():
                    done.set_result(None)

    async def _attempt(self, due: _Due) -> None:
        try:
            self.handed_off += 1
            self.handoff_log.append((due.id, due.claimed_at, self.clock().timestamp()))
            try:
                results: Sequence[notify.TargetResult] = await self.deliver(
                    [due.target], due.title, due.body, kind=_NOTIFY_TYPE.get(due.kind, "failure"),
                    timeout=self.timeout)
                ok, error = results[0].ok, results[0].error
            except Exception as e:  # whatever goes wrong here is this delivery's error, not the sender's end
                ok, error = False, f"{type(e).__name__}: {e}".replace(due.target, notify.redact(due.target))
            await self._record(due.id, due.attempts + 1, ok, error)
        except Exception:
            log.exception("could not record a delivery attempt")

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
        for task in self._workers:
            task.cancel()  # an unfinished attempt stays due and is retried at the next start
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        for done in self._in_flight.values():
            done.cancel()
        self._in_flight.clear()
        self._queue = asyncio.Queue()

    async def _loop(self) -> None:
        while True:
            timeout: float | None
            try:
                self._wake.clear()
                await self.send_due()
                # Everything due by the claim has been claimed, unless the claim hit its limit (then claim
                # more soon). A claimed row gets its next attempt time when it is recorded, which wakes us.
                rows = await self.store.fetchall(
                    "SELECT MIN(next_attempt_at) FROM deliveries WHERE next_attempt_at > ?", (self._claimed_until,))
                nxt = rows[0][0] if rows else None
                now = self.clock().timestamp()
                timeout = 0.05 if self._capped else None if nxt is None else max(0.05, nxt - now)
            except Exception:
                log.exception("sender pass failed; retrying in 5 s")
                timeout = 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(timeout, 60.0) if timeout is not None else 60.0)
