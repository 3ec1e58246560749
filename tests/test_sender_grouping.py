"""Digests: many alerts ready at once for one target go as one message, and each delivery keeps its own record.

The Sender on a real Store with the fake clock of test_scheduler.py, sending through Apprise to real receivers
on loopback; the digest's words (heartwatch.core.alert_text) on their own at the end.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from support.receivers import HttpReceiver
from test_scheduler import HOUR, T0, World, alert_world

from heartwatch.core import alert_text
from heartwatch.core.model import PingKind
from heartwatch.engine import notify
from heartwatch.engine.sender import DIGEST_FROM, Sender


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.stop()


def counted(title: str) -> int:
    """The number of alerts a digest's title says it holds."""
    match = re.fullmatch(r"heartwatch: (\d+) alerts \(.+\)", title)
    assert match, title
    return int(match[1])


def listed(message: str) -> list[str]:
    """The alert titles a digest's body lists."""
    return [line for line in message.splitlines() if line.startswith("DOWN ")]


async def all_delivered_once(w: World) -> None:
    deliveries = await w.deliveries()
    assert all(d["delivered_at"] is not None and d["next_attempt_at"] is None for d in deliveries)
    attempts = await w.attempts()
    assert sorted(delivery for delivery, ok, _ in attempts if ok) == [d["id"] for d in deliveries]


async def test_250_alerts_at_once_go_as_three_digests_and_each_delivery_is_recorded(
        tmp_path: Path, receiver: HttpReceiver) -> None:
    w = await alert_world(tmp_path, (receiver.url(),), alerts=250)
    try:
        sender = Sender(w.store, w.clock, timeout=5, status_url="http://hw.test/", digest_max=100)
        assert await sender.send_due() == 250
        await sender.drain()

        assert len(receiver.received) == 3 and sender.sends == 3
        titles = receiver.titles()
        assert sorted(counted(t) for t in titles) == [83, 83, 84]  # split evenly, not 100 + 100 + 50
        assert all(re.fullmatch(r"heartwatch: \d+ alerts \(\d+ failed\)", t) for t in titles)
        for _, payload in receiver.received:
            assert payload["type"] == "failure"
            lines = payload["message"].splitlines()
            assert len(listed(payload["message"])) == alert_text.DIGEST_LISTED
            assert f"... and {counted(payload['title']) - alert_text.DIGEST_LISTED} more" in lines
            assert lines[-1] == "Status page: http://hw.test/"
        first = [listed(m)[0] for m in (p["message"] for _, p in receiver.received)]
        assert len(set(first)) == 3  # three different slices of the outbox

        await all_delivered_once(w)
        assert len(await w.attempts()) == 250
        assert sorted(e[0] for e in sender.handoff_log) == [d["id"] for d in await w.deliveries()]
        w.clock.advance(HOUR)
        assert await sender.send_due() == 0
        assert len(receiver.received) == 3
    finally:
        await w.store.close()


async def test_every_alert_is_listed_in_exactly_one_digest(tmp_path: Path, receiver: HttpReceiver) -> None:
    w = await alert_world(tmp_path, (receiver.url(),), alerts=30)
    try:
        sender = Sender(w.store, w.clock, timeout=5, digest_max=10)
        assert await sender.send_due() == 30
        await sender.drain()
        assert [counted(t) for t in receiver.titles()] == [10, 10, 10]
        names = [title for _, p in receiver.received for title in listed(p["message"])]
        assert sorted(names) == sorted(t for _, _, t in await w.alerts())  # all 30, none twice
        await all_delivered_once(w)
    finally:
        await w.store.close()


async def test_a_few_alerts_at_once_are_still_sent_one_by_one(tmp_path: Path, receiver: HttpReceiver) -> None:
    w = await alert_world(tmp_path, (receiver.url(),), alerts=DIGEST_FROM - 1)
    try:
        sender = Sender(w.store, w.clock, timeout=5, status_url="http://hw.test/")
        assert await sender.send_due() == DIGEST_FROM - 1
        await sender.drain()
        assert sorted(receiver.titles()) == sorted(t for _, _, t in await w.alerts())
        bodies = {p["title"]: p["message"] for _, p in receiver.received}
        assert "Exit status: 1" in bodies["DOWN job0: failed with exit status 1"]  # the alert's own body
        await all_delivered_once(w)
    finally:
        await w.store.close()


