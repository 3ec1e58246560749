"""Leadership: of the processes sharing a database, the one holding the store's leader lock runs the scheduler,
the sender and the heartbeat; the others answer pings, pages and the API and wait for the lock.

On SQLite the one process always holds it (store.base.SoleLeader). On PostgreSQL (store/postgres.py) the lock
is an advisory lock on a connection of its own: a follower asks for it every LEADER_POLL seconds, so when the
leader dies (its connection closes, or keepalives find it gone) another takes over within a few seconds. The
leader looks at its lock as often, and stops the scheduler, the sender and the heartbeat the moment it cannot
see it held: two leaders never alert at once for longer than one look.

What the new leader owes: deadlines that fell due while nobody led are due in the watches table, evaluated once
at its first pass (each evaluation writes its alerts and moves the deadline in one transaction); deliveries the
dead leader claimed but never recorded are still due in the outbox, and are sent again (at least once; each
carries its stable alert id, see engine/sender.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from heartwatch.store.base import LeaderLock

log = logging.getLogger("heartwatch.engine.leader")

#: Seconds between two looks at the lock: a follower's ask, the leader's check that it still holds it.
LEADER_POLL = 1.0


class Leadership:
    def __init__(self, lock: LeaderLock, lead: Callable[[], Awaitable[None]], follow: Callable[[], Awaitable[None]],
                 every: float = LEADER_POLL) -> None:
        self.lock = lock
        self._lead, self._follow = lead, follow
        self.every = every
        self.leading = False
        #: Who leads, as of the last look (this process's name while it leads); None: nobody, or not known.
        self.known_holder: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.lock.name

    async def step(self) -> None:
        """One look at the lock: take the lead if it is free, give it up if it was lost."""
        if self.leading:
            if not await self.lock.still_held():
                self.leading, self.known_holder = False, None
                log.warning("%s lost the leader's lock: scheduler and sender stopped; waiting to lead again", self.name)
                await self._follow()
        elif await self.lock.acquire():
            self.leading = True
            log.info("%s leads: running the scheduler and the sender", self.name)
            await self._lead()
        self.known_holder = self.name if self.leading else await self.lock.holder()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="heartwatch-leadership")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.step()
            except Exception:  # keep looking: one failed look must not end leadership changes for good
                log.exception("leadership check failed; looking again in %s s", self.every)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.leading:
            self.leading = False
            await self._follow()
        await self.lock.release()
