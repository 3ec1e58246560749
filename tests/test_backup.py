"""`heartwatch backup PATH`: a consistent copy taken while the real server takes pings, and the README's restore."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from support.server import Server
from support.waiting import wait_for

from heartwatch.store.backup import backup


@pytest.fixture
def server_config() -> str:
    return '[checks.backup]\nsteps = ["dump"]\n[checks.sync]\n'


def hw_backup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heartwatch", "backup", *args],
                          capture_output=True, text=True, timeout=60)


def bodies(db: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        [(integrity,)] = conn.execute("PRAGMA integrity_check").fetchall()
        assert integrity == "ok"
        return {bytes(b).decode() for (b,) in conn.execute("SELECT body FROM events WHERE body IS NOT NULL")}
    finally:
        conn.close()


class Pinger:
    """Threads pinging both checks with a unique marker in each body; remembers when each was answered."""

    def __init__(self, server: Server, threads: int = 3) -> None:
        self.server = server
        self.answered: list[tuple[float, str]] = []
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Pinger:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def _run(self, n: int) -> None:
        seq = 0
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                marker = f"p{n}-{seq}"
                step = ("start", "dump", "finish")[seq % 3]
                slug = ("backup", "sync")[seq // 3 % 2]
                seq += 1
                try:
                    r = http.post(self.server.slug_url(slug), params={"step": step, "rid": f"r{n}-{seq // 3}"},
                                  content=marker.encode())
                except httpx.HTTPError as e:
                    self.problems.append(repr(e))
                    continue
                if r.status_code == 200:
                    self.answered.append((time.monotonic(), marker))
                else:
                    self.problems.append(f"{r.status_code} {r.text}")

    def answered_since(self, t: float) -> list[str]:
        return [m for at, m in list(self.answered) if at >= t]


def test_a_backup_while_serving_is_consistent_and_has_every_ping_answered_before_it(server: Server,
                                                                                    tmp_path: Path) -> None:
    copy = tmp_path / "backups" / "heartwatch-copy.db"
    copy.parent.mkdir()
    with Pinger(server) as pinger:
        wait_for(lambda: len(pinger.answered) >= 300 or pinger.problems, what="300 answered pings")
        assert pinger.problems == []
        before = {m for _, m in list(pinger.answered)}
        began = time.monotonic()
        result = hw_backup(str(copy), "--db", str(server.db_path))
        during = pinger.answered_since(began)
        ended = time.monotonic()
        wait_for(lambda: pinger.answered_since(ended), what="pings answered after the copy")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith(f"heartwatch: copied {server.db_path} to {copy}: ") and line.endswith("quick_check ok")

    stored = bodies(copy)
    missing = before - stored
    print(f"\nbackup while serving: {len(before)} pings answered before it, all in the copy: {not missing}; "
          f"{len(during)} answered while it ran; the copy has {len(stored)} events")
    assert pinger.problems == []
    assert missing == set()
    assert stored <= {m for _, m in pinger.answered}  # nothing in the copy that was not a real ping
    assert during, "the server must go on answering while the backup runs"
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]  # one file: no -wal, no partial left
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    finally:
        conn.close()

    # Restore as the README says: stop, copy over the database, remove stale -wal/-shm, start.
    server.stop()
    shutil.copy(copy, server.db_path)
    for suffix in ("-wal", "-shm"):
        Path(f"{server.db_path}{suffix}").unlink(missing_ok=True)
    server.start()
    assert bodies(server.db_path) == stored  # the server runs on exactly the backup's history
    [newest] = server.api("/checks/sync/events?limit=1")["events"]
    assert newest["body"] in stored
    assert httpx.post(server.slug_url("sync"), content=b"after the restore", timeout=10).status_code == 200


def test_an_existing_path_is_kept_unless_forced(server: Server, tmp_path: Path) -> None:
    assert httpx.post(server.slug_url("backup"), content=b"first", timeout=10).status_code == 200
    copy = tmp_path / "copy.db"
    copy.write_bytes(b"last week's backup")

    result = hw_backup(str(copy), "--db", str(server.db_path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"heartwatch: backup failed: {copy} exists; pass --force to overwrite it"
    assert copy.read_bytes() == b"last week's backup"

    result = hw_backup(str(copy), "--config", str(server.config_path), "--db", str(server.db_path), "--force")
    assert result.returncode == 0, result.stderr
    assert "first" in bodies(copy)

    result = hw_backup(str(tmp_path / "other.db"), "--db", str(tmp_path / "no-such.db"))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("heartwatch: backup failed: no database at")
    assert not (tmp_path / "no-such.db").exists()  # and none was created by looking


COMMITTER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA synchronous=OFF")  # as many commits as can be: each one would restart a naive copy
print("ready", flush=True)
while True:
    conn.execute("INSERT INTO events (body) VALUES (x'00')")
"""


def test_a_step_wise_copy_finishes_while_another_process_commits_all_along(tmp_path: Path) -> None:
    """Page by page (one page per step) under constant commits from another process, as the server's are:
    the pinned snapshot keeps the copy from restarting at each commit, so it finishes, and is consistent."""
    source = tmp_path / "live.db"
    conn = sqlite3.connect(source, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE checks (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body BLOB)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO events (body) VALUES (?)", ((b"x" * 500,) for _ in range(20000)))
    conn.execute("COMMIT")
    conn.close()
    committer = subprocess.Popen([sys.executable, "-c", COMMITTER, str(source)], stdout=subprocess.PIPE, text=True)
    reports = []
    copier = threading.Thread(target=lambda: reports.append(backup(source, tmp_path / "copy.db", step_pages=1)),
                              daemon=True)
    try:
        assert committer.stdout is not None and committer.stdout.readline() == "ready\n"
        copier.start()
        copier.join(timeout=30)
    finally:
        committer.kill()
        committer.wait()
    assert not copier.is_alive(), "the copy restarted with every commit and never finished"
    [report] = reports
    conn = sqlite3.connect(source)
    try:
        [(events_after,)] = conn.execute("SELECT count(*) FROM events").fetchall()
    finally:
        conn.close()
    assert report.pages > 2000 and 20000 <= report.events < events_after
    assert report.restarts == 0  # one snapshot: no commit of the other process made SQLite start over
    print(f"\nstep-wise backup: {report.pages} one-page steps in {report.seconds:.2f} s while another process "
          f"committed {events_after - report.events} more events; {report.restarts} restarts")
