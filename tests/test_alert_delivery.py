"""Alert delivery end to end: e-mail as plain text, Apprise's per-request timeout, the alert's stable id, and
SIGHUP applying changed alert targets.

The real `heartwatch serve` (or heartwatch's own `deliver`), real Apprise, and the real receivers of
tests/receivers.py on loopback: an HTTP server for json:// (optionally slow) and aiosmtpd for mailto://.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.receivers import HttpReceiver, SmtpReceiver
from support.server import Server, running_server
from support.waiting import wait_for

from heartwatch.engine.notify import ALERT_ID_HEADER, deliver
from heartwatch.engine.sender import _Due, _message

#: What a job may print: markup that must never become a live link or a remote image in an alert.
EVIL = '<a href="http://evil.example/">click to fix</a> <img src="http://evil.example/pixel.png">'
OUTPUT = f"dump: 3 tables\nupload: connection reset\n  retrying in 5s\n{EVIL}\nupload: gave up"

ALERTS = """
[alerts]
urls = ["{url}"]
retry_first = "1s"

[checks.job]
"""


def query(server: Server, sql: str, *params: Any) -> list[Any]:
    conn = sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def outbox_empty(server: Server) -> bool:
    [(pending,)] = query(server, "SELECT count(*) FROM deliveries WHERE next_attempt_at IS NOT NULL")
    return bool(pending == 0)


def ping(server: Server, slug: str, suffix: str = "", **kw: Any) -> None:
    r = httpx.post(server.slug_url(slug, suffix), timeout=10, **kw)
    assert r.status_code == 200, r.text


def alert_ids(server: Server) -> list[str]:
    """Each alert's id as heartwatch means to send it: the check's uuid and the alert's row id."""
    return [f"{uuid}.{alert}" for uuid, alert in
            query(server, "SELECT c.uuid, a.id FROM alerts a JOIN checks c ON c.id = a.check_id ORDER BY a.id")]


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    s = SmtpReceiver().start()
    yield s
    s.stop()


# --- item 8: e-mail is plain text ------------------------------------------------------------------------------


@pytest.mark.parametrize("url_format", ["", "&format=html"])
def test_an_e_mail_alert_keeps_its_lines_and_never_renders_the_jobs_markup(tmp_path: Path, smtp: SmtpReceiver,
                                                                          url_format: str) -> None:
    # By default a single text/plain part; a URL that asks Apprise for HTML mail (`format=html`) also gets a
    # text/html part, made from the text with the job's markup escaped.
    with running_server(tmp_path, ALERTS.format(url=smtp.url() + url_format)) as server:
        ping(server, "job", "/3", content=OUTPUT.encode())
        wait_for(lambda: smtp.messages, what="the e-mail")
        wait_for(lambda: outbox_empty(server), what="the outbox to empty")
        [(stored_body,)] = query(server, "SELECT body FROM alerts")
        [alert_id] = alert_ids(server)

    [message] = smtp.messages
    parts = [part for part in message.walk() if not part.is_multipart()]
    assert [part.get_content_type() for part in parts if part.get_content_type() == "text/plain"] == ["text/plain"]
    for part in parts:
        content = part.get_content().replace("\r\n", "\n")  # mail's line ends are CRLF; either is a line
        kind = part.get_content_type()
        if kind == "text/plain":
            # The alert as written, line for line, with its id as the last line (the part Apprise derives from
            # its HTML collapses a line's leading spaces: only the lines' words are compared there).
            expected = f"{stored_body}\n\nAlert id: {alert_id}"
            if url_format:
                assert [line.strip() for line in content.strip().splitlines()] == [
                    line.strip() for line in expected.splitlines()]
            else:
                assert content.rstrip("\n") == expected
                assert OUTPUT in content  # the job's lines, each on its own line, the markup as text
        elif kind == "text/html":
            assert not re.search(r"<a\b[^>]*\bhref\s*=\s*[\"']?https?://evil\.example", content, re.I), content
            assert not re.search(r"<img\b[^>]*\bsrc\s*=\s*[\"']?https?://evil\.example", content, re.I), content
            assert "&lt;a" in content and "&lt;img" in content  # shown as text
        else:
            pytest.fail(f"unexpected {kind} part in an alert e-mail")
    assert message[ALERT_ID_HEADER] == alert_id


