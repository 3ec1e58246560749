"""What pruning costs a ping: a check with a long history (a flood, or a retention lowered) worked down to the
retention a batch at a time, on a real Store (in-process, no server).

Writes --runs finished runs (each with its start and finish events) for one check under a large retention,
reopens the store with `retention = 1000` and sends log pings one by one: every PRUNE_EVERY-th ping prunes a
batch. Prints the time of the pings that pruned against the others, and how many pings it took to get down
to the retention.

    python bench/retention.py [--runs 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from heartwatch.core.model import CheckSpec, Ping, PingKind
from heartwatch.core.pings import PingRequest
from heartwatch.store import retention
from heartwatch.store.sqlite import PRUNE_EVERY, Store

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hw.db"
        big = Store(path, retention=10_000_000)
        await big.open()
        await big.sync_config({"busy": CheckSpec(slug="busy")}, T0)
        check = await big.check("busy")
        assert check is not None
        t0 = time.perf_counter()
        for i in range(0, runs, 500):  # concurrent batches: group commit makes the backlog quick to write
            await asyncio.gather(*(
                big.record_ping(PingRequest(kind=kind, uuid=check.uuid),
                                Ping(kind=kind, at=T0 + timedelta(seconds=2 * j + (kind is PingKind.SUCCESS))))
                for j in range(i, min(runs, i + 500)) for kind in (PingKind.START, PingKind.SUCCESS)))
        await big.close()
        print(f"backlog: {count(path, 'runs')} runs, {count(path, 'events')} events "
              f"({time.perf_counter() - t0:.1f} s to write)")

        small = Store(path, retention=1000)
        await small.open()
        pruning: list[float] = []
        plain: list[float] = []
        slowest = (0.0, 0)
        n = 0
        at = T0 + timedelta(days=30)
        while True:
            n += 1
            t = time.perf_counter()
            await small.record_ping(PingRequest(kind=PingKind.LOG, uuid=check.uuid), Ping(kind=PingKind.LOG, at=at))
            took = (time.perf_counter() - t) * 1000
            slowest = max(slowest, (took, n))
            (pruning if small._since_prune.get(check.id, 0) in (0, PRUNE_EVERY - 1) else plain).append(took)
            if n % PRUNE_EVERY == 0 and count(path, "runs") <= 1000 and count(path, "events") <= 1000 + PRUNE_EVERY:
                break
        await small.close()
        print(f"worked down to {count(path, 'runs')} runs, {count(path, 'events')} events in {n} pings "
              f"({len(pruning)} of them pruned a batch of up to {retention.BATCH} rows of each kind)")
        pruning.sort()
        p99 = pruning[min(len(pruning) - 1, int(0.99 * len(pruning)))]
        print(f"ping that pruned: median {statistics.median(pruning):.2f} ms, p99 {p99:.2f} ms, "
              f"max {max(pruning):.2f} ms; "
              f"other pings: median {statistics.median(plain):.2f} ms, max {max(plain):.2f} ms; "
              f"the slowest was ping {slowest[1]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50_000)
    asyncio.run(main(parser.parse_args().runs))
