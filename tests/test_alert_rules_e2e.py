"""The alert rules of version 2 end to end: the real `heartwatch serve`, a real json:// receiver and a real
SMTP server (aiosmtpd) on loopback, counting what arrives. Issue 12's defects 1-5 and 7, and issue 14's
clock stepping back (on a real Store with a clock the test moves). A hung run ("still running when the next
run was due", defect 2) needs a minute of schedule: it is counted in test_faketime.py, under a fast clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from support import db
from support.receivers import HttpReceiver, SmtpReceiver
from support.server import Server
from support.waiting import wait_for
from test_alerts_e2e import outbox_empty, ping, query, receiver, receiver_up, smtp, titles_of

from heartwatch.config import Settings
from heartwatch.core.model import CheckSpec, Ping, PingKind
from heartwatch.core.pings import PingRequest
from heartwatch.engine.scheduler import Scheduler
from heartwatch.store.sqlite import Store

RULES = """
[checks.flood]
name = "Nightly backup chain"

[checks.chain]
steps = ["dump", "upload", "verify"]
strict_steps = true

[checks.drain]
max_runtime = "1s"
steps = ["deliver"]

[checks.filtered]
methods = ["POST"]
fail_keywords = ["ERROR"]
alerts = ["{smtp}"]

[checks.paused]
remind_every = "2s"

