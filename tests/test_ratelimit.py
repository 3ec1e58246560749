"""The optional per-check ping rate limit ([server] rate_limit): 429 with Retry-After past the limit, nothing
stored, recovery in the next minute (an injected clock, no sleeping), and off by default."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from test_web_support import KEY, T0, Clock

from heartwatch.config import Settings, load_settings, parse_check
from heartwatch.store.sqlite import Store
from heartwatch.web.app import create_app
from heartwatch.web.hub import Hub
from heartwatch.web.ratelimit import FixedWindow


class Pinger:
    def __init__(self, hub: Hub, client: httpx.AsyncClient, clock: Clock) -> None:
        self.hub, self.client, self.clock = hub, client, clock

    async def ping(self, slug: str, suffix: str = "") -> httpx.Response:
        return await self.client.post(f"/ping/{KEY}/{slug}{suffix}", content=b"output")

    async def events(self, slug: str) -> int:
        check = await self.hub.store.check(slug)
        assert check is not None
        return len(await self.hub.store.events(check.id, limit=10_000))


async def open_pinger(tmp_path: Path, rate_limit: int) -> Pinger:
    clock = Clock(T0 + timedelta(seconds=10))
    settings = Settings(db=tmp_path / "rl.db", ping_key=KEY, rate_limit=rate_limit)
    store = Store(settings.db)
    await store.open(KEY)
    await store.sync_config({slug: parse_check(slug, {"period": "1h"}) for slug in ("busy", "quiet")}, clock())
    hub = Hub(settings=settings, store=store, clock=clock)
    return Pinger(hub, httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://t"),
                  clock)


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[Pinger]:
    p = await open_pinger(tmp_path, rate_limit=3)
    try:
        yield p
    finally:
        await p.client.aclose()
        await p.hub.store.close()


async def test_over_the_limit_is_429_with_retry_after_and_nothing_stored(limited: Pinger) -> None:
    for _ in range(3):
        assert (await limited.ping("busy")).status_code == 200
    r = await limited.ping("busy", "/fail")
    assert r.status_code == 429
    assert r.text == "rate limited: at most 3 pings per minute"
    assert r.headers["retry-after"] == "50"  # the clock is 10 s into the minute
    assert r.headers["x-content-type-options"] == "nosniff"
    assert await limited.events("busy") == 3
    runs = await limited.hub.store.runs((await limited.hub.store.check("busy")).id)  # type: ignore[union-attr]
    assert all(run.state.value != "failed" for run in runs)  # the refused fail ping changed nothing


async def test_other_checks_are_not_affected(limited: Pinger) -> None:
    for _ in range(5):
        await limited.ping("busy")
    assert (await limited.ping("quiet")).status_code == 200


async def test_recovers_in_the_next_window(limited: Pinger) -> None:
    for _ in range(4):
        await limited.ping("busy")
    assert (await limited.ping("busy")).status_code == 429
    limited.clock.now = T0 + timedelta(seconds=59)
    assert (await limited.ping("busy")).status_code == 429
    limited.clock.now = T0 + timedelta(seconds=60)
    assert (await limited.ping("busy")).status_code == 200
    assert await limited.events("busy") == 4


async def test_clock_stepping_back_does_not_block_for_long(limited: Pinger) -> None:
    for _ in range(4):
        await limited.ping("busy")
    limited.clock.now = T0 - timedelta(hours=1)
    assert (await limited.ping("busy")).status_code == 200


async def test_unknown_urls_are_404_until_limited_and_cost_only_a_window(limited: Pinger) -> None:
    assert (await limited.ping("nope")).status_code == 404
    for i in range(50):
        await limited.client.get(f"/ping/{KEY}/made-up-{i}")
    limiter = limited.client._transport.app.middleware_stack.app.app.flood  # type: ignore[attr-defined]
    assert isinstance(limiter, FixedWindow)
    limited.clock.now = T0 + timedelta(minutes=5)
    await limited.ping("busy")
    assert len(limiter._counts) == 1  # the made-up keys went with their window


async def test_off_by_default(tmp_path: Path) -> None:
    assert Settings().rate_limit == 0
    p = await open_pinger(tmp_path, rate_limit=0)
    try:
        statuses = {(await p.ping("busy")).status_code for _ in range(200)}
        assert statuses == {200}
        assert p.client._transport.app.middleware_stack.app.app.flood is None  # type: ignore[attr-defined]
    finally:
        await p.client.aclose()
        await p.hub.store.close()


def test_rate_limit_is_read_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "heartwatch.toml"
    path.write_text("[server]\nrate_limit = 30\n")
    assert load_settings(path).rate_limit == 30


def test_fixed_window_counts_per_key_and_resets_on_the_minute() -> None:
    window = FixedWindow(2, 60)
    assert window.hit("a", 120.0) == 0 and window.hit("a", 130.0) == 0
    assert window.hit("a", 150.0) == pytest.approx(30.0)
    assert window.retry_after(150.2) == 30
    assert window.hit("b", 150.0) == 0
    assert window.hit("a", 180.0) == 0  # the next minute
    window.forget("a")
    assert window.hit("a", 181.0) == 0 and window.hit("a", 182.0) == 0


def test_fixed_window_rejects_a_zero_limit() -> None:
    with pytest.raises(ValueError):
        FixedWindow(0)
