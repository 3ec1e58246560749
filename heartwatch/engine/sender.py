"""The alert sender: delivers the outbox (`deliveries`) through Apprise, retrying with backoff.

Each delivery is one alert to one target. The sender claims due rows in memory (one process, one sender) and
files them by target; a fixed pool of workers takes turns among the targets that have deliveries waiting. A
worker hands Apprise one delivery at a time while its target has only a few waiting; when more are waiting at
once (deadlines that fell due together, a target back from an outage) it takes up to DIGEST_MAX of them and
sends them as one message, a digest (counts by kind, the first titles, a link to the status page): 10,000
alerts due in the same second become 10 sends to a target instead of 10,000, which both the services' rate
limits and the people reading them can take. Each delivery keeps its own record all the same: an attempt
row per delivery and attempt, and delivered, retried with backoff, or given up on its own count; a digest that
fails fails for each of its deliveries, which may be grouped differently on their retry.

Claiming never waits for a send. Sends run on worker threads with a timeout, at most `per_target` at once to a
target, so a target that is down or hangs delays only its own deliveries: pings and other targets go on.
When a retry gets through, the target's other deliveries still waiting out their backoff are due at once.
After MAX_ATTEMPTS (about a day of backoff) a delivery is given up, and that too is recorded.

Delivery is at least once: a send that reached the target but whose record did not (a crash, an answer slower
than the timeout) is sent again. So every message carries a stable id, the last line of its body and, where the
target has headers, `X-Heartwatch-Alert-Id`: an alert's is its check's uuid and its own row id, the same on every
attempt; a digest's is derived from the ids of the alerts in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from heartwatch.clock import Clock
from heartwatch.core import alert_text
from heartwatch.engine import notify
from heartwatch.store.outbox import Attempt
from heartwatch.store.sqlite import Store

log = logging.getLogger("heartwatch.engine.sender")

Deliver = Callable[..., Awaitable[list[notify.TargetResult]]]

#: Deliveries claimed per pass of the sender's loop.
_CLAIM_LIMIT = 10_000

#: A target with this many deliveries waiting gets them as digests; with fewer, one message per alert, each
#: with its details (exit status, output tail, link to the run), which a digest leaves to the status page.
DIGEST_FROM = 4
#: Alerts in one digest at most. 10,000 alerts at once make 10 messages, which chat services take from one
#: sender (Telegram about 20 a minute to a group, Discord 30 a minute to a channel, Slack about one a second,
#: ntfy.sh a burst of 60): 100 messages would be partly refused there and retried for minutes. It also keeps
#: the record of one send (an update and an attempt row per alert) a short transaction for the writer.
DIGEST_MAX = 1000


class _Due(NamedTuple):
    id: int
    target: str
    attempts: int
    kind: str
    title: str
    body: str
    claimed_at: float
    alert_id: str  # stable across attempts: the check's uuid and the alert's row id


_NOTIFY_TYPE: dict[str, notify.AlertKind] = {"recovered": "success", "too_fast": "warning", "reminder": "warning"}
_SEVERITY: dict[notify.AlertKind, int] = {"success": 0, "info": 1, "warning": 2, "failure": 3}


def _notify_type(kind: str) -> notify.AlertKind:
    return _NOTIFY_TYPE.get(kind, "failure")


def _message(batch: Sequence[_Due], status_url: str | None) -> tuple[str, str, notify.AlertKind, str]:
    """Title, body, Apprise notify type and id of one send: the alert's own, or for several a digest, typed as
    its most severe alert. The body ends with the id."""
    if len(batch) == 1:
        due = batch[0]
        return due.title, f"{due.body}\n\nAlert id: {due.alert_id}", _notify_type(due.kind), due.alert_id
    kind = max((_notify_type(due.kind) for due in batch), key=_SEVERITY.__getitem__)
    digest_id = "digest-" + hashlib.sha256(",".join(sorted(due.alert_id for due in batch)).encode()).hexdigest()[:32]
    body = alert_text.digest_body([due.title for due in batch], status_url)
    return alert_text.digest_title([due.kind for due in batch]), f"{body}\n\nDigest id: {digest_id}", kind, digest_id


class Sender:
    def __init__(self, store: Store, clock: Clock, deliver: Deliver = notify.deliver_async,
                 concurrency: int = notify.PARALLEL_SENDS, timeout: float = notify.DEFAULT_TIMEOUT,
                 retry_first: timedelta = notify.FIRST_RETRY, status_url: str | None = None,
                 digest_from: int = DIGEST_FROM, digest_max: int = DIGEST_MAX, per_target: int | None = None) -> None:
        self.store, self.clock, self.deliver = store, clock, deliver
        self.timeout, self.retry_first = timeout, retry_first
        self.concurrency = concurrency
        #: Where a digest sends its reader for the alerts it does not list (the status page), if anywhere.
        self.status_url = status_url
        self.digest_from, self.digest_max = max(2, digest_from), max(1, digest_max)
        # Half the workers at most for one target: a target that hangs leaves the others room.
        self.per_target = per_target or max(1, concurrency // 2)
        # Claimed deliveries not yet taken by a worker, by target, in the order they fell due.
        self._waiting: dict[str, deque[_Due]] = {}
        # Targets in line for a worker (each at most once), and the sends under way per target.
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._sending: Counter[str] = Counter()
        self._workers: list[asyncio.Task[None]] = []
        # Claimed deliveries (waiting or being sent) -> done once the attempt is recorded.
        self._in_flight: dict[int, asyncio.Future[None]] = {}
        # Recorded since the current claim began: the claim's read may predate the record and see them due.
        self._finished: set[int] = set()
        self._capped = False  # the last claim hit _CLAIM_LIMIT: more are due
        self._claimed_until = 0.0  # every delivery due by then is claimed (unless capped)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: The longest sleep between claims: on a database other processes write (PostgreSQL), alerts their
        #: pings wrote are found within 2 s.
        self.max_sleep = 2.0 if store.shared else 60.0
        #: When the last pass ended (Unix time), for the heartbeat.
        self.last_pass: float | None = None
        self.handed_off = 0  # deliveries given to Apprise, for benchmarks
        self.sends = 0  # Apprise calls (a digest is one), for benchmarks
        #: (delivery id, claimed at, handed to Apprise at), as Unix times, of the latest deliveries; the
        #: deliveries of a digest share the moment its send began. bench/scale.py measures alert latency from
        #: these. Bounded: a few MB at most.
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
        rows = await self.store.claim_deliveries(now, horizon, _CLAIM_LIMIT)
        self._capped = len(rows) == _CLAIM_LIMIT
        self._claimed_until = now.timestamp()
        loop = asyncio.get_running_loop()
        claimed_at = now.timestamp()
        targets: dict[str, None] = {}
        started = 0
        for row in rows:
            if row[0] in self._in_flight or row[0] in self._finished:
                continue
            self._in_flight[row[0]] = loop.create_future()
            self._waiting.setdefault(row[1], deque()).append(
                _Due(row[0], row[1], row[2], row[3], row[4], row[5], claimed_at, row[6]))
            targets[row[1]] = None
            started += 1
        for target in targets:
            self._offer(target)
        while targets and len(self._workers) < self.concurrency:
            self._workers.append(asyncio.create_task(self._work(), name="heartwatch-sender-worker"))
        return started

    async def drain(self) -> None:
        """Wait until every claimed delivery has been attempted and recorded (tests and shutdown)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight.values()), return_exceptions=True)

    def _offer(self, target: str) -> None:
        """Put `target` in line for a worker if it has deliveries waiting and room for another send."""
        if target in self._waiting and target not in self._queued and self._sending[target] < self.per_target:
            self._queued.add(target)
            self._ready.put_nowait(target)

    def _take(self, target: str) -> list[_Due]:
        """The next send to `target`: one delivery while a few wait; from `digest_from` waiting on, a digest
        of up to `digest_max`, the waiting ones split evenly (2,500 -> 834 + 833 + 833, not 1,000 + 1,000 + 500)."""
        self._queued.discard(target)
        waiting = self._waiting.get(target)
        if not waiting:
            return []
        n = len(waiting)
        size = 1 if n < self.digest_from else -(-n // -(-n // self.digest_max))
        batch = [waiting.popleft() for _ in range(size)]
        if not waiting:
            del self._waiting[target]
        self._sending[target] += 1
        self._offer(target)  # the rest may go to another worker meanwhile
        return batch

    async def _work(self) -> None:
        while True:
            target = await self._ready.get()
            batch = self._take(target)
            if not batch:
                continue
            try:
                try:
                    ok, error = await self._send(target, batch)
                finally:
                    # The target's next send need not wait for this one's record.
                    self._sending[target] -= 1
                    if self._sending[target] <= 0:
                        del self._sending[target]
                    self._offer(target)
                await self._record(target, batch, ok, error)
            except Exception:
                log.exception("could not record a delivery attempt")
            finally:
                for due in batch:
                    self._finished.add(due.id)
                    done = self._in_flight.pop(due.id, None)
                    if done is not None and not done.done():
                        done.set_result(None)

    async def _send(self, target: str, batch: list[_Due]) -> tuple[bool, str | None]:
        """Hand `batch` to Apprise as one message; whether it arrived, and if not, why."""
        title, body, kind, alert_id = _message(batch, self.status_url)
        self.sends += 1
        self.handed_off += len(batch)
        handed_at = self.clock().timestamp()
        self.handoff_log.extend((due.id, due.claimed_at, handed_at) for due in batch)
        try:
            results: Sequence[notify.TargetResult] = await self.deliver(
                [target], title, body, kind=kind, timeout=self.timeout, alert_id=alert_id)
            return results[0].ok, results[0].error
        except Exception as e:  # whatever goes wrong here is this send's error, not the sender's end
            return False, f"{type(e).__name__}: {e}".replace(target, notify.redact(target))

    async def _record(self, target: str, batch: list[_Due], ok: bool, error: str | None) -> None:
        """One attempt for each delivery of the send, each on its own count, in one transaction."""
        now = self.clock()
        at = now.timestamp()
        rows: list[Attempt] = []
        retries: list[float] = []
        given_up = 0
        for due in batch:
            attempt = due.attempts + 1
            if ok:
                rows.append(Attempt(due.id, attempt, None, at, None, None))
            elif attempt >= notify.MAX_ATTEMPTS:
                rows.append(Attempt(due.id, attempt, None, None, at, error))
                given_up += 1
            else:
                retry = (now + notify.backoff(attempt, self.retry_first)).timestamp()
                rows.append(Attempt(due.id, attempt, retry, None, None, error))
                retries.append(retry)
        if not ok:
            self._log_failure(target, batch, given_up, retries, error)

        # A retry that got through: the target is back, so its other deliveries waiting out a backoff (up to an
        # hour each, planned apart) are due now, and go together, rather than trickling in over the next hour.
        back = ok and any(due.attempts for due in batch)
        # A digest's record (two rows per alert, up to DIGEST_MAX) goes to the writer thread, off the event loop.
        if await self.store.record_attempts(rows, at, ok, error, target if back else None) or not ok:
            self.wake()  # re-plan the sleep: these rows' next attempt may be the earliest

    def _log_failure(self, target: str, batch: list[_Due], given_up: int, retries: list[float],
                     error: str | None) -> None:
        if len(batch) == 1:
            [due] = batch
            if given_up:
                log.error("alert delivery %d given up after %d attempts: %s", due.id, due.attempts + 1, error)
            else:
                log.warning("alert delivery %d failed (attempt %d), retrying at %s: %s", due.id, due.attempts + 1,
                            _iso(retries[0]), error)
            return
        where = notify.redact(target)
        if given_up:
            log.error("%d alert deliveries to %s given up after %d attempts: %s", given_up, where,
                      notify.MAX_ATTEMPTS, error)
        if retries:
            log.warning("a digest of %d alerts to %s failed; %d deliveries retrying from %s: %s", len(batch), where,
                        len(retries), _iso(min(retries)), error)

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
        self._waiting.clear()
        self._queued.clear()
        self._sending.clear()
        self._ready = asyncio.Queue()

    async def _loop(self) -> None:
        while True:
            timeout: float | None
            try:
                self._wake.clear()
                await self.send_due()
                # Everything due by the claim has been claimed, unless the claim hit its limit (then claim
                # more soon). A claimed row gets its next attempt time when it is recorded, which wakes us.
                nxt = await self.store.next_delivery_after(self._claimed_until)
                now = self.last_pass = self.clock().timestamp()
                timeout = 0.05 if self._capped else None if nxt is None else max(0.05, nxt - now)
            except Exception:
                log.exception("sender pass failed; retrying in 5 s")
                timeout = 5.0
            with contextlib.suppress(TimeoutError):
                cap = self.max_sleep
                await asyncio.wait_for(self._wake.wait(), min(timeout, cap) if timeout is not None else cap)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
