"""The HTML status pages through the app, in-process: what an operator reads on each page, and that it is
escaped, works without JavaScript and requests nothing from elsewhere."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from bs4 import BeautifulSoup, Tag
from test_web_support import T0, Web, cell, row, text

from heartwatch.core.model import Run, RunState, StepMark, Watch
from heartwatch.web import page_data as web_data

BACKUP = {"name": "Nightly Postgres backup", "schedule": "0 2 * * *", "timezone": "Europe/Berlin",
          "max_runtime": "2h", "steps": ["dump", {"name": "upload", "max": "45m"}, "verify"], "tags": ["db", "prod"]}


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    w = await Web.open(tmp_path)
    try:
        yield w
    finally:
        await w.close()


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


async def full_run(web: Web, slug: str, start_minutes: float, steps: list[str], end: str = "",
                   body: bytes = b"") -> None:
    """start, the steps 5 minutes apart, then `end` ("" = finish, "/fail", "/3", or "none" to leave it running)."""
    t = T0 + minutes(start_minutes)
    await web.ping(slug, "/start", at=t)
    for i, step in enumerate(steps, 1):
        await web.ping(slug, at=t + minutes(5 * i), step=step)
    if end != "none":
        await web.ping(slug, end, at=t + minutes(5 * len(steps) + 3), body=body)


# --- the overview -------------------------------------------------------------------------------------------


async def test_new_install_explains_how_to_add_and_ping_a_check(web: Web) -> None:
    soup = await web.page("/")
    empty = soup.select_one("section.empty")
    words = text(empty)
    assert "No checks yet" in words
    assert "[checks.nightly-backup]" in words and "heartwatch.toml" in words
    assert "http://hw.example:8000/ping/k3y/my-job?create=1" in words
    assert "heartwatch run" in words
    assert soup.select("table.checks") == []


async def test_overview_shows_status_words_counts_and_down_checks_first(web: Web) -> None:
    await web.config({"backup": BACKUP, "hourly": {"period": "1h", "tags": ["web"]}, "quiet": {},
                      "report": {"schedule": "30 6 * * 1"}, "sleepy": {}})
    await full_run(web, "hourly", 0, [])  # ok
    await full_run(web, "backup", 10, ["dump", "upload"], "/fail")  # failed at upload: down
    await full_run(web, "report", 60, ["collect"], "none")  # still running
    await web.sql("UPDATE checks SET paused = 1 WHERE slug = 'sleepy'")
    web.clock.now = T0 + minutes(90)

    soup = await web.page("/")
    counts = {a["data-status"]: text(a) for a in soup.select("ul.counts a")}
    assert counts == {"up": "1 up", "running": "1 running", "late": "0 late", "down": "1 down",
                      "paused": "1 paused", "new": "1 new"}
    order = [tr["data-slug"] for tr in soup.select("tr.check-row")]
    assert order[0] == "backup"  # down comes first
    assert order[-1] == "sleepy"  # paused last
    statuses = {tr["data-slug"]: cell(tr, "Status") for tr in soup.select("tr.check-row")}
    assert statuses == {"backup": "down", "report": "running", "quiet": "new", "hourly": "up", "sleepy": "paused"}
    # Status is a word and a colour class, never colour alone.
    pill = row(soup, "backup").select_one(".pill")
    assert pill is not None and "st-down" in pill["class"] and text(pill) == "down"
    assert soup.title is not None and soup.title.string == "1 down · heartwatch"


async def test_overview_row_tells_schedule_last_run_where_it_stopped_and_next_start(web: Web) -> None:
    await web.config({"backup": BACKUP, "report": {"schedule": "30 6 * * 1", "tags": ["db"]}})
    await full_run(web, "backup", 0, ["dump", "upload"], "/3")
    await full_run(web, "report", 10, ["collect"], "none")
    expected = T0 + timedelta(hours=24)  # 2024-05-02 00:00 UTC = 02:00 in Berlin (CEST)
    await web.set_watch("backup", Watch(expected_at=expected, start_deadline=expected + minutes(15)))
    web.clock.now = T0 + timedelta(hours=22)

    soup = await web.page("/")
    backup = row(soup, "backup")
    assert "Nightly Postgres backup" in cell(backup, "Check") and "backup" in cell(backup, "Check")
    assert cell(backup, "Schedule") == "every day at 02:00 Europe/Berlin"
    last = cell(backup, "Last run")
    assert last.startswith("failed 22 h ago") and "2024-05-01 02:00 CEST" in last and "took 13m" in last
    assert cell(backup, "Stopped at") == "stopped at upload 2024-05-01 02:10:00 CEST"
    nxt = backup.select_one('td[data-label="Next expected"]')
    assert nxt is not None
    assert text(nxt) == "in 2 h 2024-05-02 02:00 CEST"
    time_el = nxt.select_one("time")
    assert time_el is not None and time_el["title"] == "2024-05-02 00:00:00 UTC"
    assert time_el["datetime"] == "2024-05-02T00:00:00.000Z"

    report = row(soup, "report")
    assert cell(report, "Schedule") == "every Monday at 06:30 UTC"
    assert "running for 21h 50m" in cell(report, "Last run")
    assert cell(report, "Stopped at") == "at collect 2024-05-01 00:15:00 UTC"
    # No expectation from the scheduler yet: the next cron time is still shown, as an estimate.
    assert "2024-05-06 06:30 UTC" in cell(report, "Next expected")


async def test_overview_marks_a_check_late_from_the_schedulers_expectation(web: Web) -> None:
    await web.config({"backup": BACKUP})
    await full_run(web, "backup", 0, [])
    expected = T0 + timedelta(hours=24)
    await web.set_watch("backup", Watch(expected_at=expected, start_deadline=expected + minutes(15)))
    web.clock.now = expected + minutes(5)
    soup = await web.page("/")
    assert cell(row(soup, "backup"), "Status") == "late"
    assert text(soup.select_one('a[data-status="late"]')) == "1 late"
    assert "5 min ago" in cell(row(soup, "backup"), "Next expected")


async def test_strip_shows_the_last_30_runs_oldest_first_with_tooltips(web: Web) -> None:
    await web.config({"hourly": {"period": "1h"}})
    for i in range(35):
        await full_run(web, "hourly", 60 * i, [], "/fail" if i == 33 else "")
    soup = await web.page("/")
    cells = row(soup, "hourly").select("ol.strip a.cell")
    assert len(cells) == 30
    titles = [str(c["title"]) for c in cells]
    assert titles[0].startswith("run 6: ok, 2024-05-01 05:00:00 UTC, took 3m")
    assert titles[-2].startswith("run 34: failed")
    assert "st-failed" in cells[-2]["class"] and text(cells[-2]) == "failed"
    assert cells[-1]["href"] == "/checks/hourly/runs/35"


async def test_strip_tooltips_tell_the_last_step_exit_status_and_duration(web: Web) -> None:
    await web.config({"backup": BACKUP})
    await full_run(web, "backup", 0, ["dump", "upload"], "/3")
    check_id = await web.check_id("backup")
    await web.save_run(Run(check_id=check_id, state=RunState.MISSED, started_at=T0 + timedelta(days=1),
                           ended_at=T0 + timedelta(days=1, minutes=15)))
    await full_run(web, "backup", 60 * 48, ["dump"], "none")
    soup = await web.page("/")
    titles = [str(a["title"]) for a in row(soup, "backup").select("ol.strip a.cell")]
    assert titles == [
        "run 1: failed, 2024-05-01 02:00:00 CEST, took 13m, last step upload, exit 3",
        "run 2: missed, 2024-05-02 02:00:00 CEST",
        "run 3: running, 2024-05-03 02:00:00 CEST, last step dump",
    ]


async def test_overview_status_is_the_check_pages_for_every_kind_of_check(web: Web) -> None:
    """The overview works every check's status out from a few columns; the check page from the decoded check,
    its newest run and its watch. They must agree."""
    now = T0 + timedelta(hours=10)
    due = Watch(expected_at=now - minutes(5), start_deadline=now + minutes(10))
    overdue = Watch(expected_at=now - minutes(30), start_deadline=now - minutes(15))
    ahead = Watch(expected_at=now + minutes(30), start_deadline=now + minutes(45))
    no_deadline = Watch(expected_at=now - minutes(5))
    cases: dict[str, tuple[list[RunState], Watch | None, bool, str]] = {
        "fresh": ([], None, False, "new"),
        "fresh-due": ([], due, False, "late"),
        "fresh-overdue": ([], overdue, False, "new"),
        "ok": ([RunState.OK], None, False, "up"),
        "ok-due": ([RunState.OK], due, False, "late"),
        "ok-no-deadline": ([RunState.OK], no_deadline, False, "late"),
        "ok-ahead": ([RunState.OK], ahead, False, "up"),
        "failed": ([RunState.FAILED], None, False, "down"),
        "failed-due": ([RunState.FAILED], due, False, "down"),
        "missed": ([RunState.MISSED], None, False, "down"),
        "timed-out": ([RunState.TIMED_OUT], None, False, "down"),
        "interrupted": ([RunState.INTERRUPTED], None, False, "down"),
        "running-due": ([RunState.RUNNING], due, False, "running"),
        "recovered": ([RunState.FAILED, RunState.OK], None, False, "up"),
        "broke": ([RunState.OK, RunState.FAILED], None, False, "down"),
        "paused-running": ([RunState.RUNNING], due, True, "paused"),
        "paused-fresh": ([], None, True, "paused"),
    }
    await web.config({slug: {"period": "1h"} for slug in cases})
    for slug, (states, watch, paused, _) in cases.items():
        check_id = await web.check_id(slug)
        for i, state in enumerate(states):
            started = T0 + timedelta(hours=i)
            ended = None if state is RunState.RUNNING else started + minutes(3)
            await web.save_run(Run(check_id=check_id, state=state, started_at=started, ended_at=ended))
        if watch is not None:
            await web.set_watch(slug, watch)
        if paused:
            await web.sql("UPDATE checks SET paused = 1 WHERE id = ?", (check_id,))
    web.clock.now = now

    overview = await web.page("/")
    shown = {str(tr["data-slug"]): str(tr["data-status"]) for tr in overview.select("tr.check-row")}
    assert shown == {slug: expected for slug, (_, _, _, expected) in cases.items()}
    for slug in cases:
        page = await web.page(f"/checks/{slug}")
        big = page.select_one(".big-status")
        assert big is not None and big["data-status"] == shown[slug], slug


async def test_overview_shows_a_renamed_or_retagged_check_at_once(web: Web) -> None:
    await web.config({"a": {"name": "Zulu", "tags": ["old"]}, "b": {"name": "Mike"}})
    soup = await web.page("/")
    assert [tr["data-slug"] for tr in soup.select("tr.check-row")] == ["b", "a"]
    assert "Zulu" in cell(row(soup, "a"), "Check")

    await web.config({"a": {"name": "Alpha", "tags": ["new"]}, "b": {"name": "Mike"}})
    soup = await web.page("/")
    assert [tr["data-slug"] for tr in soup.select("tr.check-row")] == ["a", "b"]
    assert "Alpha" in cell(row(soup, "a"), "Check") and "Zulu" not in text(soup)
    assert [t["href"] for t in row(soup, "a").select("a.tag")] == ["?tag=new"]
    assert [o["value"] for o in soup.select('select[name="tag"] option')] == ["", "new"]
    assert [tr["data-slug"] for tr in (await web.page("/?tag=old")).select("tr.check-row")] == []

    await web.config({"a": {"tags": ["new"]}, "b": {"name": "Mike"}})  # no name: the slug is shown
    soup = await web.page("/")
    assert [tr["data-slug"] for tr in soup.select("tr.check-row")] == ["a", "b"]
    assert "Alpha" not in text(soup)


async def test_overview_orders_names_without_regard_to_case_across_pages(web: Web,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_data, "PAGE_SIZE", 2)
    await web.config({"e": {"name": "\u00e9mile"}, "z": {"name": "Zulu"}, "b": {"name": "beta"},
                      "a": {"name": "Alpha"}, "d": {"name": "delta", "period": "1h"}})
    await full_run(web, "d", 0, [], "/fail")

    async def slugs(query: str) -> list[str]:
        return [str(tr["data-slug"]) for tr in (await web.page(f"/{query}")).select("tr.check-row")]

    # Down first, then the new ones by name, lower case: "é" sorts after "z" (by code point, as before).
    assert await slugs("?page=1") == ["d", "a"]
    assert await slugs("?page=2") == ["b", "z"]
    assert await slugs("?page=3") == ["e"]
    assert await slugs("?status=new&page=2") == ["z", "e"]


async def test_overview_filters_by_tag_and_status_with_plain_links_and_a_form(web: Web) -> None:
    await web.config({"backup": BACKUP, "hourly": {"period": "1h", "tags": ["web"]}, "quiet": {"tags": ["db"]}})
    await full_run(web, "backup", 0, [], "/fail")
    await full_run(web, "hourly", 0, [])

    def slugs(soup: BeautifulSoup) -> list[str]:
        return [str(tr["data-slug"]) for tr in soup.select("tr.check-row")]

    assert slugs(await web.page("/?tag=db")) == ["backup", "quiet"]
    assert slugs(await web.page("/?status=down")) == ["backup"]
    assert slugs(await web.page("/?tag=db&status=new")) == ["quiet"]
    assert sorted(slugs(await web.page("/?status=bogus"))) == ["backup", "hourly", "quiet"]
    soup = await web.page("/?tag=web&status=down")
    assert slugs(soup) == []
    assert "No check matches tag web and status down" in text(soup.select_one(".empty-filter"))
    # Counts stay about all checks, and each links to its filter (keeping the tag).
    down = soup.select_one('a[data-status="down"]')
    assert down is not None and text(down) == "1 down" and down["href"] == "?status=down&tag=web"
    # The form works without JavaScript: GET with the current choices selected and a submit button.
    form = soup.select_one("form.filters")
    assert form is not None and form["method"] == "get"
    assert [o["value"] for o in form.select('select[name="tag"] option')] == ["", "db", "prod", "web"]
    selected = form.select_one('select[name="status"] option[selected]')
    assert selected is not None and selected["value"] == "down"
    assert form.select_one('button[type="submit"]') is not None
    # Tags in rows link to their filter.
    tag = row(await web.page("/"), "backup").select_one("a.tag")
    assert tag is not None and tag["href"] == "?tag=db"


async def test_overview_pages_keep_down_checks_first_and_the_filter(web: Web,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_data, "PAGE_SIZE", 2)
    await web.config({f"job-{i}": {"period": "1h", "tags": ["web"] if i % 2 else ["db"]} for i in range(5)})
    for i in range(5):
        await full_run(web, f"job-{i}", 0, [], "/fail" if i == 4 else "")

    def slugs(soup: BeautifulSoup) -> list[str]:
        return [str(tr["data-slug"]) for tr in soup.select("tr.check-row")]

    first = await web.page("/")
    assert slugs(first) == ["job-4", "job-0"]  # down first, on the first page
    assert "Checks 1\u20132 of 5" in text(first.select_one("nav.pages"))
    assert text(first.select_one('a[data-status="up"]')) == "4 up"  # counts are over every page
    nxt = first.select_one('nav.pages a[rel="next"]')
    assert nxt is not None and nxt["href"] == "?page=2"
    assert slugs(await web.page("/?page=2")) == ["job-1", "job-2"]
    last = await web.page("/?page=3")
    assert slugs(last) == ["job-3"] and last.select_one('nav.pages a[rel="next"]') is None
    assert slugs(await web.page("/?page=99")) == ["job-3"]  # past the end: the last page
    db = await web.page("/?tag=db&page=2")
    assert slugs(db) == ["job-2"]
    prev = db.select_one('nav.pages a[rel="prev"]')
    assert prev is not None and prev["href"] == "?tag=db&page=1"
    assert (await web.page("/?tag=web")).select_one("nav.pages") is None  # one page: no page links
    # The strip of a check on a later page is drawn as on the first.
    assert len(row(await web.page("/?page=2"), "job-1").select("ol.strip a.cell")) == 1


# --- the check page -----------------------------------------------------------------------------------------


async def test_check_page_shows_settings_ping_urls_and_ready_to_paste_lines(web: Web) -> None:
    await web.config({"backup": BACKUP})
    soup = await web.page("/checks/backup")
    check = await web.hub.store.check("backup")
    assert check is not None
    uuid_url = f"http://hw.example:8000/ping/{check.uuid}"
    assert text(soup.select_one("h1")) == "Nightly Postgres backup"
    assert text(soup.select_one("#url-uuid")) == uuid_url
    assert text(soup.select_one("#url-slug")) == "http://hw.example:8000/ping/k3y/backup"
    # Copy buttons exist for every line but stay hidden until app.js runs (without it, select the text).
    buttons = soup.select("button[data-copy]")
    assert len(buttons) >= 10 and all(b.has_attr("hidden") for b in buttons)
    assert all(soup.find(id=b["data-copy"]) is not None for b in buttons)
    lines = {text(tr.th): text(tr.code) for tr in soup.select("table.lines tr")}
    curl = "curl -fsS -m 10 --retry 5 -o /dev/null"
    assert lines["start"] == f'{curl} "{uuid_url}/start"'
    assert lines["step dump"] == f'{curl} "{uuid_url}?step=dump"'
    assert lines["step upload"] == f'{curl} "{uuid_url}?step=upload"'
    assert lines["step verify"] == f'{curl} "{uuid_url}?step=verify"'
    assert lines["finish"] == f'{curl} "{uuid_url}"'
    assert lines["fail"] == f'{curl} "{uuid_url}/fail"'
    run_line = "heartwatch run --server http://hw.example:8000 --ping-key k3y backup -- /usr/local/bin/job.sh"
    assert text(soup.select_one("#run-line")) == run_line
    assert text(soup.select_one("#cron-line")) == f"CRON_TZ=Europe/Berlin 0 2 * * * {run_line}"
    assert "heartwatch step upload" in text(soup.select_one("#ping"))

    settings = {text(dt): text(dt.find_next_sibling("dd")) for dt in soup.select("dl.settings dt")}
    assert settings["Schedule"] == "every day at 02:00 Europe/Berlin 0 2 * * *"
    assert settings["Time zone"] == "Europe/Berlin"
    assert settings["Max runtime"] == "2h" and settings["Start grace"] == "15m"
    assert settings["Steps"] == "dump upload within 45m verify"
    assert settings["Tags"] == "db, prod"
    # A check that never pinged says how to start.
    assert "Waiting for the first ping" in text(soup.select_one("#live"))


async def test_check_page_runs_table_shows_steps_where_it_stopped_and_a_duration_chart(web: Web) -> None:
    await web.config({"backup": BACKUP})
    await full_run(web, "backup", 0, ["dump", "upload", "verify"])  # run 1: ok
    await full_run(web, "backup", 60, ["dump", "upload"], "/fail", body=b"upload: connection reset")  # run 2
    await full_run(web, "backup", 120, ["dump"], "none")  # run 3: running
    web.clock.now = T0 + minutes(130)
    soup = await web.page("/checks/backup")

    assert text(soup.select_one(".big-status")) == "running"
    facts = text(soup.select_one(".summary"))
    assert "Where it stopped at dump" in facts
    rows = {int(str(tr["data-run"])): tr for tr in soup.select("tr.run-row")}
    assert sorted(rows) == [1, 2, 3]
    assert cell(rows[1], "Result") == "ok" and cell(rows[1], "Duration") == "took 18m"
    assert cell(rows[2], "Result") == "failed"
    assert cell(rows[3], "Duration") == "running for 10m"

    def chain(tr: Tag) -> list[str]:
        return [text(li) for li in tr.select("ol.chain li")]

    assert chain(rows[1]) == ["start", "dump", "upload", "verify", "finish"]
    # (compact chains hide "not reached" visually; it stays for screen readers and text browsers)
    assert chain(rows[2]) == ["start", "dump", "upload stopped here", "verify not reached", "fail"]
    assert chain(rows[3]) == ["start", "dump now here", "upload not yet", "verify not yet", "finish not yet"]
    stopped = rows[2].select_one(".box.stopped .name")
    assert stopped is not None and text(stopped) == "upload"

    # The timeline: a bar and a dot per step; the dot where it stopped is marked, with a tooltip.
    svg = rows[2].select_one("svg.timeline")
    assert svg is not None and len(svg.select("circle.mark")) == 2
    last_dot = svg.select("circle.mark")[-1]
    assert "stopped" in last_dot["class"]
    assert text(last_dot.title).startswith("stopped at upload at 2024-05-01 03:10:00 CEST (+10m)")
    assert len(rows[1].select("circle.mark")) == 3 and not rows[1].select("circle.stopped")

    chart = soup.select_one("svg.durations")
    assert chart is not None
    bars = chart.select("a")
    assert [a["href"] for a in bars] == ["/checks/backup/runs/1", "/checks/backup/runs/2", "/checks/backup/runs/3"]
    assert text(bars[0].title).startswith("run 1: ok, 18m")
    assert chart.select_one("rect.bar.st-failed") is not None

    log = soup.select("table.events tbody tr")
    assert len(log) == 5 + 4 + 2
    assert cell(log[2], "Ping") == "fail"  # newest first: run 3's step and start, then run 2's fail
    assert "upload: connection reset" in cell(log[2], "Body")


async def test_event_log_collapses_long_bodies(web: Web) -> None:
    await web.config({"hourly": {"period": "1h"}})
    long_body = "".join(f"line {i}: copied\n" for i in range(200)).encode()
    await web.ping("hourly", "/start", at=T0)
    await web.ping("hourly", "/0", at=T0 + minutes(1), body=long_body)
    await web.ping("hourly", "/log", at=T0 + minutes(2), body=b"short note")
    soup = await web.page("/checks/hourly")
    details = soup.select("table.events details")
    assert len(details) == 1
    assert text(details[0].summary).startswith("line 0: copied")
    assert not details[0].has_attr("open")
    assert "line 199: copied" in text(details[0].pre)
    assert [text(p) for p in soup.select("table.events td.body > pre")] == ["short note"]
    assert "finish (exit 0)" in text(soup.select_one("table.events"))


async def test_check_page_pages_through_older_runs(web: Web) -> None:
    await web.config({"hourly": {"period": "1h"}})
    for i in range(55):
        await full_run(web, "hourly", 60 * i, [])
    soup = await web.page("/checks/hourly")
    assert len(soup.select("tr.run-row")) == 50
    older = soup.find("a", string="Older runs")
    assert older is not None and older["href"] == "/checks/hourly?before=6"
    soup = await web.page(str(older["href"]))
    assert [tr["data-run"] for tr in soup.select("tr.run-row")] == ["5", "4", "3", "2", "1"]
    assert text(soup.select_one(".big-status")) == "up"  # the status is still the newest run's


async def test_missed_and_timed_out_runs_read_as_such(web: Web) -> None:
    await web.config({"backup": BACKUP})
    check_id = await web.check_id("backup")
    expected = T0
    await web.save_run(Run(check_id=check_id, state=RunState.MISSED, started_at=expected,
                           ended_at=expected + minutes(15)))
    await web.save_run(Run(check_id=check_id, state=RunState.TIMED_OUT, started_at=T0 + timedelta(days=1),
                           steps=[StepMark("dump", T0 + timedelta(days=1, minutes=5))]))
    web.clock.now = T0 + timedelta(days=1, hours=3)
    soup = await web.page("/checks/backup")
    rows = soup.select("tr.run-row")
    assert [cell(r, "Result") for r in rows] == ["timed out", "missed"]
    assert cell(rows[0], "Duration") == "unfinished"
    assert "no start came" in text(rows[1].select_one("svg"))
    assert "stopped at dump" in text(soup.select_one(".summary"))
    assert soup.select_one("svg.durations path.miss") is not None
    overview = await web.page("/")
    strip = row(overview, "backup").select("ol.strip a.cell")
    assert [text(a) for a in strip] == ["missed", "timed out"]


# --- the run page -------------------------------------------------------------------------------------------


async def test_run_page_lists_that_runs_pings_and_its_chain(web: Web) -> None:
    await web.config({"backup": BACKUP, "other": {}})
    await full_run(web, "backup", 0, ["dump", "upload", "verify"])
    await full_run(web, "backup", 60, ["dump"], "/2", body=b"pg_dump: error: connection refused")
    await full_run(web, "other", 0, [])
    await web.sql("INSERT INTO alerts (check_id, run_id, kind, title, body, created_at) VALUES (1, 2, 'failed',"
                  " 'DOWN backup: failed at dump', 'exit status 2', ?)", ((T0 + minutes(69)).timestamp(),))

    soup = await web.page("/checks/backup/runs/2")
    assert text(soup.select_one("h1")) == "Run #2 of Nightly Postgres backup"
    assert text(soup.select_one(".big-status")) == "failed"
    facts = {text(d.dt): text(d.dd) for d in soup.select(".facts > div")}
    assert facts["Where it stopped"] == "stopped at dump 2024-05-01 03:05:00 CEST"
    assert facts["Exit status"] == "2"
    assert facts["Duration"] == "took 8m"
    chain = [text(li) for li in soup.select("ol.chain li")]
    assert chain == ["start", "dump stopped here +5m", "upload not reached (max 45m)", "verify not reached",
                     "fail +3m"]
    pings = [cell(tr, "Ping") for tr in soup.select("table.events tbody tr")]
    assert pings == ["fail (exit 2)", "step dump", "start"]
    assert "pg_dump: error: connection refused" in text(soup.select_one("table.events"))
    assert "DOWN backup: failed at dump" in text(soup.select_one("ul.alerts"))
    labels = [text(t) for t in soup.select(".tl-big svg text")]
    assert labels == ["dump"]


async def test_unknown_checks_and_runs_are_404_pages(web: Web) -> None:
    await web.config({"backup": BACKUP, "other": {}})
    await full_run(web, "other", 0, [])
    soup = await web.page("/checks/nope", 404)
    assert "Not found" in text(soup.select_one("h1"))
    await web.page("/checks/backup/runs/1", 404)  # run 1 belongs to another check
    await web.page("/checks/backup/runs/99", 404)


# --- live refresh -------------------------------------------------------------------------------------------


async def test_live_part_is_served_alone_and_unchanged_pages_answer_304(web: Web) -> None:
    await web.config({"hourly": {"period": "1h"}})
    live = {"X-Heartwatch-Live": "1"}
    first = await web.get("/", headers=live)
    assert "<html" not in first.text and 'data-slug="hourly"' in first.text
    assert first.headers["cache-control"] == "no-store"
    etag = first.headers["etag"]
    again = await web.get("/", 304, headers={**live, "If-None-Match": etag})
    assert again.text == ""
    await web.ping("hourly", "/start")  # a write: the page changed
    fresh = await web.get("/", headers={**live, "If-None-Match": etag})
    assert fresh.headers["etag"] != etag
    assert cell(row(BeautifulSoup(fresh.text, "html.parser"), "hourly"), "Status") == "running"
    # Relative times and late checks move with the clock, so the token does too.
    web.clock.now += minutes(1)
    await web.get("/", 200, headers={**live, "If-None-Match": fresh.headers["etag"]})
    # The full page embeds the same live part inside #live, which app.js refreshes.
    soup = await web.page("/")
    live_div = soup.select_one("#live[data-live]")
    assert live_div is not None and int(str(live_div["data-refresh-ms"])) > 0
    check_live = await web.get("/checks/hourly", headers=live)
    assert "<html" not in check_live.text and "data-page-title" in check_live.text


# --- escaping and the page's own rules ----------------------------------------------------------------------

EVIL = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'


async def test_names_steps_and_bodies_are_shown_as_text_never_as_markup(web: Web) -> None:
    # The config and ping parsers refuse such step names and tags; the pages must not rely on that.
    await web.config({"backup": {**BACKUP, "name": EVIL}})
    check = await web.hub.store.check("backup")
    assert check is not None
    from dataclasses import replace

    from heartwatch.core.model import StepSpec

    evil_spec = replace(check.spec, steps=(StepSpec(EVIL), StepSpec("upload")), tags=(EVIL,))
    await web.hub.store.sync_config({"backup": evil_spec}, T0)
    await web.save_run(Run(check_id=check.id, state=RunState.FAILED, started_at=T0, ended_at=T0 + minutes(9),
                           steps=[StepMark(EVIL, T0 + minutes(5))]))
    await web.ping("backup", "/start", at=T0 + minutes(60))
    await web.ping("backup", "/fail", at=T0 + minutes(61), body=EVIL.encode() * 20)  # long: in <details>
    await web.ping("backup", "/log", at=T0 + minutes(62), body=EVIL.encode())
    await web.sql("INSERT INTO alerts (check_id, run_id, kind, title, body, created_at) VALUES (?, 1, 'failed', ?,"
                  " ?, ?)", (check.id, EVIL, EVIL, T0.timestamp()))

    for path in ["/", "/checks/backup", "/checks/backup/runs/1", "/checks/backup/runs/2", f"/?tag={EVIL}"]:
        page = (await web.get(path)).text
        soup = BeautifulSoup(page, "html.parser")
        scripts = soup.find_all("script")
        assert [str(s.get("src", "")).split("?")[0] for s in scripts] == ["/static/app.js"], path
        assert all(not s.string for s in scripts)
        for img in soup.find_all("img"):
            assert str(img["src"]).startswith("/badge/"), path
            assert not img.has_attr("onerror")
        assert EVIL in soup.get_text(), path  # shown, as text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        for live in (await web.get(path, headers={"X-Heartwatch-Live": "1"})).text.split("<script"):
            assert "onerror=alert(1)>" not in live.replace("&gt;", "")
    run_page = BeautifulSoup((await web.get("/checks/backup/runs/1")).text, "html.parser")
    assert EVIL in text(run_page.select_one("ol.chain"))
    title = run_page.select_one("svg.timeline circle title")
    assert title is not None and EVIL in title.get_text()


async def test_pages_need_no_inline_script_no_event_handlers_and_nothing_from_elsewhere(web: Web) -> None:
    await web.config({"backup": BACKUP})
    await full_run(web, "backup", 0, ["dump"], "/fail", body=b"x" * 1000)
    for path in ["/", "/checks/backup", "/checks/backup/runs/1", "/checks/none"]:
        r = await web.client.get(path)
        soup = BeautifulSoup(r.text, "html.parser")
        for el in soup.find_all(True):
            assert not [a for a in el.attrs if a.lower().startswith("on")], (path, el.name)
            assert "style" not in el.attrs, (path, el.name)  # a CSP without 'unsafe-inline' styles holds too
        assert not soup.find_all("style")
        for el in soup.find_all(["script", "link", "img"]):
            url = str(el.get("src") or el.get("href"))
            assert url.startswith("/"), (path, url)
        assert re.search(r"https?://(?!hw\.example)", r.text) is None, path
    for asset in ["/static/app.css", "/static/app.js", "/static/favicon.svg"]:
        r = await web.get(asset)
        assert "http://" not in r.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "@import" not in r.text and "url(http" not in r.text
