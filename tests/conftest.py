"""Shared fixtures. `server` runs the real `heartwatch serve` (tests/support/server.py) on a free loopback port,
one per test; a module whose tests can share one says `server = shared_server(CONFIG)` instead.

The store's two databases: `db_location` is a fresh SQLite file or a fresh database in the session's throwaway
PostgreSQL cluster (tests/support/postgres.py), so a test taking it runs on both; `new_db()` makes another of
the same kind. Without PostgreSQL installed the PostgreSQL half skips, saying why.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from support.postgres import Cluster, why_not
from support.server import Server, running_server

from heartwatch.store.choose import new_store
from heartwatch.store.sqlite import Store


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    reason = why_not()
    if reason:
        pytest.skip(reason)
    cluster = Cluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_kind(request: pytest.FixtureRequest) -> str:
    """Which store a test runs on: "sqlite" or "postgresql"."""
    return str(request.param)


@pytest.fixture
def new_db(db_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[], Path | str]:
    """Makes a fresh, empty database of the test's kind: a SQLite file's path or a PostgreSQL URL."""
    if db_kind == "postgresql":
        cluster: Cluster = request.getfixturevalue("pg_cluster")
        return cluster.new_database
    names = (tmp_path / f"hw{i}.db" for i in itertools.count())
    return lambda: next(names)


@pytest.fixture
def db_location(new_db: Callable[[], Path | str]) -> Path | str:
    return new_db()


@pytest.fixture
async def store(db_location: Path | str) -> AsyncIterator[Store]:
    """An open store (SQLite or PostgreSQL, as `db_kind` says) on a fresh database, closed afterwards."""
    s = new_store(db_location)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def server_config() -> str:
    """The TOML the `server` fixture starts with; override in a test module to add checks."""
    return ""


@pytest.fixture
def server_env() -> dict[str, str]:
    """Extra environment for the `server` fixture."""
    return {}


@pytest.fixture
def server(tmp_path: Path, server_config: str, server_env: dict[str, str]) -> Iterator[Server]:
    with running_server(tmp_path, server_config, server_env) as srv:
        yield srv
