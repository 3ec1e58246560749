"""`heartwatch copy-db`: SQLite to PostgreSQL and back, every row kept (store/copy.py), as the command runs."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.db import query_location
from support.postgres import Cluster

from heartwatch.core.model import CheckSpec, Ping, PingKind
from heartwatch.core.pings import PingRequest
from heartwatch.store.choose import new_store
from heartwatch.store.copy import ORDER
from heartwatch.store.outbox import AlertPolicy

pytestmark = pytest.mark.postgresql
T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)


def copy_db(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTWATCH_")}
    return subprocess.run([sys.executable, "-m", "heartwatch", "copy-db", *args], capture_output=True, text=True,
                          env=env, timeout=120)


async def fill(db: Path) -> None:
    """A database with checks, runs, events, a watch, and an alert whose delivery is pending."""
    store = new_store(db, policy=AlertPolicy(targets=("json://127.0.0.1:9/hook",)))
    await store.open()
    try:
        await store.sync_config({"backup": CheckSpec(slug="backup", schedule="0 2 * * *"),
                                 "sync": CheckSpec(slug="sync", period=timedelta(hours=1))}, T0)
        pings = [("backup", PingKind.START, 0, b""), ("backup", PingKind.SUCCESS, 3, b"ok"),
                 ("sync", PingKind.START, 5, b""), ("sync", PingKind.FAIL, 6, b"\xff\xfeboom")]
        for slug, kind, minutes, body in pings:
            check = await store.check(slug)
            assert check is not None
            await store.record_ping(PingRequest(kind=kind, uuid=check.uuid),
                                    Ping(kind=kind, at=T0 + timedelta(minutes=minutes), body=body))
        await store.session_secret()
    finally:
        await store.close()


def tables(db: Path | str) -> dict[str, list[tuple[object, ...]]]:
    return {t: [tuple(r) for r in query_location(db, f"SELECT * FROM {t} ORDER BY 1")] for t in ORDER}


async def test_sqlite_to_postgresql_and_back_keeps_every_row(tmp_path: Path, pg_cluster: Cluster) -> None:
    sqlite_db, url, back = tmp_path / "hw.db", pg_cluster.new_database(), tmp_path / "back.db"
    await fill(sqlite_db)
    original = tables(sqlite_db)
    assert original["deliveries"] and original["events"] and original["watches"]  # something to carry

    to_pg = copy_db(str(sqlite_db), url)
    assert to_pg.returncode == 0, to_pg.stderr
    assert "4 events" in to_pg.stdout and "1 deliveries" in to_pg.stdout
    assert tables(url) == original
    back_copy = copy_db(url, str(back))
    assert back_copy.returncode == 0, back_copy.stderr
    assert tables(back) == original

    # A server on the copy goes on: same ping key and UUIDs, and new rows get new ids.
    store = new_store(url)
    await store.open()
    try:
        key = dict((r[0], r[1]) for r in original["meta"])["ping_key"]
        assert store.ping_key == key
        result = await store.record_ping(PingRequest(kind=PingKind.START, ping_key=key, slug="backup"),
                                         Ping(kind=PingKind.START, at=T0 + timedelta(days=1)))
        assert result.applied is not None and result.applied.run is not None
        assert result.applied.run.id == max(r[0] for r in original["runs"]) + 1
    finally:
        await store.close()


async def test_a_destination_with_checks_is_refused_unless_forced(tmp_path: Path, pg_cluster: Cluster) -> None:
    sqlite_db, url = tmp_path / "hw.db", pg_cluster.new_database()
    await fill(sqlite_db)
    assert copy_db(str(sqlite_db), url).returncode == 0
    again = copy_db(str(sqlite_db), url)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"heartwatch: copy-db: {url} already holds 2 checks; pass --force to replace everything in it"]
    forced = copy_db(str(sqlite_db), url, "--force")
    assert forced.returncode == 0, forced.stderr
    assert tables(url) == tables(sqlite_db)


def test_nothing_is_copied_from_what_is_not_a_heartwatch_database(tmp_path: Path) -> None:
    missing = copy_db(str(tmp_path / "nope.db"), str(tmp_path / "dst.db"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"heartwatch: copy-db: no database at {tmp_path}/nope.db"
    bad = copy_db(str(tmp_path / "a.db"), "mysql://h/db")
    assert bad.returncode == 2 and "mysql:// is not a database heartwatch knows" in bad.stderr
    assert not (tmp_path / "dst.db").exists()
