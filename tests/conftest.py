"""Shared fixtures. `server` runs the real `heartwatch serve` as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

PING_KEY = "test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A real heartwatch process. `stop()`/`start()` restart it on the same port and database."""

    def __init__(self, config_path: Path, db_path: Path, env: dict[str, str] | None = None) -> None:
        self.config_path, self.db_path = config_path, db_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ping_key = PING_KEY
        self.env = {**os.environ, "HEARTWATCH_PING_KEY": PING_KEY, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = db_path.with_suffix(".log")

    def start(self, timeout: float = 20) -> None:
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "heartwatch", "serve", "--config", str(self.config_path),
             "--db", str(self.db_path), "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, text=True, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"heartwatch exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"heartwatch did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=10, **kw)

    def api(self, path: str) -> Any:
        """GET a JSON API path (e.g. /api/v1/checks/backup/runs?limit=5) and return the parsed JSON."""
        path = path if path.startswith("/api/") else "/api/v1" + path
        r = self.get(path)
        r.raise_for_status()
        return r.json()

    def slug_url(self, slug: str, suffix: str = "") -> str:
        return f"{self.url}/ping/{self.ping_key}/{slug}{suffix}"


@pytest.fixture
def server_config() -> str:
    """The TOML the `server` fixture starts with; override in a test module to add checks."""
    return ""


@pytest.fixture
def server_env() -> dict[str, str]:
    """Extra environment for the `server` fixture."""
    return {}


@contextmanager
def running_server(folder: Path, config: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """A real heartwatch with `config` (TOML text) and its database in `folder`, stopped afterwards."""
    path = folder / "heartwatch.toml"
    path.write_text(config)
    srv = Server(path, folder / "heartwatch.db", env)
    srv.start()
    try:
        yield srv
    finally:
        if srv.proc is not None:
            srv.stop()


@pytest.fixture
def server(tmp_path: Path, server_config: str, server_env: dict[str, str]) -> Iterator[Server]:
    with running_server(tmp_path, server_config, server_env) as srv:
        yield srv
