"""Which store a `[server] db` value opens: a SQLite file (store/sqlite.py) or a PostgreSQL URL (store/postgres.py).

PostgreSQL's driver (psycopg 3) is imported only for a URL, so a SQLite install needs nothing more.
"""

from __future__ import annotations

from pathlib import Path

from heartwatch.config import is_database_url
from heartwatch.core.settings import Synchronous
from heartwatch.store.outbox import AlertPolicy
from heartwatch.store.sqlite import Store


class MissingDriver(Exception):
    """A PostgreSQL URL without psycopg installed: `str()` is the line to show."""


def new_store(db: Path | str, retention: int = 1000, synchronous: Synchronous = Synchronous.NORMAL,
              policy: AlertPolicy | None = None, max_checks: int = 10_000) -> Store:
    """The store for `db`, not opened yet."""
    if is_database_url(db):
        try:
            from heartwatch.store.postgres import PostgresStore
        except ImportError as e:
            raise MissingDriver(f"a postgresql:// database needs psycopg 3 ({e}): pip install 'psycopg[binary]'"
                                " (or heartwatch[postgresql])") from None
        return PostgresStore(str(db), retention=retention, synchronous=synchronous, policy=policy,
                             max_checks=max_checks)
    return Store(Path(db), retention=retention, synchronous=synchronous, policy=policy, max_checks=max_checks)
