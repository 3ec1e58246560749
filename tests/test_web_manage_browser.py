"""Managing checks in a real browser (Debian's chromium through Playwright) against one real `heartwatch serve`
with a password: log in, create a check from the form with a schedule and steps, see its next five starts,
edit it, pause and resume it; a post without the CSRF token changes nothing. Then axe-core, injected into
every kind of page in light and dark, must find no serious or critical violation.

axe-core comes from npm into tests/.node (`make test` installs it once; offline afterwards). Screenshots go to
test-artifacts/; with HEARTWATCH_SCREENSHOTS=docs they also replace the ones under docs/screenshots/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import BROWSER_MARKS, launch
from support.receivers import HttpReceiver
from support.server import Server, running_server

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
AXE = Path(__file__).resolve().parent / ".node" / "node_modules" / "axe-core" / "axe.min.js"
PASSWORD = "browser-test-password"

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install -e .[test])")
expect = sync_api.expect

TOKEN = "browser-test-api-token-0123456789"
CONFIG = f"""
[web]
password = "{PASSWORD}"

[api]
tokens = ["{TOKEN}"]
""" + """
[checks.nightly-backup]
name = "Nightly Postgres backup"
schedule = "0 2 * * *"
timezone = "Europe/Berlin"
max_runtime = "2h"
steps = ["dump", {name = "upload", max = "45m"}, "verify"]
tags = ["db", "prod"]
""" + "".join(f"""
[checks.{slug}]
name = "{name}"
period = "{period}"
tags = ["{tag}"]
""" for slug, name, period, tag in [
    ("hourly-sync", "Hourly sync", "1h", "web"), ("certs", "Certificate renewal", "1d", "web"),
    ("photos", "Photo library backup", "1d", "backup"), ("mail-queue", "Mail queue flush", "15m", "mail"),
    ("db-vacuum", "Database vacuum", "7d", "db"), ("logrotate", "Log rotation", "1d", "system"),
    ("offsite", "Offsite copy", "1d", "backup"),
])


@pytest.fixture(scope="module")
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: HttpReceiver) -> Iterator[Server]:
    config = CONFIG.replace("[web]", f'[alerts]\nurls = ["{receiver.url()}"]\n\n[web]', 1)
    with running_server(tmp_path_factory.mktemp("manage"), config) as srv:
        # Some history, so the pages show what they show in use.
        for slug in ("hourly-sync", "certs", "photos", "logrotate", "offsite", "mail-queue"):
            srv.get(f"/ping/test-key/{slug}/start")
            srv.get(f"/ping/test-key/{slug}/0")
        srv.get("/ping/test-key/db-vacuum/1")
        srv.get("/ping/test-key/nightly-backup/start")
        srv.get("/ping/test-key/nightly-backup?step=dump")
        srv.get("/ping/test-key/nightly-backup?step=upload")
        srv.post("/ping/test-key/nightly-backup/2", content=b"upload failed: connection reset by peer")
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch() as b:
        yield b


def api(server: Server, path: str) -> Any:
    """A read of the JSON API (it needs the token, as every read does when a password is set)."""
    r = server.get("/api/v1" + path, headers={"Authorization": f"Bearer {TOKEN}"})
    r.raise_for_status()
    return r.json()


def log_in(page: Any, server: Server) -> None:
    page.goto(server.url + "/login")
    page.fill("#password", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(server.url + "/")


def shot(page: Any, name: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if os.environ.get("HEARTWATCH_SCREENSHOTS") == "docs":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_SHOTS / path.name)
        if shutil.which("pngquant"):  # a palette of 256 colours keeps the README's pictures a few dozen KB each
            subprocess.run(["pngquant", "--force", "--skip-if-larger", "--quality=60-85", "--speed", "1", "--ext",
                            ".png", str(DOCS_SHOTS / path.name)], check=False)


def test_create_edit_pause_and_resume_a_check_in_the_browser(server: Server, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, server)
    page.click("text=New check")
    page.wait_for_url("**/checks/new")

    page.fill("#f-slug", "db-dump")
    page.fill("#f-name", "Database dump")
    page.fill("#f-timezone", "America/New_York")
    page.fill("#f-schedule", "30 4 * * 1-5")  # typed: the page explains it without a reload
    expect(page.locator("#schedule-preview .preview-starts li")).to_have_count(5, timeout=10_000)
    starts = page.locator("#schedule-preview .preview-starts li").all_inner_texts()
    assert all(s.endswith(("04:30 EST", "04:30 EDT")) for s in starts), starts
    page.fill("#f-schedule", "30 4 * *")
    expect(page.locator("#schedule-preview [data-preview-error]")).to_contain_text("4 fields; expected five")
    page.fill("#f-schedule", "30 4 * * 1-5")
    expect(page.locator("#schedule-preview .preview-starts li")).to_have_count(5)
    page.fill("#step-name-0", "dump")
    page.fill("#step-name-1", "upload")
    page.fill("#step-max-1", "45m")
    page.click("[data-add-step]")  # a third row, focused
    page.keyboard.type("verify")
    page.fill("#f-max_runtime", "two hours")
    page.click("text=Create check")
    # Refused: the message beside its field, what was typed still there.
    error = page.locator("#e-max_runtime")
    expect(error).to_contain_text("max_runtime = 'two hours': expected a duration")
    assert page.locator("#f-max_runtime").get_attribute("aria-invalid") == "true"
    assert page.locator("#step-name-2").input_value() == "verify"
    assert page.locator("#schedule-preview .preview-starts li").count() == 5  # rendered by the server too
    shot(page, "new-check-error")
    page.fill("#f-max_runtime", "2h")
    page.press("#f-max_runtime", "Enter")  # the keyboard's way: Enter in a field saves the form
    page.wait_for_url("**/checks/db-dump")
    assert api(server, "/checks/db-dump")["steps"] == [{"name": "dump", "max": None}, {"name": "upload", "max": "45m"},
                                                      {"name": "verify", "max": None}]

    page.click("text=Edit")
    page.wait_for_url("**/checks/db-dump/edit")
    page.fill("#f-schedule", "0 5 * * *")
    page.click("text=Save changes")
    page.wait_for_url("**/checks/db-dump")
    assert api(server, "/checks/db-dump")["schedule"] == "0 5 * * *"

    page.focus("#actions >> text=Pause")
    page.keyboard.press("Enter")
    expect(page.locator(".big-status")).to_have_text("paused")
    expect(page.locator("dd.next")).to_have_text("paused")
    assert api(server, "/checks/db-dump")["paused"] is True
    page.click("#actions >> text=Resume")
    expect(page.locator("#actions >> text=Pause")).to_be_visible()
    assert api(server, "/checks/db-dump")["paused"] is False

    # A post without the form's token, with the session cookie, changes nothing.
    refused = page.request.post(server.url + "/checks/db-dump/pause", form={"next": "/"})
    assert refused.status == 403
    assert api(server, "/checks/db-dump")["paused"] is False

    # Pause from the overview's row, back to the same view.
    page.goto(server.url + "/?q=db-dump")
    page.click('tr[data-slug="db-dump"] >> text=Pause')
    page.wait_for_url(server.url + "/?q=db-dump")
    expect(page.locator('tr[data-slug="db-dump"] td.status')).to_have_text("paused")
    page.click('tr[data-slug="db-dump"] >> text=Resume')
    expect(page.locator('tr[data-slug="db-dump"] td.status')).not_to_have_text("paused")
    # The refused form answers 422 (and the token-less post 403), which the console notes; nothing else.
    assert [e for e in errors if "status of 422" not in e and "status of 403" not in e] == []
    context.close()


def alerts_about(receiver: HttpReceiver, name: str) -> list[str]:
    return [p["title"] for _, p in receiver.received if name in p["title"] or name in p.get("message", "")]


def test_a_failure_during_maintenance_sends_nothing_and_one_alert_after_it(server: Server, browser: Any,
                                                                          receiver: HttpReceiver) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    log_in(page, server)
    page.goto(server.url + "/checks/certs")
    page.fill("#hold-for", "12s")
    page.click(".holds form:has(#hold-for) button")
    expect(page.locator("dd.held")).to_contain_text("alerts held until")
    assert server.get("/ping/test-key/certs/fail").status_code == 200
    expect(page.locator(".big-status")).to_have_text("down", timeout=10_000)  # the truth is shown at once ...
    time.sleep(4)
    assert alerts_about(receiver, "Certificate renewal") == []  # ... but nothing is sent during the hold
    deadline = time.monotonic() + 40
    while not alerts_about(receiver, "Certificate renewal") and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # room for a second one, which must not come
    sent = alerts_about(receiver, "Certificate renewal")
    assert len(sent) == 1 and "DOWN" in sent[0].upper(), sent
    context.close()


def test_the_overview_fits_six_checks_on_a_phone(server: Server, browser: Any) -> None:
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme=scheme)
        page = context.new_page()
        log_in(page, server)
        rows = page.locator("tr.check-row")
        visible = sum(1 for box in (rows.nth(i).bounding_box() for i in range(rows.count()))
                      if box is not None and box["y"] + box["height"] <= 844)
        assert visible >= 6, f"only {visible} checks on the first screen of a phone ({scheme})"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, f"overview-phone-{scheme}")
        for path in ("/checks/nightly-backup", "/checks/new"):
            page.goto(server.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways on a phone ({width}px)"
        context.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': '"
        " + n.failureSummary)}))")
    return found


@pytest.mark.skipif(not AXE.exists(), reason=f"needs axe-core from npm at {AXE}: "
                    "npm install --prefix tests/.node axe-core (make test does it)")
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_violation_on_any_page(server: Server, browser: Any, scheme: str) -> None:
    # axe is injected as a script of its own, which the pages' Content-Security-Policy rightly forbids.
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme=scheme, bypass_csp=True)
    page = context.new_page()
    page.goto(server.url + "/login")
    report = {"login": axe_violations(page)}
    log_in(page, server)
    run_id = api(server, "/checks/nightly-backup/runs?limit=1")["runs"][0]["id"]
    pages = {"overview": "/", "check": "/checks/nightly-backup", "run": f"/checks/nightly-backup/runs/{run_id}",
             "new check": "/checks/new", "edit": "/checks/hourly-sync/edit", "config check edit":
             "/checks/nightly-backup/edit"}
    for name, path in pages.items():
        page.goto(server.url + path)
        report[name] = axe_violations(page)
        if scheme == "light" and name in ("overview", "check", "run"):
            shot(page, {"overview": "overview-desktop-light", "check": "check", "run": "run"}[name])
        if scheme == "dark" and name == "overview":
            shot(page, "overview-desktop-dark")
    page.goto(server.url + "/checks/new")
    page.fill("#f-slug", "Not A Slug")
    page.click("text=Create check")
    expect(page.locator("#e-slug")).to_be_visible()
    report["form with an error"] = axe_violations(page)
    context.close()
    bad = {name: found for name, found in report.items() if found}
    assert not bad, json.dumps(bad, indent=1)
