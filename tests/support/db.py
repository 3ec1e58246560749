"""A test's look at the rows behind a store, on a read-only connection of its own (the store offers no raw SQL).

Statements are written in SQLite's dialect, as the store's own; on PostgreSQL they are translated as the store's
are (store/dialect.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from heartwatch.store.sqlite import Store


async def query(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """The rows of `sql` on the store's database as committed now (the store's writer is never held up)."""
    url = getattr(store, "url", None)
    if url is not None:
        import psycopg

        from heartwatch.store.dialect import translate

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as pg:
            cur = await pg.execute(translate(sql, bool(params))[0], params or None)
            return await cur.fetchall()
    conn = sqlite3.connect(f"{store.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def query_location(db: Path | str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """The rows of `sql` (SQLite's dialect) on a database given by its file or URL, as committed now."""
    if isinstance(db, str):
        import psycopg

        from heartwatch.store.dialect import translate

        with psycopg.connect(db, autocommit=True) as pg:
            return pg.execute(translate(sql, bool(params))[0], params or None).fetchall()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
