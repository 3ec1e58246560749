"""The real `heartwatch serve`, as a subprocess on a free loopback port, the way users run it.

`running_server` starts one for a block; tests get one from the `server` fixture (tests/conftest.py, one
server per test, with the module's `server_config` and `server_env`) or, where the tests of a module do not
need a fresh database each, from `server = shared_server(CONFIG)` in the module: one server for all of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.db import query_location
from support.ports import free_port
from support.waiting import wait_for

PING_KEY = "test-key"


def answers_healthz(url: str, proc: subprocess.Popen[Any], log: Callable[[], str]) -> bool:
    """One look: True once `url` answers /healthz; fails with the process's output if it has exited."""
    if proc.poll() is not None:
        raise AssertionError(f"heartwatch exited with {proc.returncode}:\n{log()}")
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Server:
    """A real heartwatch process. `stop()`/`start()` restart it on the same port and database."""

    def __init__(self, config_path: Path, db_path: Path, env: Mapping[str, str] | None = None,
                 db_url: str | None = None) -> None:
        self.config_path, self.db_path = config_path, db_path
        # A postgresql:// URL instead of the SQLite file db_path (the log still goes beside db_path).
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ping_key = PING_KEY
        self.env = {**os.environ, "HEARTWATCH_PING_KEY": PING_KEY, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = db_path.with_suffix(".log")

    def start(self, timeout: float = 20) -> None:
        log = self.log_path.open("a")
        proc = self.proc = subprocess.Popen(
            [sys.executable, "-m", "heartwatch", "serve", "--config", str(self.config_path),
             "--db", self.db_url or str(self.db_path), "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, text=True, env=self.env)
        try:
            wait_for(lambda: answers_healthz(self.url, proc, self.log), timeout, "heartwatch to start")
        except AssertionError as e:
            raise RuntimeError(f"{e}\n{self.log()}") from None

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

    @property
    def db(self) -> Path | str:
        """Its database: the SQLite file's path or the PostgreSQL URL."""
        return self.db_url or self.db_path

    def query(self, sql: str, *params: Any) -> list[Any]:
        """Rows of `sql` (SQLite's dialect) as committed now, read beside the running server."""
        return query_location(self.db, sql, params)

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


@contextmanager
def running_server(folder: Path, config: str, env: Mapping[str, str] | None = None,
                   db: Path | str | None = None) -> Iterator[Server]:
    """A real heartwatch with `config` (TOML text) and its database in `folder` (or `db`), stopped afterwards."""
    path = folder / "heartwatch.toml"
    path.write_text(config)
    srv = Server(path, db if isinstance(db, Path) else folder / "heartwatch.db", env,
                 db_url=db if isinstance(db, str) else None)
    srv.start()
    try:
        yield srv
    finally:
        if srv.proc is not None:
            srv.stop()


def shared_server(config: str, env: Mapping[str, str] | None = None) -> Any:
    """A `server` fixture for a module whose tests can share one server (and its database): started before the
    module's first test that asks for it, stopped after its last. Use as `server = shared_server(CONFIG)`."""

    @pytest.fixture(scope="module")
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
        with running_server(tmp_path_factory.mktemp("server"), config, env) as srv:
            yield srv

    return server
