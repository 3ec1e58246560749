"""Alert delivery through Apprise to real receivers on loopback: an HTTP server for json:// and an
SMTP server (aiosmtpd) for mailto://. No mocks; no request leaves 127.0.0.1."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from support.ports import free_port

from heartwatch.engine.notify import (
    MAX_ATTEMPTS,
    TargetResult,
    backoff,
    deliver,
    deliver_async,
    redact,
    validate_url,
)

# --- receivers ----------------------------------------------------------------------------------


@dataclass
class HttpReceiver:
    port: int
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            receiver.requests.append((self.path, json.loads(self.rfile.read(length))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
    thread.join()


@dataclass
class SmtpReceiver:
    port: int
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver(port=free_port())

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            content = envelope.original_content or b""
            message = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            receiver.messages.append((envelope, message))
            return "250 OK"

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        receiver.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)

    # A plain local server, like a LAN relay: AUTH offered without TLS, as mailto:// (not mailtos://)
    # expects; auth stays optional so aiosmtpd has nothing to warn about.
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=receiver.port,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    yield receiver
    controller.stop()


@pytest.fixture
def refused_port() -> int:
    return free_port()  # nothing listens there any more


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel completes the handshake) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


# --- delivery -----------------------------------------------------------------------------------


async def test_json_target_receives_title_and_body(http_receiver: HttpReceiver) -> None:
    url = f"json://127.0.0.1:{http_receiver.port}/hooks/heartwatch"
    title = 'DOWN nightly-backup: timed out at step "upload"'
    body = "Expected to finish by 04:00 Europe/Berlin.\nLast step: upload at 02:41."

    results = await deliver_async([url], title, body, kind="failure", timeout=10)

    assert results == [TargetResult(redact(url), True, None)]
    assert len(http_receiver.requests) == 1
    path, payload = http_receiver.requests[0]
    assert path == "/hooks/heartwatch"
    assert payload["title"] == title
    assert payload["message"] == body
    assert payload["type"] == "failure"


def test_mailto_target_receives_subject_and_body(smtp_receiver: SmtpReceiver) -> None:
    url = f"mailto://user:pass@127.0.0.1:{smtp_receiver.port}?from=hw@example.org&to=ops@example.org"
    title = "RECOVERED nightly-backup after 3h12m"
    body = "Übertragung wieder in Ordnung: the run finished at 02:47 Europe/Berlin."

    results = deliver([url], title, body, timeout=10)

    assert results == [TargetResult(redact(url), True, None)]
    assert smtp_receiver.logins == [("user", "pass")]
    assert len(smtp_receiver.messages) == 1
    envelope, message = smtp_receiver.messages[0]
    assert envelope.mail_from == "hw@example.org"
    assert envelope.rcpt_tos == ["ops@example.org"]
    assert message["Subject"] == title
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    assert plain.get_content().strip() == body


def test_refused_connection_is_a_failure_with_a_reason(refused_port: int) -> None:
    url = f"json://user:s3cr3t-pw@127.0.0.1:{refused_port}/hook"
    [result] = deliver([url], "title", "body", timeout=10)
    assert not result.ok
    assert result.error is not None
    assert "connection error" in result.error.lower()
    assert "s3cr3t-pw" not in result.error
    assert "s3cr3t-pw" not in result.url_redacted


def test_each_target_has_its_own_result(http_receiver: HttpReceiver, refused_port: int) -> None:
    good = f"json://127.0.0.1:{http_receiver.port}/ok"
    bad = f"json://127.0.0.1:{refused_port}/down"
    unusable = "bogus://example.org"
    results = deliver([bad, good, unusable], "title", "body", timeout=10)
    assert [r.ok for r in results] == [False, True, False]
    assert [r.url_redacted for r in results] == [redact(bad), redact(good), "bogus://..."]
    assert results[2].error is not None and "unknown service bogus://" in results[2].error
    assert [path for path, _ in http_receiver.requests] == ["/ok"]


def test_alerts_in_a_row_to_one_target_are_not_held_back(http_receiver: HttpReceiver) -> None:
    """Apprise spaces a plugin's requests by its service's rate (5.5 s for ntfy): alerts in a row must not
    wait on each other (the wait is longer than this timeout, so a send would fail)."""
    url = f"ntfy://127.0.0.1:{http_receiver.port}/heartwatch"
    results = [deliver([url], f"DOWN job{i}: did not start", "body", timeout=2) for i in range(3)]
    assert [r.ok for [r] in results] == [True, True, True], results
    assert [p["title"] for _, p in http_receiver.requests] == [f"DOWN job{i}: did not start" for i in range(3)]


async def test_silent_target_returns_within_the_timeout_without_blocking_the_loop(silent_port: int) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    [result] = await deliver_async([f"json://127.0.0.1:{silent_port}/hook"], "title", "body", timeout=1)
    elapsed = time.monotonic() - started
    ticking.cancel()

    assert not result.ok
    assert result.error is not None and result.error.strip()
    assert elapsed < 4  # the 1 s timeout plus slack, well before Apprise's own socket timeouts
    assert ticks >= 10  # the loop kept running while the target hung


def test_sync_delivery_honours_the_timeout_too(silent_port: int) -> None:
    started = time.monotonic()
    [result] = deliver([f"json://127.0.0.1:{silent_port}/hook"], "title", "body", timeout=1)
    assert not result.ok
    assert result.error is not None and "did not finish" in result.error
    assert time.monotonic() - started < 3


# --- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("bogus://example.org/x", "unknown service bogus://"),
        ("ntfy.sh/my-topic", "not an Apprise URL"),
        ("  ", "the URL is empty"),
        ("discord://1234/", "Discord"),
        ("json://user:secret@", "JSON"),
    ],
)
def test_validate_url_explains_what_apprise_cannot_use(url: str, message: str) -> None:
    error = validate_url(url)
    assert error is not None
    assert message in error
    assert "secret" not in error


@pytest.mark.parametrize(
    "url",
    [
        "json://127.0.0.1:8000/hook",
        "mailto://user:pass@127.0.0.1:2525?from=hw@example.org&to=ops@example.org",
        "ntfy://ntfy.sh/my-topic",
        "tgram://123456789:abcdefghijklmnopqrstuvwxyzABCDEFGHI/12345",
    ],
)
def test_validate_url_accepts_what_apprise_understands(url: str) -> None:
    assert validate_url(url) is None


def test_redact_hides_the_password_and_keeps_scheme_and_host() -> None:
    redacted = redact("mailto://alerts:hunter2-secret@mail.example.org:2525?from=hw@example.org&to=ops@example.org")
    assert "hunter2-secret" not in redacted
    assert redacted.startswith("mailto://")
    assert "mail.example.org:2525" in redacted


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("tgram://123456789:abcdefghijklmnopqrstuvwxyzABCDEFGHI/12345", "abcdefghijklmnopqrstuvwxyz"),
        ("json://example.org/hook?+X-Api-Key=key-in-a-header", "key-in-a-header"),
        ("json://example.org/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX", "XXXXXXXXXXXXXXXXXXXXXXXX"),
        ("ntfys://ntfy.example.org/topic?token=tk_abcdefghijklmnop", "tk_abcdefghijklmnop"),
        ("bogus://user:pw-of-unknown@example.org/x", "pw-of-unknown"),
    ],
)
def test_redact_hides_tokens(url: str, secret: str) -> None:
    assert secret not in redact(url)


# --- retries ------------------------------------------------------------------------------------


def test_backoff_doubles_from_ten_seconds_up_to_an_hour() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [timedelta(seconds=s) for s in (10, 20, 40, 80)]
    assert backoff(9) == timedelta(seconds=2560)
    assert backoff(10) == timedelta(hours=1)
    assert backoff(1000) == timedelta(hours=1)
    with pytest.raises(ValueError, match="from 1"):
        backoff(0)


def test_retrying_spans_up_to_a_day() -> None:
    waits = sum((backoff(n) for n in range(1, MAX_ATTEMPTS)), timedelta())
    assert timedelta(hours=23) <= waits <= timedelta(days=1)
    assert waits + backoff(MAX_ATTEMPTS) > timedelta(days=1)  # one more attempt would exceed it
