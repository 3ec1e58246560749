"""Badges: `/badge/<slug>.svg` draws the status word, `/badge/<slug>.json` is a shields.io endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from test_web_support import T0, Web

from heartwatch.core.model import CheckStatus, Watch
from heartwatch.web.badges import badge_svg


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    w = await Web.open(tmp_path)
    await w.config({"backup": {"schedule": "0 2 * * *"}, "idle": {}, "paused-job": {}})
    try:
        yield w
    finally:
        await w.close()


async def svg_words(web: Web, slug: str) -> list[str]:
    r = await web.get(f"/badge/{slug}.svg")
    assert r.headers["content-type"] == "image/svg+xml"
    assert "no-cache" in r.headers["cache-control"]  # image proxies must not keep a stale status
    soup = BeautifulSoup(r.text, "html.parser")
    return [t.get_text() for t in soup.find_all("text")]


async def test_badges_follow_the_check_status(web: Web) -> None:
    assert await svg_words(web, "idle") == ["idle", "idle", "new", "new"]
    await web.ping("backup", "/start", at=T0)
    assert (await svg_words(web, "backup"))[2:] == ["running", "running"]
    await web.ping("backup", "/1", at=T0 + timedelta(minutes=3))
    assert (await svg_words(web, "backup"))[2:] == ["down", "down"]
    await web.ping("backup", "/start", at=T0 + timedelta(hours=1))
    await web.ping("backup", at=T0 + timedelta(hours=1, minutes=3))
    assert (await svg_words(web, "backup"))[2:] == ["up", "up"]
    expected = T0 + timedelta(days=1)
    await web.set_watch("backup", Watch(expected_at=expected, start_deadline=expected + timedelta(minutes=15)))
    web.clock.now = expected + timedelta(minutes=1)
    assert (await svg_words(web, "backup"))[2:] == ["late", "late"]
    await web.sql("UPDATE checks SET paused = 1 WHERE slug = 'paused-job'")
    assert (await svg_words(web, "paused-job"))[2:] == ["paused", "paused"]


async def test_badge_json_is_a_shields_io_endpoint(web: Web) -> None:
    await web.ping("backup", "/fail", at=T0)
    r = await web.get("/badge/backup.json")
    assert r.json() == {"schemaVersion": 1, "label": "backup", "message": "down", "color": "red", "isError": True}
    r = await web.get("/badge/idle.json")
    assert r.json()["message"] == "new" and r.json()["color"] == "lightgrey"


async def test_unknown_badges_are_404(web: Web) -> None:
    await web.get("/badge/nope.svg", 404)
    assert (await web.get("/badge/nope.json", 404)).json() == {"error": "no such check"}


def test_badge_svg_escapes_its_label_and_has_one_colour_per_status() -> None:
    svg = badge_svg('<b>"x"</b>', CheckStatus.DOWN)
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    colours = set()
    for status in (CheckStatus.UP, CheckStatus.RUNNING, CheckStatus.LATE, CheckStatus.DOWN):
        message_box = BeautifulSoup(badge_svg("x", status), "html.parser").select_one("rect[x]")
        assert message_box is not None
        colours.add(str(message_box["fill"]))
    assert len(colours) == 4
