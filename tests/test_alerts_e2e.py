"""Alerts end to end: the real `heartwatch serve`, real receivers on loopback, short real durations.

Each test waits for what it expects by polling, then for the outbox to be empty (every delivery done),
and only then counts: an alert that arrived twice, or one that never did, fails the test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.receivers import HttpReceiver, SmtpReceiver
from support.server import Server, running_server
from support.waiting import wait_for

ALERTS = """
[alerts]
urls = ["{url}"]
retry_first = "1s"
"""


@pytest.fixture
def receiver_up() -> bool:
    """Whether the HTTP receiver is listening when the test starts; the outage test starts it later."""
    return True


@pytest.fixture
def receiver(receiver_up: bool) -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    if receiver_up:
        r.start()
    yield r
    r.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    s = SmtpReceiver().start()
    yield s
    s.stop()


@pytest.fixture
def checks_toml() -> str:
    return ""


@pytest.fixture
def server_config(request: pytest.FixtureRequest, receiver: HttpReceiver, checks_toml: str) -> str:
    if "{smtp}" in checks_toml:
        checks_toml = checks_toml.replace("{smtp}", request.getfixturevalue("smtp").url())
    return ALERTS.format(url=receiver.url()) + checks_toml


@pytest.fixture
def server(tmp_path: Path, server_config: str, db_location: Path | str) -> Iterator[Server]:
    """The real server on each store: a SQLite file, and a PostgreSQL database (tests/conftest.py)."""
    with running_server(tmp_path, server_config, db=db_location) as srv:
        yield srv


def query(server: Server, sql: str, *params: Any) -> list[Any]:
    return server.query(sql, *params)


def outbox_empty(server: Server) -> bool:
    """Every alert written so far has been delivered (or given up)."""
    [(pending,)] = query(server, "SELECT count(*) FROM deliveries WHERE next_attempt_at IS NOT NULL")
    return bool(pending == 0)


def next_deadline(server: Server, slug: str) -> float | None:
    [(deadline,)] = query(server, "SELECT w.next_deadline FROM watches w JOIN checks c ON c.id = w.check_id"
                                  " WHERE c.slug = ?", slug)
    return deadline  # type: ignore[no-any-return]


def titles_of(receiver: HttpReceiver, slug: str) -> list[str]:
    return [t for t in receiver.titles() if f" {slug}" in t]


def ping(server: Server, slug: str, suffix: str = "", **kw: Any) -> None:
    r = httpx.post(server.slug_url(slug, suffix), timeout=10, **kw)
    assert r.status_code == 200, r.text


STUCK = """
[checks.backup]
max_runtime = "2s"
steps = ["dump", "upload"]
"""


@pytest.mark.parametrize("checks_toml", [STUCK])
def test_a_run_stuck_at_dump_times_out_once_naming_the_step(server: Server, receiver: HttpReceiver) -> None:
    ping(server, "backup", "/start")
    ping(server, "backup", params={"step": "dump"}, content=b"pg_dump: writing table users")

    wait_for(lambda: titles_of(receiver, "backup"), what="the timed_out alert")
    wait_for(lambda: outbox_empty(server), what="the outbox to empty")
    # nothing else can fall due before the day's reminder ([alerts] remind_every, 1d by default): the count is final
    assert next_deadline(server, "backup") > time.time() + 23 * 3600
    assert titles_of(receiver, "backup") == ['DOWN backup: timed out at step "dump", still running']
    [(_, payload)] = receiver.received
    assert 'Last step: "dump"' in payload["message"]
    assert "pg_dump: writing table users" in payload["message"]
    [run] = server.api("/checks/backup/runs")["runs"]
    assert run["state"] == "timed_out"


@pytest.mark.parametrize("checks_toml", ['[checks.beat]\nperiod = "2s"\nstart_grace = "1s"\n'])
def test_a_missed_start_alerts_once_and_the_next_good_run_recovers(server: Server, receiver: HttpReceiver) -> None:
    wait_for(lambda: titles_of(receiver, "beat"), what="the missed alert")
    ping(server, "beat", "/start")
    ping(server, "beat")
    wait_for(lambda: len(titles_of(receiver, "beat")) >= 2, what="the recovered alert")
    wait_for(lambda: outbox_empty(server), what="the outbox to empty")

    titles = titles_of(receiver, "beat")
    assert titles[0] == "DOWN beat: did not start"
    assert titles[1].startswith("UP beat: recovered after ")
    messages = [payload["message"] for _, payload in receiver.received]
    assert len(messages) == len(set(messages))  # every alert once: no expected start reported twice
    [expected_line] = [line for line in messages[0].splitlines() if line.startswith("Expected a start at")]
    assert sum(expected_line in m for m in messages) == 1


@pytest.mark.parametrize("checks_toml", ["[checks.job]\n"])
def test_a_failure_with_exit_status_3_then_recovery(server: Server, receiver: HttpReceiver) -> None:
    ping(server, "job", "/start")
    ping(server, "job", "/3", content=b"copying...\nrsync: write failed: No space left on device")
    wait_for(lambda: titles_of(receiver, "job"), what="the failed alert")
    ping(server, "job", "/start")
    ping(server, "job", "/0")
    wait_for(lambda: len(titles_of(receiver, "job")) >= 2, what="the recovered alert")
    wait_for(lambda: outbox_empty(server), what="the outbox to empty")

    assert next_deadline(server, "job") is None
    titles = titles_of(receiver, "job")
    assert titles[0] == "DOWN job: failed with exit status 3"
    assert titles[1].startswith("UP job: recovered after ")
    assert len(titles) == 2
    failed = receiver.received[0][1]["message"]
    assert "Exit status: 3" in failed
    assert f"rsync: write failed: No space left on device\n\n{server.url}/checks/job/runs/1\n\nAlert id: " in failed


@pytest.mark.parametrize("checks_toml", ['[checks.job]\nalerts = ["{smtp}"]\n'])
def test_an_e_mail_alert_has_the_title_as_subject(server: Server, receiver: HttpReceiver,
                                                   smtp: SmtpReceiver) -> None:
    ping(server, "job", "/3", content=b"backup.sh: tar exited 2")
    wait_for(lambda: smtp.messages, what="the e-mail")
    wait_for(lambda: outbox_empty(server), what="the outbox to empty")

    [message] = smtp.messages
    assert message["Subject"] == "DOWN job: failed with exit status 3"
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    text = plain.get_content()
    assert "Exit status: 3" in text and "backup.sh: tar exited 2" in text
    assert titles_of(receiver, "job") == ["DOWN job: failed with exit status 3"]  # and the shared target too


@pytest.mark.parametrize("checks_toml", ['[checks.backup]\nmax_runtime = "3s"\n'])
def test_a_deadline_passing_while_stopped_alerts_exactly_once_after_restart(server: Server,
                                                                            receiver: HttpReceiver) -> None:
    ping(server, "backup", "/start")
    server.stop()
    assert receiver.received == []  # stopped before the deadline
    [(deadline,)] = query(server, "SELECT deadline FROM runs")
    wait_for(lambda: time.time() > deadline + 0.5, what="the deadline to pass while stopped")

    server.start()
    wait_for(lambda: titles_of(receiver, "backup"), what="the alert after the restart")
    wait_for(lambda: outbox_empty(server), what="the outbox to empty")
    server.stop()
    server.start()  # and once more: nothing is sent again
    wait_for(lambda: outbox_empty(server), what="the outbox to empty")
    assert next_deadline(server, "backup") > time.time() + 23 * 3600  # only the day's reminder
    assert titles_of(receiver, "backup") == ["DOWN backup: timed out before any step, still running"]


@pytest.mark.parametrize(("checks_toml", "receiver_up"), [("[checks.job]\n", False)])
def test_alerts_wait_out_a_receiver_outage_and_arrive_once(server: Server, receiver: HttpReceiver) -> None:
    ping(server, "job", "/1")
    ping(server, "job", "/2")

    def failed_attempts() -> int:
        [(n,)] = query(server, "SELECT count(DISTINCT delivery_id) FROM delivery_attempts WHERE ok = 0")
        return int(n)

    wait_for(lambda: failed_attempts() == 2, what="both deliveries to fail")
    [(error,)] = query(server, "SELECT error FROM delivery_attempts LIMIT 1")
    assert "connection" in error.lower()
    for _ in range(5):  # pings are answered while the target is down
        ping(server, "job", "/start")
        ping(server, "job", "/0")
    assert not outbox_empty(server)

    receiver.start()
    wait_for(lambda: outbox_empty(server), what="the outbox to empty once the receiver is back")
    titles = sorted(receiver.titles())
    assert len(titles) == 3
    assert titles[:2] == ["DOWN job: failed with exit status 1", "DOWN job: failed with exit status 2"]
    assert titles[2].startswith("UP job: recovered after ")
    assert next_deadline(server, "job") is None  # nothing more can fall due: the count is final
