"""Real alert receivers on loopback for the alert tests: an HTTP server for Apprise's json://, a port that
accepts and never answers, and an SMTP server (aiosmtpd) for mailto://. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from support.ports import free_port


class HttpReceiver:
    """Collects the JSON that Apprise's json:// posts. Refuses connections until `start()` (and after
    `stop()`), so a test can take a target down and bring it back on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._received: list[tuple[str, dict[str, Any]]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    @property
    def received(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self._received)

    def titles(self) -> list[str]:
        return [payload["title"] for _, payload in self.received]

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver._received.append((self.path, payload))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class SilentPort:
    """A port whose kernel completes the handshake and where nobody ever answers: a hanging target."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self._sock.close()


class SmtpReceiver:
    """aiosmtpd on loopback; `messages` are the parsed e-mails."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
                message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
                assert isinstance(message, EmailMessage)
                receiver.messages.append(message)
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=hw@example.org&to=ops@example.org"

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
