"""A test's look at the rows behind a store, on a read-only connection of its own (the store offers no raw SQL)."""

from __future__ import annotations

import sqlite3
from typing import Any

from heartwatch.store.sqlite import Store


async def query(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """The rows of `sql` on the store's database as committed now (WAL: the store's writer is never held up)."""
    conn = sqlite3.connect(f"{store.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
