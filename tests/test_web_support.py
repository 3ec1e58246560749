"""Test helpers for the status pages: an in-process app over a real store, a movable clock, parsed HTML."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from bs4 import BeautifulSoup, Tag

from heartwatch.config import Settings, parse_check
from heartwatch.core.model import Run, Watch
from heartwatch.store.codec import WATCH_COLUMNS, watch_values
from heartwatch.store.sqlite import Store, save_run
from heartwatch.web.app import create_app
from heartwatch.web.hub import Hub

KEY = "k3y"
T0 = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Web:
    """The app in-process (httpx over ASGI, same event loop as the store), driven the way users drive it."""

    def __init__(self, hub: Hub, client: httpx.AsyncClient, clock: Clock) -> None:
        self.hub, self.client, self.clock = hub, client, clock

    @classmethod
    async def open(cls, tmp_path: Path) -> Web:
        clock = Clock()
        settings = Settings(db=tmp_path / "web.db", base_url="http://hw.example:8000", ping_key=KEY)
        store = Store(settings.db)
        await store.open(KEY)
        hub = Hub(settings=settings, store=store, clock=clock)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://hw.test")
        return cls(hub, client, clock)

    async def close(self) -> None:
        await self.client.aclose()
        await self.hub.store.close()

    async def config(self, checks: Mapping[str, Mapping[str, Any]]) -> None:
        """Checks as `[checks.<slug>]` tables of heartwatch.toml, parsed by the real config parser."""
        await self.hub.store.sync_config({slug: parse_check(slug, table) for slug, table in checks.items()},
                                         self.clock())

    async def ping(self, slug: str, suffix: str = "", at: datetime | None = None, body: bytes = b"",
                   **params: str) -> None:
        if at is not None:
            self.clock.now = at
        r = await self.client.post(f"/ping/{KEY}/{slug}{suffix}", params=params, content=body)
        assert r.status_code in (200, 201), r.text

    async def get(self, path: str, status: int = 200, **kw: Any) -> httpx.Response:
        r = await self.client.get(path, **kw)
        assert r.status_code == status, (path, r.status_code, r.text[:500])
        return r

    async def page(self, path: str, status: int = 200) -> BeautifulSoup:
        return BeautifulSoup((await self.get(path, status)).text, "html.parser")

    async def sql(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        """Write what another part of heartwatch (the scheduler, the write API) would have written, then have the
        store read its in-memory state again (check index, status index), as after a rollback: the row changed
        behind the writer's back."""
        store = self.hub.store

        def op(conn: Any) -> None:
            conn.execute(sql, params)
            store._load_state(conn)

        await store.writer.call(op)

    async def set_watch(self, slug: str, watch: Watch) -> None:
        check = await self.hub.store.check(slug)
        assert check is not None
        values = watch_values(watch)
        await self.sql(f"INSERT OR REPLACE INTO watches (check_id, {WATCH_COLUMNS}) VALUES (?{', ?' * len(values)})",
                       (check.id, *values))

    async def save_run(self, run: Run) -> Run:
        def op(conn: sqlite3.Connection) -> Run:
            save_run(conn, run)
            return run

        return await self.hub.store.writer.call(op)

    async def check_id(self, slug: str) -> int:
        check = await self.hub.store.check(slug)
        assert check is not None
        return check.id


def text(node: Tag | None) -> str:
    assert node is not None
    return " ".join(node.get_text(" ").split())


def row(soup: BeautifulSoup, slug: str) -> Tag:
    found = soup.select_one(f'tr.check-row[data-slug="{slug}"]')
    assert found is not None, f"no overview row for {slug}"
    return found


def cell(tr: Tag, label: str) -> str:
    return text(tr.select_one(f'td[data-label="{label}"]'))
