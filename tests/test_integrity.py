"""Start-up integrity: a damaged database, or a file that is not one, is refused with one clear line.

The damaged database is a real one, written by the real server, with bytes overwritten in the middle of
one of its pages. heartwatch must say so and exit non-zero before writing anything into it.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.ports import free_port
from support.server import Server

from heartwatch.store.sqlite import DamagedDatabase, Store


def serve_once(db: Path) -> subprocess.CompletedProcess[str]:
    """`heartwatch serve` on `db`, which should refuse to start: it must exit on its own."""
    return subprocess.run([sys.executable, "-m", "heartwatch", "serve", "--db", str(db), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=15)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damage_a_page(db: Path) -> int:
    """Overwrite the middle half of the file's middle page (in these files, a page full of events)."""
    conn = sqlite3.connect(db)
    try:
        [(page_size,)] = conn.execute("PRAGMA page_size").fetchall()
        [(pages,)] = conn.execute("PRAGMA page_count").fetchall()
    finally:
        conn.close()
    page = pages // 2 + 1
    with db.open("r+b") as f:
        f.seek((page - 1) * page_size + page_size // 4)
        f.write(random.Random(7).randbytes(page_size // 2))
    return int(page)


def assert_refused(result: subprocess.CompletedProcess[str], db: Path, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith(f"heartwatch: the database {db} is damaged")
    assert "Restore it from a backup" in line
    for word in words:
        assert word in line


@pytest.fixture(scope="module")
def real_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database written by the real server (checks, runs, a few hundred events), closed cleanly."""
    tmp = tmp_path_factory.mktemp("real")
    config = tmp / "heartwatch.toml"
    config.write_text("[checks.backup]\n[checks.sync]\n")
    server = Server(config, tmp / "heartwatch.db")
    server.start()
    try:
        with httpx.Client(timeout=10) as http:
            for i in range(80):
                for slug in ("backup", "sync"):
                    r = http.post(server.slug_url(slug), params={"step": "start" if i % 2 == 0 else "finish"},
                                  content=f"run {i} of {slug}: ".encode() + b"x" * 900)
                    assert r.status_code == 200
    finally:
        assert server.stop(signal.SIGTERM) == 0  # a clean stop checkpoints the WAL into the file
    assert not Path(f"{server.db_path}-wal").exists()
    return server.db_path


def test_a_database_with_a_damaged_page_is_refused_with_one_line(real_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "damaged.db"
    shutil.copy(real_db, db)
    damage_a_page(db)
    before = digest(db)

    result = serve_once(db)
    assert_refused(result, db, "quick_check")
    assert digest(db) == before  # refused before any migration or write touched it

    # The undamaged original still starts: it is the damage that is refused, not the file.
    healthy = tmp_path / "healthy.db"
    shutil.copy(real_db, healthy)
    server = Server(tmp_path / "none.toml", healthy)
    server.config_path.write_text("")
    server.start()
    assert server.api("/checks/backup/events?limit=1")["events"]
    server.stop()


@pytest.mark.parametrize("content", [b"#!/bin/sh\necho this is a backup script, not a database\n" * 50,
                                     random.Random(3).randbytes(64 * 1024)],
                         ids=["text", "random-bytes"])
def test_a_file_that_is_not_a_database_is_refused_with_one_line(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "heartwatch.db"
    db.write_bytes(content)
    result = serve_once(db)
    assert_refused(result, db, "not a database")
    assert db.read_bytes() == content


async def test_store_open_raises_damaged_database_and_leaves_the_file_alone(real_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "damaged.db"
    shutil.copy(real_db, db)
    damage_a_page(db)
    before = digest(db)
    store = Store(db)
    with pytest.raises(DamagedDatabase, match="quick_check"):
        await store.open()
    await store.close()
    assert digest(db) == before


def test_a_database_path_that_cannot_be_opened_is_not_called_damaged(tmp_path: Path) -> None:
    db = tmp_path / "a-directory.db"
    db.mkdir()
    result = serve_once(db)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"heartwatch: cannot open the database {db}")
