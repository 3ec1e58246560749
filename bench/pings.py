"""Pings per second: heartwatch (durable, every ping committed before the answer) against a bare Starlette
endpoint that only answers "OK", driven by the same load generator at several concurrencies.

    .venv/bin/python bench/pings.py [--seconds 5] [--checks 100] [--concurrency 1,16,64] [--config realistic]

The default config is what real checks look like: every check has a schedule (half `period = "1h"`, half a
cron schedule in a time zone), a `max_runtime` and a step chain, and the pings cycle through
start -> dump -> upload -> finish, so starts move expectations and steps and finishes move run deadlines.
`--config steps-only` is the older, lighter one: steps but no schedule and no max_runtime.

Afterwards it checks that heartwatch stored exactly the pings it answered.
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen
from common import ROOT, cpu_seconds, free_port, heartwatch, stop, wait_http

KEY = "bench-key"
_CRONS = ["0 * * * *", "*/15 * * * *", "30 2 * * *", "0 3 * * 1-5"]
_ZONES = ["UTC", "Europe/Berlin", "America/New_York"]


def _realistic(i: int) -> str:
    when = 'period = "1h"' if i % 2 == 0 else f'schedule = "{_CRONS[i // 2 % 4]}"\ntimezone = "{_ZONES[i % 3]}"'
    return f'{when}\nmax_runtime = "30m"\nsteps = ["dump", "upload"]\n'


#: --config: the steps the pings cycle through, and each check's table in heartwatch.toml.
CONFIGS = {
    "realistic": (["start", "dump", "upload", "finish"], _realistic),
    "steps-only": (["start", "dump", "upload", "verify", "finish"], lambda i: 'steps = ["dump", "upload", "verify"]\n'),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--checks", type=int, default=100)
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--synchronous", choices=["normal", "full"], default="normal")
    ap.add_argument("--config", choices=sorted(CONFIGS), default="realistic")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per concurrency, heartwatch and bare interleaved; the median-ratio pair is shown")
    ap.add_argument("--baseline", metavar="REV",
                    help="also run heartwatch as of this git revision, interleaved with the working tree's (A/B)")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="hw-bench-"))
    slugs = [f"job-{i:03d}" for i in range(args.checks)]
    config = tmp / "heartwatch.toml"
    steps, check_table = CONFIGS[args.config]
    config.write_text(
        f'[server]\nping_key = "{KEY}"\nretention = 10000000\nsynchronous = "{args.synchronous}"\n\n'
        + "".join(f"[checks.{s}]\n{check_table(i)}\n" for i, s in enumerate(slugs)))
    hw_port, bare_port, base_port = free_port(), free_port(), free_port()
    hw = heartwatch(config, tmp / "hw.db", hw_port, tmp / "hw.log")
    bare = subprocess.Popen([sys.executable, str(Path(__file__).parent / "bare_app.py"), str(bare_port)])
    base = None
    if args.baseline:
        base = heartwatch(config, tmp / "base.db", base_port, tmp / "base.log", cwd=export(args.baseline, tmp / "base"))
    rows = []
    base_rows: list[tuple[int, list[loadgen.Result], list[loadgen.Result]]] = []
    answered = 0
    try:
        wait_http(f"http://127.0.0.1:{hw_port}/healthz", hw)
        wait_http(f"http://127.0.0.1:{bare_port}/ping/x", bare)
        if base is not None:
            wait_http(f"http://127.0.0.1:{base_port}/healthz", base)
        hw_paths = loadgen.paths(f"/ping/{KEY}", slugs, steps)
        bare_paths = loadgen.paths("/ping/x", slugs, steps)
        for c in levels:
            # A shared 2-core VM is noisy: interleave the servers and keep the median pair.
            pairs = []
            ab: tuple[list[loadgen.Result], list[loadgen.Result]] = ([], [])
            for _ in range(args.repeat):
                if base is not None:
                    ab[0].append(measure(base, f"http://127.0.0.1:{base_port}", hw_paths, c, args.seconds)[1])
                gen, h = measure(hw, f"http://127.0.0.1:{hw_port}", hw_paths, c, args.seconds)
                _, b = measure(bare, f"http://127.0.0.1:{bare_port}", bare_paths, c, args.seconds)
                answered += h.ok
                if h.ok != h.requests:
                    print(f"warning: heartwatch answered {h.requests - h.ok} requests with an error", file=sys.stderr)
                pairs.append((h, b))
                ab[1].append(h)
            pairs.sort(key=lambda p: p[0].rps / p[1].rps)
            h, b = pairs[len(pairs) // 2]
            rows.append((c, h, b, [p[0].rps / p[1].rps for p in pairs]))
            base_rows.append((c, *ab))
    finally:
        stop(hw)
        stop(bare)
        if base is not None:
            stop(base)

    db = sqlite3.connect(tmp / "hw.db")
    stored = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    synchronous = args.synchronous

    print(f"\nheartwatch ping throughput — {platform.machine()}, {_cpus()} CPUs,"
          f" Python {platform.python_version()},"
          f" load generator: {gen}, {args.seconds:g}s per run, {args.checks} checks ({args.config} config),"
          f" SQLite synchronous={synchronous}\n")
    print(f"{'conc':>4} | {'heartwatch req/s':>16} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} |"
          f" {'bare req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} | {'ratio':>5}")
    print("-" * 110)
    for c, h, b, ratios in rows:
        print(f"{c:>4} | {h.rps:>16,.0f} {h.p50_ms:>7.2f} {h.p99_ms:>7.2f} {h.cpu_us:>10.0f} |"
              f" {b.rps:>10,.0f} {b.p50_ms:>7.2f} {b.p99_ms:>7.2f} {b.cpu_us:>10.0f} | {h.rps / b.rps:>5.0%}"
              f"   (all runs: {', '.join(f'{r:.0%}' for r in ratios)})")
    if base is not None:
        print(f"\nA/B, interleaved: heartwatch at {args.baseline} (A) and the working tree (B); median [min-max]")
        print(f"{'conc':>4} | {'A req/s':>22} {'B req/s':>22} | {'A CPU us/req':>16} {'B CPU us/req':>16} |"
              f" {'A p99 ms':>16} {'B p99 ms':>16}")
        for c, a_runs, b_runs in base_rows:
            print(f"{c:>4} | {_spread([r.rps for r in a_runs]):>22} {_spread([r.rps for r in b_runs]):>22} |"
                  f" {_spread([r.cpu_us for r in a_runs]):>16} {_spread([r.cpu_us for r in b_runs]):>16} |"
                  f" {_spread([r.p99_ms for r in a_runs], 1):>16} {_spread([r.p99_ms for r in b_runs], 1):>16}")
    # wrk stops mid-flight: up to one request per connection may be stored but never counted as answered.
    slack = sum(levels) * args.repeat
    ok = answered <= stored <= answered + slack
    print(f"\nanswered 200/201: {answered:,}   events stored: {stored:,}   integrity_check: {integrity}"
          f"   -> {'OK' if ok and integrity == 'ok' else 'MISMATCH'}"
          + (f" (in flight at cut-off: {stored - answered})" if stored != answered else ""))
    return 0 if ok and integrity == "ok" else 1


def _spread(values: list[float], digits: int = 0) -> str:
    return f"{statistics.median(values):,.{digits}f} [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"


def export(rev: str, dest: Path) -> Path:
    """The package as of git revision `rev`, in `dest` (run from there, `python -m heartwatch` imports it)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "heartwatch"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def measure(proc: subprocess.Popen[bytes], base: str, paths: list[str], conc: int, seconds: float
            ) -> tuple[str, loadgen.Result]:
    cpu0 = cpu_seconds(proc.pid)
    gen, result = loadgen.run(base, paths, conc, seconds)
    result.cpu_us = (cpu_seconds(proc.pid) - cpu0) / max(1, result.requests) * 1e6
    return gen, result


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
