"""Uptime: what the 24 h / 7 d / 30 d figures cost a page of the overview (50 checks) and a check page.

    .venv/bin/python bench/uptime.py [--checks 50] [--runs 1000] [--repeats 20]

Builds a database of --checks checks with --runs finished runs each (the retention's default of 1,000), spread
over the last 40 days with one run in ten failed, then times `Store.uptimes` for all of them at once (the
overview's page asks for the 30-day window only; all three windows for comparison) and for one check with every
window (a check page): the median of --repeats calls, with the runs_by_start index of migration 8, and again
without it (dropped) to show what the index is for.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from heartwatch.config import parse_check
from heartwatch.store.sqlite import Store
from heartwatch.store.uptime import MONTH, WINDOWS

NOW = datetime(2024, 6, 1, tzinfo=UTC)


async def timed(store: Store, ids: list[int], repeats: int, windows: tuple[tuple[str, timedelta], ...] = WINDOWS
                ) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        await store.uptimes(ids, NOW, windows)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checks", type=int, default=50)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "bench.db")
        await store.open("k3y")
        await store.sync_config({f"c{i}": parse_check(f"c{i}", {"period": "1h"}) for i in range(args.checks)}, NOW)
        ids = [c.id for c in await store.checks()]
        span = timedelta(days=40).total_seconds()

        def seed(conn: object) -> None:
            rows = [(cid, "failed" if r % 10 == 0 else "ok", NOW.timestamp() - span * r / args.runs)
                    for cid in ids for r in range(args.runs)]
            conn.executemany("INSERT INTO runs (check_id, state, started_at, ended_at) VALUES (?, ?, ?, ?+60)",  # type: ignore[attr-defined]
                             [(c, s, t, t) for c, s, t in rows])

        await store.writer.call(seed)
        await store.writer.call(lambda conn: conn.execute("ANALYZE"))
        results = []
        for label in ("with runs_by_start", "without it"):
            results.append((label, await timed(store, ids, args.repeats, MONTH), await timed(store, ids, args.repeats),
                            await timed(store, ids[:1], args.repeats)))
            await store.writer.call(lambda conn: conn.execute("DROP INDEX IF EXISTS runs_by_start"))
        await store.close()
    print(f"{args.checks} checks x {args.runs} runs over 40 days; median of {args.repeats} calls, ms")
    print(f"{'':22} {'page, 30 d':>11} {'page, 3 windows':>16} {'one check, 3 windows':>21}")
    for label, month, three, one in results:
        print(f"{label:22} {month:11.1f} {three:16.1f} {one:21.2f}")


if __name__ == "__main__":
    asyncio.run(main())