async def test_a_refused_digest_backs_off_for_each_delivery_and_arrives_once(tmp_path: Path) -> None:
    down = HttpReceiver()  # not started: the port refuses connections
    w = await alert_world(tmp_path, (down.url(),), alerts=10)
    try:
        sender = Sender(w.store, w.clock, timeout=5)
        assert await sender.send_due() == 10
        await sender.drain()
        assert sender.sends == 1
        for d in await w.deliveries():
            assert d["attempts"] == 1 and d["delivered_at"] is None
            assert d["next_attempt_at"] == (T0 + notify.backoff(1)).timestamp()
            assert d["last_error"] and "connection" in d["last_error"].lower()
        attempts = await w.attempts()
        assert sorted(d for d, _, _ in attempts) == [d["id"] for d in await w.deliveries()]
        assert all(ok == 0 and error for _, ok, error in attempts)

        w.clock.advance(notify.backoff(1) - timedelta(seconds=1))
        assert await sender.send_due() == 0  # not yet
        down.start()
        try:
            w.clock.advance(timedelta(seconds=1))
            assert await sender.send_due() == 10
            await sender.drain()
            [(_, payload)] = down.received
            assert sorted(listed(payload["message"])) == sorted(t for _, _, t in await w.alerts())
            w.clock.advance(HOUR)
            assert await sender.send_due() == 0
            assert len(down.received) == 1
        finally:
            down.stop()
        assert [d["attempts"] for d in await w.deliveries()] == [2] * 10
        assert sorted(ok for _, ok, _ in await w.attempts()) == [0] * 10 + [1] * 10
        await all_delivered_once(w)
    finally:
        await w.store.close()


async def test_targets_are_grouped_independently_and_a_down_one_delays_only_its_own(
        tmp_path: Path, receiver: HttpReceiver) -> None:
    other = HttpReceiver().start()
    down = HttpReceiver()  # refuses
    w = await alert_world(tmp_path, (receiver.url("a"), other.url("b"), down.url("c")), alerts=6)
    try:
        sender = Sender(w.store, w.clock, timeout=5)
        assert await sender.send_due() == 18
        await sender.drain()
        titles = sorted(t for _, _, t in await w.alerts())
        for r in (receiver, other):
            [(_, payload)] = r.received
            assert payload["title"] == "heartwatch: 6 alerts (6 failed)"
            assert sorted(listed(payload["message"])) == titles
        by_target: dict[str, list[tuple[int, float | None]]] = {}
        for d in await w.deliveries():
            by_target.setdefault(d["target"], []).append((d["attempts"], d["delivered_at"]))
        assert by_target[receiver.url("a")] == by_target[other.url("b")] == [(1, T0.timestamp())] * 6
        assert by_target[down.url("c")] == [(1, None)] * 6
    finally:
        other.stop()
        await w.store.close()


async def test_a_digest_counts_attempts_per_delivery_and_gives_up_each_on_its_own(tmp_path: Path) -> None:
    down = HttpReceiver()  # refuses
    w = await alert_world(tmp_path, (down.url(),), alerts=5)
    try:
        old = [d["id"] for d in await w.deliveries()][:3]  # these three have been failing for about a day
        await w.store.writer.submit(lambda conn: conn.executemany(
            "UPDATE deliveries SET attempts = ? WHERE id = ?", [(notify.MAX_ATTEMPTS - 1, i) for i in old]))
        sender = Sender(w.store, w.clock, timeout=5)
        assert await sender.send_due() == 5
        await sender.drain()
        assert sender.sends == 1  # one digest for all five
        for d in await w.deliveries():
            if d["id"] in old:
                assert (d["attempts"], d["gave_up_at"], d["next_attempt_at"]) == (
                    notify.MAX_ATTEMPTS, T0.timestamp(), None)
            else:
                assert (d["attempts"], d["gave_up_at"], d["next_attempt_at"]) == (
                    1, None, (T0 + notify.backoff(1)).timestamp())
        w.clock.advance(notify.backoff(1))
        down.start()
        try:
            assert await sender.send_due() == 2  # the given-up ones stay given up
            await sender.drain()
            assert len(down.received) == 2 and sender.sends == 3  # two left: now each its own message
        finally:
            down.stop()
    finally:
        await w.store.close()


async def test_a_target_back_from_an_outage_gets_its_other_waiting_alerts_at_once(tmp_path: Path) -> None:
    down = HttpReceiver()  # refuses
    w = await alert_world(tmp_path, (down.url(),), alerts=6)
    try:
        sender = Sender(w.store, w.clock, timeout=5)
        assert await sender.send_due() == 6
        await sender.drain()
        _, *rest = [d["id"] for d in await w.deliveries()]
        # The others have been failing for longer (as if written earlier): their next retry is an hour away.
        await w.store.writer.submit(lambda conn: conn.executemany(
            "UPDATE deliveries SET attempts = 9, next_attempt_at = ? WHERE id = ?",
            [((T0 + HOUR).timestamp(), i) for i in rest]))
        down.start()
        try:
            w.clock.advance(notify.backoff(1))
            assert await sender.send_due() == 1
            await sender.drain()
            assert down.titles() == ["DOWN job0: failed with exit status 1"]
            assert await sender.send_due() == 5  # the target is back: no waiting out the hour
            await sender.drain()
            assert [counted(t) for t in down.titles()[1:]] == [5]
        finally:
            down.stop()
        assert all(d["delivered_at"] == w.clock.now.timestamp() for d in await w.deliveries())
        assert [d["attempts"] for d in await w.deliveries()] == [2] + [10] * 5
    finally:
        await w.store.close()


