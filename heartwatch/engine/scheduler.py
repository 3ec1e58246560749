"""The scheduler: wakes exactly when a check's deadline falls due, and has the store evaluate it.

Deadlines live in an indexed column, written by the store in the same transaction as the ping or change
that moved them (heartwatch.store.watches); the decisions are heartwatch.core.watching's. This loop only
waits: it sleeps until the earliest deadline, or until a ping or config change moves one earlier; there is
no periodic scan. After a restart, every deadline that passed while heartwatch was down is already due and
is evaluated once.

A clock stepped back (NTP, a VM restored) is noticed here: every check's next expectation is recomputed
from the new now, instead of waiting days for the clock to catch up with expectations made before the step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from heartwatch.clock import Clock
from heartwatch.config import Settings
from heartwatch.store.outbox import AlertPolicy
from heartwatch.store.sqlite import DUE_BATCH, PingResult, Store

log = logging.getLogger("heartwatch.engine.scheduler")

#: A clock reading this much earlier than the previous one is a step back, not jitter.
CLOCK_STEP_BACK = timedelta(seconds=2)


class Scheduler:
    def __init__(self, settings: Settings, store: Store, clock: Clock,
                 on_alerts: Callable[[], None] | None = None) -> None:
        self.settings, self.store, self.clock = settings, store, clock
        self.on_alerts = on_alerts or (lambda: None)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sleep_until: float | None = None
        self._last_now: datetime | None = None
        #: The longest sleep between passes. 60 s notices a wall-clock jump; a database other processes write
        #: (PostgreSQL) is looked at every 2 s, as their pings move deadlines this process is not told about.
        self.max_sleep = 2.0 if store.shared else 60.0
        #: When the last pass ended (Unix time), for the heartbeat: a scheduler that makes none is stuck.
        self.last_pass: float | None = None
        self.apply_settings(settings)

    def apply_settings(self, settings: Settings) -> None:
        """Take new [alerts] settings (start-up, SIGHUP): alerts written from now on follow them."""
        self.settings = settings
        # The store writes the alerts its decisions make: where they go and how often they remind.
        self.store.policy = AlertPolicy(settings.remind_every, settings.alert_urls, settings.public_url)

    async def prepare(self) -> None:
        """Give every check without a watch (created before deadlines existed) a fresh expectation."""
        await self.store.prepare_watches(self.clock())

    async def run_due(self, now: datetime | None = None) -> int:
        """Evaluate every check whose deadline has passed by `now`; returns the number of alerts written."""
        now = now or self.clock()
        await self._notice_step_back(now)
        total = 0
        while True:
            ids = await self.store.due_checks(now, DUE_BATCH)
            if not ids:
                break
            written = await self.store.evaluate(ids, now)
            if written:
                self.on_alerts()  # per batch: the sender starts on these while the next batch is evaluated
            total += written
            if len(ids) < DUE_BATCH:
                break
        return total

    async def _notice_step_back(self, now: datetime) -> None:
        last, self._last_now = self._last_now, now
        if last is not None and now < last - CLOCK_STEP_BACK:
            log.warning("the clock stepped back by %s (from %s to %s): expecting every check afresh from now",
                        last - now, last.isoformat(timespec="seconds"), now.isoformat(timespec="seconds"))
            await self.store.rebase_expectations(now)

    # --- the loop ------------------------------------------------------------------------------------------

    def ping_listener(self, result: PingResult) -> None:
        """After a ping is committed: wake the loop if it moved a deadline earlier, the sender if it alerted."""
        if result.alerts:
            self.on_alerts()
        earliest = result.earliest_deadline
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
                await self.run_due(self.clock())
                self._sleep_until = await self.store.earliest_deadline()
                self.last_pass = self.clock().timestamp()
                timeout = None if self._sleep_until is None else max(0.0, self._sleep_until - self.last_pass)
            except Exception:  # keep watching: a failed pass (the disk) must not stop every later deadline
                log.exception("scheduler pass failed; retrying in 5 s")
                timeout = 5.0
            with contextlib.suppress(TimeoutError):
                # A long sleep is capped so a wall-clock jump is noticed within a minute (see max_sleep).
                cap = self.max_sleep
                await asyncio.wait_for(self._wake.wait(), min(timeout, cap) if timeout is not None else cap)
