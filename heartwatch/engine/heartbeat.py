"""Who watches the watcher: `[server] heartbeat_url`, pinged every minute by the process running the scheduler.

A monitor that dies or hangs says nothing, so its silence has to be noticed by something else: another
heartwatch, Healthchecks, an Uptime Kuma push monitor. The leader (engine/leader.py; on SQLite, the one process)
pings the URL every HEARTBEAT_EVERY seconds with a line saying how the scheduler and the outbox are doing. When
something here is stuck it sends a failure instead, with the reason:

- the scheduler or the sender has made no pass for STUCK_AFTER (each makes one at least every minute, idle or
  not: engine/scheduler.py, engine/sender.py);
- the outbox backlog grows: more deliveries have been due for over STUCK_AFTER than at the previous beat.

A failure is the URL with `/fail` added to its path (heartwatch's and Healthchecks' ping protocol); an Uptime
Kuma push URL (`status=up` in its query) gets `status=down` and the reason as `msg`. What the outside monitor
does with silence (the process, its host or its network gone) is its own deadline, as for any job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from heartwatch.clock import Clock
from heartwatch.store.sqlite import Store

log = logging.getLogger("heartwatch.engine.heartbeat")

#: Seconds between two heartbeats.
HEARTBEAT_EVERY = 60.0
#: Seconds without a pass (or with deliveries due) after which a part counts as stuck.
STUCK_AFTER = 120.0
#: A heartbeat that takes longer is abandoned (and logged): the next one comes a minute later anyway.
SEND_TIMEOUT = 10.0


@dataclass(frozen=True)
class Health:
    scheduler_pass: float | None  # when each last finished a pass (Unix time); None: not yet
    sender_pass: float | None
    backlog: int  # deliveries due for more than STUCK_AFTER


def verdict(now: float, leading_since: float, health: Health, previous_backlog: int) -> str | None:
    """None when all is well; else why not, in one line. Pure: the times are passed in."""
    reasons = []
    for part, last in (("scheduler", health.scheduler_pass), ("sender", health.sender_pass)):
        quiet = now - (last if last is not None else leading_since)
        if quiet > STUCK_AFTER:
            reasons.append(f"the {part} has made no pass for {int(quiet)} s")
    if health.backlog > 0 and health.backlog > previous_backlog:
        reasons.append(f"the outbox backlog is growing: {health.backlog} alert deliveries due for over"
                       f" {int(STUCK_AFTER)} s (was {previous_backlog})")
    return "; ".join(reasons) or None


def summary(now: float, health: Health) -> str:
    """The body of a good heartbeat."""
    def ago(t: float | None) -> str:
        return "none yet" if t is None else f"{max(0, int(now - t))} s ago"

    return (f"ok: scheduler pass {ago(health.scheduler_pass)}, sender pass {ago(health.sender_pass)},"
            f" {health.backlog} deliveries overdue")


def beat_request(url: str, failure: str | None) -> tuple[str, bytes]:
    """The URL and body of one heartbeat: the URL itself for a good one; for a failure, `/fail` added to its
    path, or an Uptime Kuma push URL's `status=up` turned to `status=down` with the reason as `msg`."""
    if failure is None:
        return url, b""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "status" for k, _ in query):
        query = [(k, "down" if k == "status" else v) for k, v in query if k != "msg"] + [("msg", failure)]
        return urlunsplit(parts._replace(query=urlencode(query))), failure.encode()
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail")), failure.encode()


class Heartbeat:
    def __init__(self, url: str, store: Store, clock: Clock, scheduler_pass: Callable[[], float | None],
                 sender_pass: Callable[[], float | None], every: float = HEARTBEAT_EVERY,
                 name: str = "heartwatch") -> None:
        self.url, self.store, self.clock = url, store, clock
        self._scheduler_pass, self._sender_pass = scheduler_pass, sender_pass
        self.every, self.name = every, name
        self._since = clock().timestamp()
        self._backlog = 0
        self._task: asyncio.Task[None] | None = None
        self.sent = 0  # heartbeats answered 2xx, for tests

    async def health(self) -> Health:
        now = self.clock().timestamp()
        return Health(self._scheduler_pass(), self._sender_pass(),
                      await self.store.deliveries_due_before(now - STUCK_AFTER))

    async def beat(self) -> str | None:
        """Look, then ping: returns the failure reason sent, or None for a good heartbeat."""
        now = self.clock().timestamp()
        health = await self.health()
        failure = verdict(now, self._since, health, self._backlog)
        self._backlog = health.backlog
        url, body = beat_request(self.url, failure)
        if failure is None:
            body = f"{summary(now, health)} ({self.name})".encode()
        else:
            log.error("heartbeat: reporting a failure to the heartbeat URL: %s", failure)
        import httpx  # here, so a server without a heartbeat_url never loads it (3 MB of RSS, rich and pygments)

        try:
            async with httpx.AsyncClient(timeout=SEND_TIMEOUT) as client:
                r = await client.post(url, content=body, headers={"User-Agent": "heartwatch-heartbeat"})
            if r.status_code >= 300:
                log.warning("heartbeat: the heartbeat URL answered %d", r.status_code)
            else:
                self.sent += 1
        except httpx.HTTPError as e:
            log.warning("heartbeat: could not reach the heartbeat URL: %s", type(e).__name__)
        return failure

    def start(self) -> None:
        self._since = self.clock().timestamp()
        self._task = asyncio.create_task(self._loop(), name="heartwatch-heartbeat")

    async def _loop(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception:  # the watcher's watcher must not stop for one bad look
                log.exception("heartbeat failed; trying again at the next one")
            await asyncio.sleep(self.every)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
