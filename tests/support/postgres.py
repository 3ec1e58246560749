"""A throwaway PostgreSQL cluster for the tests: initdb into a temporary folder, a free loopback port, trust auth.

One cluster per test session (`pg_cluster` in tests/conftest.py); each test that wants a database gets a fresh,
empty one (`new_database`). Debian's `postgresql` package provides the binaries; without them the tests that
need PostgreSQL skip, saying why. initdb and postgres refuse to run as root, so as root (CI, this VM) they run
as the `postgres` user, in a folder it owns.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from support.ports import free_port
from support.waiting import wait_for

_counter = itertools.count(1)


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb, or where `initdb` is on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


def why_not() -> str | None:
    """None when a cluster can be started here; else the reason the PostgreSQL tests skip."""
    if find_bindir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql; .ci/run does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run initdb as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    return None


class Cluster:
    """A running postgres on 127.0.0.1:<port>; `url(db)` names a database in it."""

    def __init__(self) -> None:
        bindir = find_bindir()
        assert bindir is not None
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="heartwatch-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: pwd.struct_passwd | None = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._user is not None:
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)

    def _as_owner(self) -> dict[str, object]:
        if self._user is None:
            return {}
        user = self._user
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "cwd": str(self.folder)}

    def start(self, durable: bool = False) -> None:
        """`durable`: PostgreSQL's defaults (fsync, synchronous commit), for benchmarks; tests skip the fsyncs."""
        subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                        "--no-sync", "-E", "UTF8", "--locale", "C"],
                       check=True, capture_output=True, **self._as_owner())  # type: ignore[call-overload]
        self._durable = durable
        self.run()

    def run(self) -> None:
        """Start postgres on the cluster's folder and port (again, after `halt`)."""
        log = (self.folder / "postgres.log").open("ab")
        # fsync off: a test cluster need not survive a power cut, and it makes each commit cheap on a shared VM.
        fast = [] if self._durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                         "-c", "full_page_writes=off"]
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.folder), *fast, "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, **self._as_owner())  # type: ignore[call-overload]
        wait_for(self._accepts, 30, "the test PostgreSQL to start")

    def _accepts(self) -> bool:
        import psycopg

        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"postgres exited: {(self.folder / 'postgres.log').read_text()}")
        try:
            psycopg.connect(self.url("postgres"), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "hw") -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def halt(self) -> None:
        """Stop postgres (fast shutdown: its clients are disconnected), keeping the cluster for `run`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: SIGTERM's smart one would wait for the clients
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.folder, ignore_errors=True)
