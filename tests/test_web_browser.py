"""The status pages in a real browser: Debian's headless Chromium, driven by Playwright, against a real
`heartwatch serve`. Pings sent meanwhile must appear without a reload; screenshots go to test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import BROWSER_MARKS, launch
from support.server import Server

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install -e .[test])")
expect = sync_api.expect


@pytest.fixture
def server_config() -> str:
    return """
[checks.nightly-backup]
name = "Nightly Postgres backup"
schedule = "0 2 * * *"
timezone = "Europe/Berlin"
max_runtime = "2h"
steps = ["dump", {name = "upload", max = "45m"}, "verify"]
tags = ["db", "prod"]

[checks.hourly-sync]
name = "Hourly sync"
period = "1h"
tags = ["web"]
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch() as b:
        yield b


def status_of(page: Any, slug: str) -> str:
    text: str = page.locator(f'tr.check-row[data-slug="{slug}"] td.status').inner_text()
    return text.strip()


def test_pages_update_live_without_reload(server: Server, browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    server.get("/ping/test-key/hourly-sync/0")  # one good run already
    page.goto(server.url + "/")
    assert status_of(page, "hourly-sync") == "up"
    assert status_of(page, "nightly-backup") == "new"
    # A marker on the window survives only if the page is never reloaded.
    page.evaluate("window.__noReload = true")

    assert server.get("/ping/test-key/nightly-backup/start").status_code == 200
    # Waits go through locators, not wait_for_function: its string predicate is eval'ed in the page, which
    # the Content-Security-Policy (script-src 'self', no 'unsafe-eval') rightly refuses.
    expect(page.locator('tr.check-row[data-slug="nightly-backup"] td.status')).to_have_text("running", timeout=10_000)
    assert server.get("/ping/test-key/nightly-backup?step=dump").status_code == 200
    expect(page.locator('tr.check-row[data-slug="nightly-backup"] td.where')).to_contain_text("at dump",
                                                                                               timeout=10_000)
    assert page.evaluate("window.__noReload") is True
    assert page.locator("#live-note").inner_text().startswith("live")
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)

    page.goto(server.url + "/checks/nightly-backup")
    page.evaluate("window.__noReload = true")
    assert page.locator(".big-status").inner_text().strip() == "running"
    # app.js shows the copy buttons; without it they stay hidden.
    assert page.locator("button[data-copy]").first.is_visible()
    assert server.get("/ping/test-key/nightly-backup?step=upload").status_code == 200
    assert server.post("/ping/test-key/nightly-backup/2", content=b"upload failed: <script>alert(1)</script>"
                       ).status_code == 200
    expect(page.locator(".big-status")).to_have_text("down", timeout=10_000)
    assert page.evaluate("window.__noReload") is True
    assert "upload stopped here" in page.locator("tr.run-row").first.inner_text().replace("\n", " ").lower()
    assert page.locator("table.events pre").first.inner_text() == "upload failed: <script>alert(1)</script>"
    assert page.title().startswith("down · Nightly Postgres backup")
    page.screenshot(path=str(ARTIFACTS / "check.png"), full_page=True)

    # Phone-sized and dark: the same page, readable.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark",
                                device_scale_factor=1)
    small = phone.new_page()
    small.goto(server.url + "/")
    small.screenshot(path=str(ARTIFACTS / "overview-phone-dark.png"), full_page=True)
    width = small.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the overview scrolls sideways on a phone ({width}px)"
    phone.close()

    # Without a password the pages are read-only: no form posts anything, one line says how to edit, and a
    # post (even with a made-up token) changes nothing.
    page.goto(server.url + "/checks/hourly-sync")
    assert page.locator('form[method="post"]').count() == 0
    assert "set [web] password" in page.locator("#editing-off").inner_text()
    for action in ("pause", "archive", "edit"):
        refused = page.request.post(f"{server.url}/checks/hourly-sync/{action}", form={"csrf": "x", "period": "5m"})
        assert refused.status == 403
    assert server.api("/checks/hourly-sync")["paused"] is False and server.api("/checks/hourly-sync")["period"] == "1h"

    assert errors == []
    assert all(u.startswith(server.url) for u in requests), [u for u in requests if not u.startswith(server.url)]
    context.close()


def test_page_works_with_javascript_off(server: Server, browser: Any) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    server.get("/ping/test-key/nightly-backup/fail")
    page.goto(server.url + "/")
    assert status_of(page, "nightly-backup") == "down"
    page.select_option('select[name="status"]', "down")
    page.click('form.filters button[type="submit"]')
    page.wait_for_url("**/?q=&tag=&status=down")
    assert page.locator("tr.check-row").count() == 1
    page.click("text=Nightly Postgres backup")
    assert page.locator(".big-status").inner_text().strip() == "down"
    assert not page.locator("button[data-copy]").first.is_visible()  # nothing to click that cannot work
    context.close()

