"""Managing checks in the browser, in-process: the new-check and edit forms (validated by the config's code,
errors beside their fields), the pause/resume/archive/test-alert buttons, CSRF, read-only without a password,
config checks not editable, the schedule explained, uptime and the overview's search."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup
from support.ports import free_port
from support.receivers import HttpReceiver
from test_login import TOKEN, Site, open_site
from test_web_support import T0, Web, text

from heartwatch.config import parse_check
from heartwatch.core.model import Run, RunState
from heartwatch.web.check_form import CONFIG_CHECK, EDITING_OFF

NEW = {"slug": "nightly", "name": "Nightly dump", "schedule": "0 2 * * *", "timezone": "Europe/Berlin",
       "start_grace": "10m", "max_runtime": "2h", "step_name_0": "dump", "step_max_0": "",
       "step_name_1": "upload", "step_max_1": "45m", "step_name_2": "", "step_max_2": "",
       "tags": "db\nprod", "alert_after": "2"}


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    s = await open_site(tmp_path)
    try:
        r = await s.login()
        assert r.status_code == 303
        yield s
    finally:
        await s.client.aclose()
        await s.hub.store.close()


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    w = await Web.open(tmp_path)
    try:
        yield w
    finally:
        await w.close()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    try:
        yield r
    finally:
        r.stop()


def soup_of(r: httpx.Response) -> BeautifulSoup:
    return BeautifulSoup(r.text, "html.parser")


async def post_form(site: Site, path: str, data: dict[str, str], form_page: str | None = None) -> httpx.Response:
    """Post `data` with the CSRF token the form page (or the check page) carries, as a browser would."""
    token = await site.csrf(form_page or path)
    return await site.client.post(path, data={"csrf": token, **data})


# --- create and edit ----------------------------------------------------------------------------------------


async def test_a_check_made_with_the_form_is_the_one_its_table_makes(site: Site) -> None:
    r = await post_form(site, "/checks/new", NEW)
    assert r.status_code == 303 and r.headers["location"] == "/checks/nightly"
    check = await site.hub.store.check("nightly")
    assert check is not None and check.source == "api"
    assert check.spec == parse_check("nightly", {
        "name": "Nightly dump", "schedule": "0 2 * * *", "timezone": "Europe/Berlin", "start_grace": "10m",
        "max_runtime": "2h", "steps": ["dump", {"name": "upload", "max": "45m"}], "tags": ["db", "prod"],
        "alert_after": 2})


async def test_a_bad_value_is_shown_beside_its_field_with_the_apis_message(site: Site) -> None:
    r = await post_form(site, "/checks/new", {**NEW, "schedule": "61 2 * * *"})
    assert r.status_code == 422
    assert await site.hub.store.check("nightly") is None  # nothing saved
    api = await site.client.post("/api/v1/checks", json={"slug": "nightly", "schedule": "61 2 * * *"},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    assert api.status_code == 422
    page = soup_of(r)
    error = page.select_one("#e-schedule")
    assert error is not None and text(error) == api.json()["error"]
    field = page.select_one("#f-schedule")
    assert field is not None and field["aria-invalid"] == "true"
    assert "e-schedule" in str(field["aria-describedby"]).split()
    assert field["value"] == "61 2 * * *"  # what was typed comes back, and the rest of the form too
    assert page.select_one("#f-name")["value"] == "Nightly dump"  # type: ignore[index]
    assert page.select_one("#step-name-1")["value"] == "upload"  # type: ignore[index]
    assert text(page.select_one("#form-errors")).endswith(api.json()["error"])


@pytest.mark.parametrize(("change", "field"), [
    ({"period": "1h"}, "period"),  # with a schedule as well
    ({"step_max_1": "-5m"}, "steps"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"alert_after": "0"}, "alert_after"),
    ({"slug": "Bad Slug"}, "slug"),
])
async def test_each_refusal_names_its_field(site: Site, change: dict[str, str], field: str) -> None:
    r = await post_form(site, "/checks/new", {**NEW, **change})
    assert r.status_code == 422, r.text[:300]
    errors = soup_of(r).select(".field .error, fieldset .error")
    assert [e["id"] for e in errors] == [f"e-{field}"]
    assert [c.slug for c in await site.hub.store.checks()] == ["backup"]


async def test_a_new_check_cannot_take_an_existing_slug(site: Site) -> None:
    assert (await post_form(site, "/checks/new", NEW)).status_code == 303
    r = await post_form(site, "/checks/new", {**NEW, "schedule": "0 3 * * *"})
    assert r.status_code == 409
    assert "exists already" in text(soup_of(r).select_one("#e-slug"))
    check = await site.hub.store.check("nightly")
    assert check is not None and check.spec.schedule == "0 2 * * *"


async def test_edit_form_is_filled_from_the_check_and_saves_the_table(site: Site) -> None:
    await post_form(site, "/checks/new", NEW)
    page = soup_of(await site.client.get("/checks/nightly/edit"))
    assert page.select_one("#f-schedule")["value"] == "0 2 * * *"  # type: ignore[index]
    assert page.select_one("#step-max-1")["value"] == "45m"  # type: ignore[index]
    assert text(page.select_one("#f-tags")) == "db prod"
    form = {str(i["name"]): str(i.get("value", "")) for i in page.select("form.check-form input[name]")
            if i.get("type") != "checkbox"}
    form |= {str(t["name"]): t.get_text() for t in page.select("form.check-form textarea")}
    form.update({"schedule": "30 3 * * 1-5", "step_name_0": "", "max_runtime": ""})
    r = await site.client.post("/checks/nightly/edit", data=form)
    assert r.status_code == 303
    check = await site.hub.store.check("nightly")
    assert check is not None
    assert check.spec.schedule == "30 3 * * 1-5" and [s.name for s in check.spec.steps] == ["upload"]
    assert check.spec.max_runtime is None  # emptied: back to the default
    assert check.spec.tags == ("db", "prod") and check.spec.alert_after == 2


async def test_alert_targets_are_never_shown_and_kept_unless_unticked(site: Site) -> None:
    secret = "json://user:S3cretPassw0rd@127.0.0.1:9/hook"
    await post_form(site, "/checks/new", {**NEW, "alerts": secret + "\njson://127.0.0.1:9/other"})
    check = await site.hub.store.check("nightly")
    assert check is not None and check.spec.alerts == (secret, "json://127.0.0.1:9/other")
    r = await site.client.get("/checks/nightly/edit")
    assert "S3cretPassw0rd" not in r.text
    page = soup_of(r)
    assert len(page.select('input[name^="keep_alert_"][checked]')) == 2
    form = {str(i["name"]): str(i.get("value", "")) for i in page.select("form.check-form input[name]")
            if i.get("type") != "checkbox"}
    form.update({"keep_alert_0": "on", "alerts": "json://127.0.0.1:9/new"})  # the second unticked
    assert (await site.client.post("/checks/nightly/edit", data=form)).status_code == 303
    check = await site.hub.store.check("nightly")
    assert check is not None and check.spec.alerts == (secret, "json://127.0.0.1:9/new")


async def test_config_checks_are_paused_and_tested_but_not_edited(site: Site) -> None:
    page = soup_of(await site.client.get("/checks/backup"))
    assert text(page.select_one("#config-note")) == CONFIG_CHECK
    assert page.select('a[href="/checks/backup/edit"]') == []
    assert page.select('form[action="/checks/backup/archive"]') == []
    assert page.select('form[action="/checks/backup/pause"]')
    assert page.select('form[action="/checks/backup/test-alert"]')
    edit = soup_of(await site.client.get("/checks/backup/edit"))
    assert edit.select("form.check-form") == [] and text(edit.select_one("#read-only")) == CONFIG_CHECK
    token = await site.csrf("/checks/backup")
    r = await site.client.post("/checks/backup/edit", data={"csrf": token, "period": "5m"})
    assert r.status_code == 409
    r = await site.client.post("/checks/backup/archive", data={"csrf": token})
    assert r.status_code == 409
    check = await site.hub.store.check("backup")
    assert check is not None and check.spec.period == timedelta(hours=1) and not check.archived
    r = await site.client.post("/checks/backup/pause", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/checks/backup"
    check = await site.hub.store.check("backup")
    assert check is not None and check.paused


# --- the buttons ------------------------------------------------------------------------------------------


async def test_pause_resume_and_archive_from_the_page(site: Site) -> None:
    await post_form(site, "/checks/new", NEW)
    woken: list[int] = []
    site.hub.change_listeners.append(lambda: woken.append(1))
    r = await post_form(site, "/checks/nightly/pause", {}, "/checks/nightly")
    assert r.status_code == 303
    page = soup_of(await site.client.get("/checks/nightly"))
    assert text(page.select_one(".big-status")) == "paused"
    assert text(page.select_one("dd.next")) == "paused"  # not a due time in the past
    assert page.select('form[action="/checks/nightly/resume"]')
    r = await post_form(site, "/checks/nightly/resume", {"next": "/?status=paused"}, "/checks/nightly")
    assert r.status_code == 303 and r.headers["location"] == "/?status=paused"
    check = await site.hub.store.check("nightly")
    assert check is not None and not check.paused
    r = await post_form(site, "/checks/nightly/archive", {}, "/checks/nightly")
    assert r.status_code == 303
    check = await site.hub.store.check("nightly")
    assert check is not None and check.archived
    assert len(woken) == 3  # the scheduler is told each time


async def test_overview_rows_pause_and_resume_and_come_back_to_the_same_view(site: Site) -> None:
    page = soup_of(await site.client.get("/?q=back"))
    form = page.select_one('tr[data-slug="backup"] form[action="/checks/backup/pause"]')
    assert form is not None
    data = {str(i["name"]): str(i["value"]) for i in form.select("input")}
    assert data["next"] == "/?q=back"
    r = await site.client.post("/checks/backup/pause", data=data)
    assert r.status_code == 303 and r.headers["location"] == "/?q=back"
    page = soup_of(await site.client.get("/"))
    assert page.select_one('tr[data-slug="backup"] form[action="/checks/backup/resume"]') is not None
    assert text(page.select_one('tr[data-slug="backup"] td.next')) == "paused"  # not a due time in the past


async def test_test_alert_reports_what_each_target_said(site: Site, receiver: HttpReceiver) -> None:
    down = f"json://127.0.0.1:{free_port()}/down"
    await post_form(site, "/checks/new", {**NEW, "alerts": f"{receiver.url('ok')}\n{down}"})
    r = await post_form(site, "/checks/nightly/test-alert", {}, "/checks/nightly")
    assert r.status_code == 200
    rows = soup_of(r).select("tr.target-row")
    assert [row["data-ok"] for row in rows] == ["yes", "no"]
    assert "delivered" in text(rows[0]) and "failed" in text(rows[1])
    assert len(text(rows[1])) > len("json://127.0.0.1/down failed ")  # Apprise's reason is there
    [(path, payload)] = receiver.received
    assert path == "/ok" and payload["title"] == "TEST heartwatch: test alert"
    assert "Nightly dump" in payload["message"]


async def test_test_alert_without_targets_says_how_to_add_them(site: Site) -> None:
    r = await post_form(site, "/checks/backup/test-alert", {}, "/checks/backup")
    assert r.status_code == 200 and "No alert targets" in r.text


# --- what is refused ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/checks/new", "/checks/backup/edit", "/checks/backup/pause",
                                  "/checks/backup/archive", "/checks/backup/test-alert"])
@pytest.mark.parametrize("token", [None, "wrong"])
async def test_a_post_without_the_csrf_token_is_403_and_changes_nothing(site: Site, path: str,
                                                                       token: str | None) -> None:
    before = await site.hub.store.checks(include_archived=True)
    data: dict[str, Any] = {**NEW, "period": "5m"}
    if token:
        data["csrf"] = token
    r = await site.client.post(path, data=data)
    assert r.status_code == 403
    assert await site.hub.store.checks(include_archived=True) == before


async def test_a_post_from_another_site_is_403_even_with_the_token(site: Site) -> None:
    token = await site.csrf("/checks/backup")
    r = await site.client.post("/checks/backup/pause", data={"csrf": token},
                               headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    check = await site.hub.store.check("backup")
    assert check is not None and not check.paused


async def test_without_a_login_a_post_is_refused(site: Site) -> None:
    token = await site.csrf("/checks/backup")
    site.client.cookies.clear()
    r = await site.client.post("/checks/backup/pause", data={"csrf": token})
    assert r.status_code == 401
    check = await site.hub.store.check("backup")
    assert check is not None and not check.paused


async def test_without_a_password_the_pages_are_read_only(web: Web) -> None:
    await web.config({"backup": {"period": "1h"}})
    for path in ("/", "/checks/backup", "/checks/new", "/checks/backup/edit"):
        r = await web.client.get(path)
        page = soup_of(r)
        assert page.select('form[method="post"]') == [], path
        assert text(page.select_one("#editing-off")) == EDITING_OFF, path
    assert (await web.client.get("/checks/new")).status_code == 403
    for path in ("/checks/new", "/checks/backup/edit", "/checks/backup/pause", "/checks/backup/archive"):
        r = await web.client.post(path, data={"slug": "x", "period": "5m", "csrf": "anything"})
        assert r.status_code == 403 and "[web] password" in r.text
    checks = await web.hub.store.checks(include_archived=True)
    assert [(c.slug, c.paused, c.archived, c.spec.period) for c in checks] == [("backup", False, False,
                                                                               timedelta(hours=1))]


# --- the schedule explained -------------------------------------------------------------------------------


async def test_schedule_is_explained_with_the_next_five_starts_in_its_zone(site: Site) -> None:
    r = await site.client.get("/checks/new/schedule", params={"schedule": "30 2 * * *", "timezone": "Europe/Berlin"})
    page = soup_of(r)
    assert text(page.select_one(".preview-words")) == "Runs every day at 02:30 Europe/Berlin"
    # The clock stands at 2024-05-01 00:00 UTC (02:00 in Berlin).
    assert [text(li) for li in page.select(".preview-starts li")] == [
        f"2024-05-0{d} 02:30 CEST" for d in range(1, 6)]
    r = await site.client.get("/checks/new/schedule", params={"schedule": "0 2 * *", "timezone": "UTC"})
    assert text(soup_of(r).select_one("[data-preview-error]")) == (
        "schedule: 4 fields; expected five (minute hour day month weekday)")
    r = await site.client.get("/checks/new/schedule", params={"period": "90m"})
    assert "every 1h30m" in r.text and soup_of(r).select(".preview-starts li") == []


async def test_the_form_explains_the_schedule_on_submit_without_javascript(site: Site) -> None:
    r = await post_form(site, "/checks/new", {**NEW, "action": "preview", "schedule": "0 6 * * 1"})
    assert r.status_code == 200
    assert await site.hub.store.check("nightly") is None  # explained, not saved
    page = soup_of(r)
    assert "every Monday at 06:00 Europe/Berlin" in text(page.select_one("#schedule-preview"))
    assert len(page.select("#schedule-preview .preview-starts li")) == 5
    assert page.select_one("#f-schedule")["value"] == "0 6 * * 1"  # type: ignore[index]


# --- uptime and search --------------------------------------------------------------------------------------


async def test_uptime_is_the_share_of_ok_runs_per_window_with_the_failures(site: Site) -> None:
    check = await site.hub.store.check("backup")
    assert check is not None
    now = T0 + timedelta(days=40)
    site.clock.now = now
    await site.login()  # the session from the fixture ran out meanwhile
    ago = [(timedelta(hours=1), RunState.OK), (timedelta(hours=2), RunState.FAILED),
           (timedelta(hours=3), RunState.OK), (timedelta(hours=4), RunState.RUNNING),  # not counted yet
           (timedelta(days=2), RunState.MISSED), (timedelta(days=3), RunState.OK),
           (timedelta(days=20), RunState.TIMED_OUT), (timedelta(days=35), RunState.FAILED)]  # too old
    await site.hub.store.writer.call(lambda conn: [
        conn.execute("INSERT INTO runs (check_id, state, started_at, ended_at) VALUES (?, ?, ?, ?)",
                     (check.id, state.value, (now - back).timestamp(),
                      None if state is RunState.RUNNING else (now - back).timestamp() + 60))
        for back, state in ago])
    windows = (await site.hub.store.uptimes([check.id], now))[check.id]
    assert [(u.label, u.runs, u.failures, u.percent) for u in windows] == [
        ("24 h", 3, 1, "66.6%"), ("7 d", 5, 2, "60%"), ("30 d", 6, 3, "50%")]
    page = soup_of(await site.client.get("/checks/backup"))
    assert "Uptime 24 h 66.6% 1 failure in 3 runs" in text(page.select_one("dl.uptime"))
    overview = soup_of(await site.client.get("/"))
    assert text(overview.select_one('tr[data-slug="backup"] td.uptime-cell')) == "50%"


def test_uptime_never_rounds_a_failure_up_to_100_percent() -> None:
    from heartwatch.store.uptime import Uptime

    assert Uptime("30 d", 10_000, 1).percent == "99.9%"
    assert Uptime("30 d", 4, 0).percent == "100%"
    assert Uptime("30 d", 0, 0).share is None


async def test_overview_search_finds_slug_name_and_tag_as_a_plain_get(web: Web) -> None:
    await web.config({"backup": {"name": "Nightly Postgres dump", "tags": ["db"]}, "sync": {"tags": ["web"]},
                      "report": {"name": "Weekly report"}})
    for query, found in (("back", ["backup"]), ("POSTGRES", ["backup"]), ("we", ["report", "sync"]),
                         ("nothing", [])):
        page = await web.page(f"/?q={query}")
        assert sorted(tr["data-slug"] for tr in page.select("tr.check-row")) == found, query
        box = page.select_one("input#q")
        assert box is not None and box["value"] == query
    assert "No check matches" in text((await web.page("/?q=nothing")).select_one(".empty-filter"))


async def test_a_missed_run_reads_did_not_start(web: Web) -> None:
    await web.config({"backup": {"schedule": "0 2 * * *", "steps": ["dump"]}})
    check_id = await web.check_id("backup")
    await web.save_run(Run(check_id, RunState.MISSED, T0, ended_at=T0 + timedelta(minutes=15)))
    page = await web.page("/checks/backup")
    chain = text(page.select_one("tr.run-row .chain"))
    assert "did not start" in chain and "stopped here" not in chain.lower()


def test_the_first_and_last_step_labels_of_a_timeline_are_not_cut_by_its_edges() -> None:
    import re

    from heartwatch.core.model import StepMark
    from heartwatch.web import charts

    spec = parse_check("backup", {"steps": ["dump", "upload", "verify-all"]})
    run = Run(1, RunState.OK, T0, id=1, ended_at=T0 + timedelta(minutes=10),
              steps=[StepMark("dump", T0 + timedelta(seconds=1)), StepMark("upload", T0 + timedelta(minutes=5)),
                     StepMark("verify-all", T0 + timedelta(minutes=10))])
    svg = str(charts.timeline(run, spec, T0 + timedelta(minutes=10), timedelta(minutes=10), "UTC", w=900,
                              labels=True))
    labels = re.findall(r'<text class="axis" x="([\d.]+)" y="34" text-anchor="(\w+)">([^<]+)</text>', svg)
    assert labels == [("0.0", "start", "dump"), ("450.0", "middle", "upload"), ("900.0", "end", "verify-all")]


async def test_the_form_has_a_labelled_field_for_every_setting_of_the_table(site: Site) -> None:
    from heartwatch.core.settings import CHECK_SETTINGS

    page = soup_of(await site.client.get("/checks/new"))
    for s in CHECK_SETTINGS:
        control = page.select_one(f"#f-{s.key}")
        assert control is not None, s.key
        if control.name == "fieldset":
            assert control.select_one("legend") is not None, s.key
        else:
            assert page.select_one(f'label[for="f-{s.key}"]') is not None, s.key
        hint = page.select_one(f"#h-{s.key}")
        assert hint is not None and s.meaning in text(hint), s.key
    # Every control of the form is labelled, so a screen reader names each one.
    for control in page.select("form.check-form input:not([type=hidden]), form.check-form textarea"):
        assert page.select_one(f'label[for="{control["id"]}"]') is not None, control


async def test_the_check_page_starts_with_how_to_ping_it(site: Site) -> None:
    page = soup_of(await site.client.get("/checks/backup"))
    sections = [s.get("id") or s.get("class", [""])[0] for s in page.select("main > section, main > div#live")]
    assert sections.index("ping") < sections.index("live")
    ping = page.select_one("#ping")
    assert ping is not None and "heartwatch run" in text(ping) and "/ping/" in text(ping)


def test_a_posted_form_is_the_table_it_stands_for() -> None:
    from heartwatch.web.check_form import read_form

    current = parse_check("x", {"period": "1h", "strict_steps": True, "alerts": ["json://a", "json://b"]})
    state, table = read_form({"period": " 2h ", "name": "", "tags": "a\n\n b \n", "step_name_0": "dump",
                              "step_max_0": "5m", "step_name_1": "", "step_max_1": "", "step_name_2": "verify",
                              "keep_alert_1": "on", "alerts": "json://c\n"}, current, "x")
    # Empty fields are left to their defaults; an unticked box is false (it may default to true).
    assert {k: v for k, v in table.items() if not isinstance(v, bool)} == {
        "period": "2h", "tags": ["a", "b"], "steps": [{"name": "dump", "max": "5m"}, "verify"],
        "alerts": ["json://b", "json://c"]}
    assert table["strict_steps"] is False
    assert state.steps == [("dump", "5m"), ("verify", "")]
    assert [(t.index, t.kept) for t in state.targets] == [(0, False), (1, True)]


async def test_a_folded_missed_run_counts_as_every_start_it_stands_for(site: Site) -> None:
    check = await site.hub.store.check("backup")
    assert check is not None
    now = T0 + timedelta(hours=10)
    await site.hub.store.writer.call(lambda conn: conn.executemany(
        "INSERT INTO runs (check_id, state, started_at, ended_at, missed) VALUES (?, ?, ?, ?, ?)",
        [(check.id, "ok", T0.timestamp(), T0.timestamp() + 1, 1),
         (check.id, "missed", T0.timestamp() + 3600, T0.timestamp() + 7200, 4)]))
    [day, *_] = (await site.hub.store.uptimes([check.id], now))[check.id]
    assert (day.runs, day.failures, day.percent) == (5, 4, "20%")


# --- mute and maintenance holds (the API's meaning: api_write and the store) ------------------------------


async def test_mute_and_unmute_from_the_page(site: Site) -> None:
    r = await post_form(site, "/checks/backup/mute", {}, "/checks/backup")
    assert r.status_code == 303
    check = await site.hub.store.check("backup")
    assert check is not None and check.muted
    page = soup_of(await site.client.get("/checks/backup"))
    assert text(page.select_one(".muted-note")) == "no reminders until it recovers"
    assert page.select('form[action="/checks/backup/unmute"]')
    r = await post_form(site, "/checks/backup/unmute", {}, "/checks/backup")
    check = await site.hub.store.check("backup")
    assert check is not None and not check.muted


async def test_a_maintenance_hold_for_a_while_and_its_end(site: Site) -> None:
    r = await post_form(site, "/checks/backup/pause", {"hold": "for", "for": "2h"}, "/checks/backup")
    assert r.status_code == 303
    check = await site.hub.store.check("backup")
    assert check is not None and not check.paused and check.maintenance_until == T0 + timedelta(hours=2)
    page = soup_of(await site.client.get("/checks/backup"))
    assert text(page.select_one("dd.held")) == "alerts held until 2024-05-01 02:00 UTC"
    assert page.select('form[action="/checks/backup/resume"]')  # "End maintenance now"
    r = await post_form(site, "/checks/backup/resume", {}, "/checks/backup")
    check = await site.hub.store.check("backup")
    assert check is not None and check.maintenance_until is None and not check.paused


async def test_a_hold_until_a_local_time_is_read_in_the_checks_zone(site: Site) -> None:
    await post_form(site, "/checks/new", NEW)  # Europe/Berlin: CEST, UTC+2, in May
    r = await post_form(site, "/checks/nightly/pause", {"hold": "until", "until": "2024-05-01T06:00"},
                        "/checks/nightly")
    assert r.status_code == 303
    check = await site.hub.store.check("nightly")
    assert check is not None and check.maintenance_until == T0 + timedelta(hours=4)


@pytest.mark.parametrize(("form", "message"), [
    ({"hold": "for", "for": "soon"}, "for: "),
    ({"hold": "until", "until": "2024-04-30T10:00"}, "until: that time has passed"),
])
async def test_a_bad_hold_says_why_with_the_apis_words_and_changes_nothing(site: Site, form: dict[str, str],
                                                                          message: str) -> None:
    r = await post_form(site, "/checks/backup/pause", form, "/checks/backup")
    assert r.status_code == 422 and message in r.text
    api = await site.client.post("/api/v1/checks/backup/pause", headers={"Authorization": f"Bearer {TOKEN}"},
                                 json={"for": "soon"} if "for" in form else {"until": "2024-04-30T10:00:00+02:00"})
    assert api.status_code == 422 and api.json()["error"] in r.text
    check = await site.hub.store.check("backup")
    assert check is not None and check.maintenance_until is None and not check.paused


async def test_the_form_takes_depends_on_and_after_and_refuses_an_unknown_parent_or_a_cycle_beside_its_field(
        site: Site) -> None:
    r = await post_form(site, "/checks/new", {"slug": "upload", "after": "nightly", "start_grace": "10m"})
    assert r.status_code == 422 and text(soup_of(r).select_one("#e-after")) == \
        "after = 'nightly': no check is called 'nightly'"
    assert (await post_form(site, "/checks/new", NEW)).status_code == 303
    assert (await post_form(site, "/checks/new", {"slug": "upload", "after": "nightly"})).status_code == 303
    r = await post_form(site, "/checks/new", {"slug": "verify", "after": "upload", "depends_on": "backup\nnightly"})
    assert r.status_code == 303
    verify = await site.hub.store.check("verify")
    assert verify is not None and (verify.spec.after, verify.spec.depends_on) == ("upload", ("backup", "nightly"))
    page = soup_of(await site.client.get("/checks/verify/edit"))
    assert page.select_one("#f-after")["value"] == "upload"  # type: ignore[index]
    assert page.select_one("#f-depends_on").get_text().split() == ["backup", "nightly"]  # type: ignore[union-attr]
    r = await post_form(site, "/checks/nightly/edit", {"schedule": "0 2 * * *", "depends_on": "verify"},
                        form_page="/checks/nightly/edit")
    assert r.status_code == 422
    assert text(soup_of(r).select_one("#e-depends_on")) == \
        "depends_on = ['verify']: a cycle: nightly -> verify -> nightly (each waits on the next)"
    nightly = await site.hub.store.check("nightly")
    assert nightly is not None and nightly.spec.depends_on == ()