# --- item 9: the per-request timeout -----------------------------------------------------------------------------


def test_deliver_waits_for_a_target_that_answers_in_5_seconds() -> None:
    slow = HttpReceiver(delay=5).start()
    try:
        [result] = deliver([slow.url()], "title", "body", timeout=30)
        assert result.ok, result.error
        assert len(slow.received) == 1
    finally:
        slow.stop()


def test_a_timeout_given_in_the_url_is_kept() -> None:
    # `rto=1` is the user's own choice for this target: it is not raised to the default 30 s.
    slow = HttpReceiver(delay=3).start()
    try:
        started = time.monotonic()
        [result] = deliver([slow.url() + "?rto=1"], "title", "body", timeout=30)
        assert not result.ok and time.monotonic() - started < 2.5
    finally:
        slow.stop()


def test_a_target_answering_in_5_seconds_gets_the_alert_exactly_once(tmp_path: Path) -> None:
    slow = HttpReceiver(delay=5).start()
    try:
        with running_server(tmp_path, ALERTS.format(url=slow.url())) as server:
            ping(server, "job", "/3")
            # Done when the delivery is recorded, or as soon as a second copy arrives (Apprise's old 4 s).
            wait_for(lambda: (slow.received and outbox_empty(server)) or len(slow.received) > 1, timeout=30,
                     what="the delivery to be recorded")
            time.sleep(1.5)  # a retry would come 1 s after a failed attempt
            attempts = query(server, "SELECT ok, error FROM delivery_attempts")
        assert len(slow.received) == 1
        assert attempts == [(1, None)]
    finally:
        slow.stop()


# --- item 9: the stable id -------------------------------------------------------------------------------------


def test_a_repeat_carries_the_same_id_in_header_and_body(tmp_path: Path) -> None:
    # The first POST arrives but is answered after the sender stopped waiting (`rto=1`): at least once means
    # it comes again, and the receiver can tell it is the same alert.
    receiver = HttpReceiver(delay=2, delayed=1).start()
    try:
        with running_server(tmp_path, ALERTS.format(url=receiver.url() + "?rto=1")) as server:
            ping(server, "job", "/3")
            wait_for(lambda: len(receiver.received) >= 2 and outbox_empty(server), timeout=20, what="the repeat")
            ids = alert_ids(server)
            [check_uuid] = [c["uuid"] for c in server.api("/checks")["checks"]]
    finally:
        receiver.stop()
    assert len(ids) == 1 and ids[0].startswith(f"{check_uuid}.")
    assert [headers[ALERT_ID_HEADER] for headers in receiver.headers] == ids * 2
    for _, payload in receiver.received:
        assert payload["message"].splitlines()[-1] == f"Alert id: {ids[0]}"


def test_a_digest_id_depends_on_its_alerts_not_their_order() -> None:
    dues = [_Due(i, "json://x", 0, "failed", f"DOWN job-{i}", "body", 0.0, f"uuid-{i}.{i}") for i in range(1, 6)]
    _, body, _, digest_id = _message(dues, None)
    assert digest_id.startswith("digest-") and body.endswith(f"\n\nDigest id: {digest_id}")
    assert _message(dues[::-1], None)[3] == digest_id
    assert _message(dues[:4], None)[3] != digest_id
    assert _message(dues[:1], None)[3] == "uuid-1.1"  # one alert: its own id


# --- item 9: SIGHUP applies changed targets ----------------------------------------------------------------------


def test_sighup_sends_the_next_alert_to_the_new_target_only(tmp_path: Path) -> None:
    old, new = HttpReceiver().start(), HttpReceiver().start()
    try:
        with running_server(tmp_path, ALERTS.format(url=old.url())) as server:
            ping(server, "job", "/3")
            wait_for(lambda: old.received and outbox_empty(server), what="the first alert")

            server.config_path.write_text(ALERTS.format(url=new.url()))
            assert server.proc is not None
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "alert targets: 1 URL (changed)" in server.log(), what="the reload's log line")

            ping(server, "job", "/0")
            wait_for(lambda: new.received and outbox_empty(server), what="the recovery alert")
        assert [title.split()[0] for title in old.titles()] == ["DOWN"]
        assert [title.split()[0] for title in new.titles()] == ["UP"]
    finally:
        old.stop()
        new.stop()
