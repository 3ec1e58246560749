"""CPU per ping of the store alone: `Store.record_ping` in-process, no HTTP, on bench/pings.py's config.

    .venv/bin/python bench/writer.py [--pings 20000] [--batch 8] [--config realistic] [--repeat 5] [--overview]

Pings go in groups of --batch at once (one group commit each, as at concurrency 16), cycling over the
checks and their step chains like the load generator. The server's CPU per ping (bench/pings.py) is this
plus the HTTP side; on a shared box this figure moves less, so it shows a change to the store's share.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import loadgen
from pings import CONFIGS, KEY

from heartwatch.config import load_settings
from heartwatch.core.model import Ping
from heartwatch.core.pings import parse_ping
from heartwatch.store.sqlite import Store


async def run(args: argparse.Namespace) -> list[float]:
    tmp = Path(tempfile.mkdtemp(prefix="hw-writer-"))
    steps, check_table = CONFIGS[args.config]
    slugs = [f"job-{i:03d}" for i in range(args.checks)]
    (tmp / "heartwatch.toml").write_text(f'[server]\nping_key = "{KEY}"\n\n'
                                         + "".join(f"[checks.{s}]\n{check_table(i)}\n" for i, s in enumerate(slugs)))
    settings = load_settings(tmp / "heartwatch.toml")
    store = Store(tmp / "hw.db", retention=10_000_000)
    await store.open(KEY, settings.checks)
    at = datetime.now(UTC)
    await store.sync_config(settings.checks, at)
    requests = [parse_ping(f"{KEY}/{s}", {"step": step}) for s in slugs for step in steps]
    body = loadgen.BODY.encode()
    sent = 0

    async def send(n: int) -> None:
        nonlocal at, sent
        for _ in range(0, n, args.batch):
            pending = []
            for _ in range(args.batch):
                req = requests[sent % len(requests)]
                sent += 1
                at += timedelta(milliseconds=1)
                ping = Ping(kind=req.kind, at=at, step=req.step, rid=req.rid, exit_code=req.exit_code, body=body,
                            remote_addr="127.0.0.1", user_agent="bench", method="POST")
                pending.append(store.record_ping(req, ping))
            await asyncio.gather(*pending)

    if args.overview:  # a status page was opened: the writer keeps the overview's status index from then on
        await store.status_page(at, None, 1, 50)
    await send(args.pings // 4)  # warm up: open runs, watches cached
    results = []
    for _ in range(args.repeat):
        t0 = time.process_time()
        await send(args.pings)
        results.append((time.process_time() - t0) / args.pings * 1e6)
    await store.close()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pings", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--checks", type=int, default=100)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="realistic")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--overview", action="store_true", help="with the overview's status index built (and kept)")
    args = ap.parse_args()
    results = asyncio.run(run(args))
    print(f"store CPU per ping ({args.config} config, {args.checks} checks, batches of {args.batch},"
          f" status index {'kept' if args.overview else 'not built'}):"
          f" median {statistics.median(results):.1f} us (runs: {', '.join(f'{r:.1f}' for r in results)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