async def test_a_digest_is_typed_as_its_worst_alert(tmp_path: Path, receiver: HttpReceiver) -> None:
    w = await alert_world(tmp_path, (receiver.url(),), alerts=4)
    try:
        sender = Sender(w.store, w.clock, timeout=5)
        for i in range(4):
            await w.ping(f"job{i}", PingKind.SUCCESS, exit_code=0)  # each check recovers: 4 failed, 4 recovered
        assert await sender.send_due() == 8
        await sender.drain()
        [(_, mixed)] = receiver.received
        assert (mixed["title"], mixed["type"]) == ("heartwatch: 8 alerts (4 failed, 4 recovered)", "failure")

        w.clock.advance(timedelta(minutes=1))
        for i in range(4):
            await w.ping(f"job{i}", PingKind.FAIL, exit_code=1)
            w.clock.advance(timedelta(seconds=1))
            await w.ping(f"job{i}", PingKind.SUCCESS, exit_code=0)
        await w.store.writer.submit(lambda conn: conn.execute(  # only the recoveries are due yet
            "UPDATE deliveries SET next_attempt_at = next_attempt_at + 3600 WHERE alert_id IN"
            " (SELECT id FROM alerts WHERE kind = 'failed') AND delivered_at IS NULL"))
        assert await sender.send_due() == 4
        await sender.drain()
        assert (receiver.received[1][1]["title"], receiver.received[1][1]["type"]) == (
            "heartwatch: 4 alerts (4 recovered)", "success")
    finally:
        await w.store.close()


async def test_a_target_with_many_sends_leaves_workers_for_the_others(tmp_path: Path, receiver: HttpReceiver) -> None:
    """`per_target`: a hanging target with several digests under way cannot take every worker."""
    stuck = "json://127.0.0.1:9/stuck"
    w = await alert_world(tmp_path, (stuck, receiver.url()), alerts=8)
    release = asyncio.Event()

    async def deliver(urls: list[str], title: str, body: str, **kw: object) -> list[notify.TargetResult]:
        if urls == [stuck]:
            await release.wait()  # a target that does not answer
            return [notify.TargetResult(notify.redact(stuck), False, "no answer")]
        return await notify.deliver_async(urls, title, body, **kw)  # type: ignore[arg-type]

    try:
        sender = Sender(w.store, w.clock, deliver=deliver, concurrency=2, digest_max=4, timeout=5)
        assert sender.per_target == 1
        # The stuck target sorts first in the outbox; without the limit both workers would wait on it.
        assert await sender.send_due() == 16

        async def delivered() -> None:
            while len(receiver.received) < 2 or len(await w.attempts()) < 8:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(delivered(), 30)
        assert [counted(t) for t in receiver.titles()] == [4, 4]
        assert all(ok for _, ok, _ in await w.attempts())  # nothing from the stuck target yet
        release.set()
        await sender.drain()
        assert sorted(ok for _, ok, _ in await w.attempts()) == [0] * 8 + [1] * 8
    finally:
        release.set()
        await w.store.close()


# --- the words ---------------------------------------------------------------------------------------------------


def test_a_digest_title_counts_by_kind_worst_first() -> None:
    kinds = ["missed"] * 30 + ["recovered"] * 2 + ["failed"] * 5 + ["reminder"]
    assert alert_text.digest_title(kinds) == "heartwatch: 38 alerts (5 failed, 30 missed, 1 still down, 2 recovered)"
    assert alert_text.digest_title(["timed_out", "too_fast", "new_kind"]) == (
        "heartwatch: 3 alerts (1 timed out, 1 too fast, 1 new kind)")


def test_a_digest_body_lists_the_first_titles_and_counts_the_rest() -> None:
    titles = [f"DOWN c{i}: did not start" for i in range(25)]
    body = alert_text.digest_body(titles, "https://hw.example.org/")
    assert body.splitlines() == [*titles[:20], "... and 5 more", "", "Status page: https://hw.example.org/"]
    assert alert_text.digest_body(titles[:3], None) == "\n".join(titles[:3])
