"""migrate(): numbered migrations, each committed with its record; running them again is a no-op."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from heartwatch.store import migrations
from heartwatch.store.migrations import MIGRATIONS, migrate

LATEST = max(v for v, _, _ in MIGRATIONS)
VERSIONS = [v for v, _, _ in MIGRATIONS]  # reserved numbers may leave gaps until the branches are merged


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    # Autocommit mode, as the writer opens it: migrate() manages its own transactions.
    c = sqlite3.connect(tmp_path / "hw.db", isolation_level=None)
    try:
        yield c
    finally:
        c.close()


def schema(conn: sqlite3.Connection) -> list[tuple[str, str, str | None]]:
    return list(conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name"))


def records(conn: sqlite3.Connection) -> list[tuple[int, str, float]]:
    return list(conn.execute("SELECT version, name, applied_at FROM schema_migrations ORDER BY version"))


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def test_versions_are_numbered_in_increasing_order() -> None:
    # Gaps are allowed while branches reserve their numbers (hw-11: 4; hw-12: 5, 6; ...); the order is kept.
    versions = [v for v, _, _ in MIGRATIONS]
    assert versions == sorted(set(versions)) and versions[0] == 1
    assert all(name for _, name, _ in MIGRATIONS)


def test_fresh_database_gets_every_migration(conn: sqlite3.Connection) -> None:
    assert migrate(conn) == VERSIONS
    assert [(v, n) for v, n, _ in records(conn)] == [(v, n) for v, n, _ in MIGRATIONS]
    tables = {name for kind, name, _ in schema(conn) if kind == "table"}
    assert {"meta", "checks", "runs", "events", "schema_migrations"} <= tables
    assert not conn.in_transaction


def test_running_twice_is_a_no_op(conn: sqlite3.Connection) -> None:
    migrate(conn)
    before_schema, before_records = schema(conn), records(conn)
    assert migrate(conn) == []
    assert migrate(conn) == []
    assert schema(conn) == before_schema
    assert records(conn) == before_records  # same rows, same applied_at: nothing re-ran


def test_a_new_connection_sees_the_migrations_as_done(tmp_path: Path, conn: sqlite3.Connection) -> None:
    migrate(conn)
    conn.close()
    again = sqlite3.connect(tmp_path / "hw.db", isolation_level=None)
    try:
        assert migrate(again) == []
        assert len(records(again)) == len(VERSIONS)
    finally:
        again.close()


def test_database_at_version_1_upgrades_to_the_latest(conn: sqlite3.Connection,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", MIGRATIONS[:1])
        assert migrate(conn) == [1]
    # Data written by a version-1 heartwatch.
    conn.execute("INSERT INTO checks (uuid, slug, spec, source, created_at) VALUES ('u', 'old', '{}', 'config', 1)")
    conn.execute("INSERT INTO runs (check_id, state, started_at) VALUES (1, 'ok', 2)")
    conn.execute("INSERT INTO events (check_id, run_id, at, kind) VALUES (1, 1, 2, 'start')")
    v1_run_columns = columns(conn, "runs")

    assert migrate(conn) == VERSIONS[1:]
    assert [v for v, _, _ in records(conn)] == VERSIONS
    assert conn.execute("SELECT slug FROM checks").fetchall() == [("old",)]
    assert conn.execute("SELECT id, state FROM runs").fetchall() == [(1, "ok")]
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
    assert columns(conn, "runs")[: len(v1_run_columns)] == v1_run_columns

    # The upgraded schema is the one a fresh database gets.
    fresh = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(fresh)
        assert schema(conn) == schema(fresh)
    finally:
        fresh.close()


def test_a_failing_migration_leaves_no_trace(conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    migrate(conn)
    before = schema(conn)
    broken = (LATEST + 1, "broken", "CREATE TABLE half_done (x INTEGER); INSERT INTO no_such_table VALUES (1)")
    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn)
    assert not conn.in_transaction
    assert schema(conn) == before  # half_done was rolled back with the failing statement
    assert len(records(conn)) == len(VERSIONS)


def test_version_2_upgrade_puts_the_run_state_in_the_runs_by_check_index(conn: sqlite3.Connection,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", MIGRATIONS[:2])
        assert migrate(conn) == [1, 2]
    conn.execute("INSERT INTO checks (uuid, slug, spec, source, created_at) VALUES ('u', 'old', '{}', 'config', 1)")
    conn.executemany("INSERT INTO runs (check_id, state, started_at) VALUES (1, ?, ?)",
                     [("ok", 1), ("failed", 2), ("running", 3)])

    assert migrate(conn) == VERSIONS[2:]
    assert migrate(conn) == []
    indexed = [row[2] for row in conn.execute("PRAGMA index_info(runs_by_check)")]
    assert indexed == ["check_id", "id", "state"]
    # The status page's "newest run state per check" is answered from the index alone.
    newest = "SELECT (SELECT state FROM runs r WHERE r.check_id = c.id ORDER BY r.id DESC LIMIT 1) FROM checks c"
    plan = " ".join(str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + newest))
    assert "COVERING INDEX runs_by_check" in plan
    assert conn.execute(newest).fetchall() == [("running",)]
    assert conn.execute("SELECT state FROM runs WHERE check_id = 1 ORDER BY id").fetchall() == [
        ("ok",), ("failed",), ("running",)]