[checks.held]
remind_every = "1s"
"""


__all__ = ["receiver", "receiver_up", "smtp"]  # fixtures shared with test_alerts_e2e


@pytest.fixture
def checks_toml() -> str:
    return RULES


def test_1_a_flood_of_starts_sends_one_alert_with_the_display_name(server: Server, receiver: HttpReceiver) -> None:
    with httpx.Client(timeout=10) as client:
        for _ in range(200):  # before: 199 "interrupted" alerts
            assert client.post(server.slug_url("flood", "/start")).status_code == 200
    wait_for(lambda: receiver.titles(), what="the alert")
    wait_for(lambda: outbox_empty(server), what="the outbox to empty")
    time.sleep(0.5)
    assert receiver.titles() == ['DOWN Nightly backup chain (flood): interrupted before any step by a new'
                                            ' start']


def test_3_a_late_finish_stays_timed_out_and_sends_no_recovery(server: Server, receiver: HttpReceiver) -> None:
    ping(server, "drain", "/start")
    ping(server, "drain", params={"step": "deliver"})
    wait_for(lambda: titles_of(receiver, "drain"), what="the timeout")
    ping(server, "drain")  # the late finish
    wait_for(lambda: outbox_empty(server), what="the outbox to empty")
    time.sleep(0.5)
    assert titles_of(receiver, "drain") == ['DOWN drain: timed out at step "deliver", still running']
    check = server.api("/checks/drain")
    assert check["status"] == "down" and check["last_run"]["state"] == "timed_out"  # before: ok (green)
    metrics = server.get("/metrics").text  # counted by the run's final state: before, the late finish made it ok
    assert 'heartwatch_runs{slug="drain",state="timed_out"} 1' in metrics


def test_4_pause_and_resume_keep_the_reminders(server: Server, receiver: HttpReceiver) -> None:
    ping(server, "paused", "/fail")
    wait_for(lambda: titles_of(receiver, "paused"), what="the first alert")
    token = {"Authorization": "Bearer " + "t" * 32}
    assert server.post("/api/v1/checks/paused/pause", headers=token).status_code == 200
    assert server.post("/api/v1/checks/paused/resume", headers=token).status_code == 200
    [(reminder,)] = query(server, "SELECT w.next_reminder FROM watches w JOIN checks c ON c.id = w.check_id"
                                  " WHERE c.slug = 'paused'")
    assert reminder is not None  # before: NULL for ever
    wait_for(lambda: len(titles_of(receiver, "paused")) >= 2, what="a reminder after resume")
    assert titles_of(receiver, "paused")[1] == "STILL DOWN paused: failed"


def test_5_strict_steps_names_the_skipped_step(server: Server, receiver: HttpReceiver) -> None:
    ping(server, "chain", "/start")
    for step in ("dump", "verify"):
        ping(server, "chain", params={"step": step})
    ping(server, "chain")
    wait_for(lambda: titles_of(receiver, "chain"), what="the alert")
    assert titles_of(receiver, "chain") == ['DOWN chain: failed, skipped "upload"']  # before: at step "verify"


def test_filters_and_the_e_mail_words(server: Server, receiver: HttpReceiver, smtp: SmtpReceiver) -> None:
    r = httpx.get(server.slug_url("filtered"), timeout=10)  # a link previewer
    assert r.status_code == 200
    [event] = server.api("/checks/filtered/events")["events"]
    assert event["kind"] == "ignored"
    assert server.api("/checks/filtered/runs")["runs"] == []
    ping(server, "filtered", content=b"step 1 ok\nERROR: bucket not found\n")
    ping(server, "filtered", "/137")
    wait_for(lambda: len(smtp.messages) >= 2, what="two e-mails")
    # The two alerts leave together and the sender's workers deliver them in parallel: arrival order is free.
    by_subject = {m["Subject"]: m for m in smtp.messages}
    assert sorted(by_subject) == ["DOWN filtered: failed with exit status 137 (killed by SIGKILL)",
                                  "DOWN filtered: failed, its output holds a fail keyword"]
    plain = by_subject["DOWN filtered: failed, its output holds a fail keyword"].get_body(preferencelist=("plain",))
    assert plain is not None and "Fail keyword found: ERROR: bucket not found" in plain.get_content()


def test_holds_pause_for_a_while_then_say_what_is_still_true_and_mute_stops_reminders(
        server: Server, receiver: HttpReceiver) -> None:
    from click.testing import CliRunner

    from heartwatch.cli.main import main as cli

    result = CliRunner().invoke(cli, ["checks", "pause", "held", "--for", "2s", "--server", server.url,
                                      "--token", "t" * 32])
    assert result.exit_code == 0, result.output
    assert "alerts held until" in result.output
    ping(server, "held", "/4")  # inside the hold: recorded, not sent
    time.sleep(1)
    assert titles_of(receiver, "held") == []
    wait_for(lambda: titles_of(receiver, "held"), what="the alert once the hold ended")
    assert titles_of(receiver, "held")[0] == "DOWN held: failed with exit status 4"

    token = {"Authorization": "Bearer " + "t" * 32}
    muted = server.post("/api/v1/checks/held/mute", headers=token)
    assert muted.status_code == 200 and muted.json()["muted"] is True
    count = len(titles_of(receiver, "held"))
    time.sleep(2.5)  # two reminders' worth
    assert len(titles_of(receiver, "held")) == count
    ping(server, "held")  # recovers: the mute ends with it
    wait_for(lambda: titles_of(receiver, "held")[-1].startswith("UP held: recovered"), what="the recovery")
    assert server.api("/checks/held")["muted"] is False
    bad = server.post("/api/v1/checks/held/pause", headers=token, json={"for": "soon"})
    assert bad.status_code == 422 and "for:" in bad.json()["error"]


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"HEARTWATCH_API_TOKEN": "t" * 32}


@pytest.fixture
def server_config(request: pytest.FixtureRequest, receiver: HttpReceiver, checks_toml: str) -> str:
    smtp = request.getfixturevalue("smtp")
    return (f'[alerts]\nurls = ["{receiver.url()}"]\nretry_first = "1s"\n'
            + checks_toml.replace("{smtp}", smtp.url()))


# --- issue 14, item 10: the clock steps back ----------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_14_10_a_backward_clock_step_recomputes_every_expectation(tmp_path: Path) -> None:
    t0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    clock = Clock(t0 + timedelta(days=3))  # the clock ran three days ahead ...
    store = Store(tmp_path / "hw.db")
    await store.open()
    try:
        scheduler = Scheduler(Settings(db=tmp_path / "hw.db", remind_every=timedelta(0)), store, clock)
        await store.sync_config({"daily": CheckSpec(slug="daily", schedule="0 12 * * *",
                                                    start_grace=timedelta(minutes=5))}, clock())
        await scheduler.run_due()
        [(expected,)] = await db.query(store, "SELECT expected_at FROM watches")
        assert datetime.fromtimestamp(expected, UTC) == datetime(2024, 5, 4, 12, 0, tzinfo=UTC)

        clock.now = t0  # ... and NTP set it right
        await scheduler.run_due()
        [(expected,)] = await db.query(store, "SELECT expected_at FROM watches")
        assert datetime.fromtimestamp(expected, UTC) == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # before: May 4
        clock.now = t0 + timedelta(hours=2, minutes=5)
        assert await scheduler.run_due() == 1  # missed today, not in three days

        check = await store.check("daily")
        assert check is not None
        await store.record_ping(PingRequest(kind=PingKind.SUCCESS, uuid=check.uuid),
                                Ping(kind=PingKind.SUCCESS, at=clock.now + timedelta(minutes=1)))
        [(title,)] = await db.query(store, "SELECT title FROM alerts WHERE kind = 'recovered'")
        assert title == "UP daily: recovered after 1m down"
    finally:
        await store.close()


# --- issue 11, item 6: one bad check never stops the others ------------------------------------------------------


async def test_11_6_a_check_whose_evaluation_raises_is_set_aside_and_the_others_alert(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    t0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    clock = Clock(t0)
    path = tmp_path / "hw.db"
    store = Store(path)
    await store.open()
    specs = {"good": CheckSpec(slug="good", period=timedelta(hours=1), start_grace=timedelta(minutes=5)),
             "gone": CheckSpec(slug="gone", schedule="30 * * * *", timezone="Europe/Berlin")}
    await store.sync_config(specs, t0)
    # The zone vanishes from tzdata while the check is stored (the config would refuse it today).
    await store.writer.call(lambda conn: conn.execute(
        "UPDATE checks SET spec = replace(spec, 'Europe/Berlin', 'Gone/Away') WHERE slug = 'gone'"))
    await store.close()
    store = Store(path)
    await store.open()
    try:
        scheduler = Scheduler(Settings(db=path, remind_every=timedelta(0)), store, clock)
        clock.now = t0 + timedelta(hours=2)
        assert await scheduler.run_due() == 1  # "good" missed its start: the bad check stopped nothing
        assert await scheduler.run_due() == 0  # and the bad one is not tried again and again
        check = await store.check("gone")
        assert check is not None
        result = await store.record_ping(PingRequest(kind=PingKind.FAIL, uuid=check.uuid),
                                         Ping(kind=PingKind.FAIL, at=clock.now, exit_code=1))
        assert result.applied is not None and result.applied.closed  # its pings are stored all the same
        set_aside = [r for r in caplog.records if "set aside" in r.getMessage()]
        assert len(set_aside) == 1 and "gone" in set_aside[0].getMessage()  # logged once, with the slug
        [(deadline,)] = await db.query(store,
            "SELECT next_deadline FROM watches w JOIN checks c ON c.id = w.check_id WHERE c.slug = 'gone'")
        assert deadline is None  # set aside until its next change
    finally:
        await store.close()


async def test_resume_on_ping_lets_a_ping_resume_a_paused_check(tmp_path: Path) -> None:
    t0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    store = Store(tmp_path / "hw.db")
    await store.open()
    try:
        await store.sync_config({"auto": CheckSpec(slug="auto", resume_on_ping=True),
                                 "manual": CheckSpec(slug="manual")}, t0)
        for slug in ("auto", "manual"):
            check = await store.set_paused(slug, True, t0)
            assert check is not None
            await store.record_ping(PingRequest(kind=PingKind.START, uuid=check.uuid),
                                    Ping(kind=PingKind.START, at=t0 + timedelta(minutes=1)))
        assert [(c.slug, c.paused) for c in await store.checks()] == [("auto", False), ("manual", True)]
    finally:
        await store.close()
