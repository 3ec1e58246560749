"""Pings per second: heartwatch (durable, every ping committed before the answer) against a bare Starlette
endpoint that only answers "OK", driven by the same load generator at several concurrencies.

    .venv/bin/python bench/pings.py [--seconds 5] [--checks 100] [--concurrency 1,16,64] [--config realistic]
                                    [--baseline REV] [--db postgresql://...]

The default config is what real checks look like: every check has a schedule (half `period = "1h"`, half a
cron schedule in a time zone), a `max_runtime` and a step chain, and the pings cycle through
start -> dump -> upload -> finish, so starts move expectations and steps and finishes move run deadlines.
`--config steps-only` is the older, lighter one: steps but no schedule and no max_runtime.

Afterwards it checks that heartwatch stored exactly the pings it answered. `--db` runs heartwatch on that
PostgreSQL database instead of a temporary SQLite file.

    .venv/bin/python bench/pings.py --stores postgresql://postgres@127.0.0.1:5432/postgres [--concurrency 16]

compares the stores instead, interleaved in one run: SQLite, PostgreSQL with one heartwatch process, and
PostgreSQL with two processes on one database (the load split evenly between them). The URL names a server
where the benchmark may create (and drop) the databases hw_bench_1 and hw_bench_2.
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
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
    ap.add_argument("--db", metavar="POSTGRESQL_URL", help="run heartwatch on this PostgreSQL database")
    ap.add_argument("--stores", metavar="POSTGRESQL_URL",
                    help="compare SQLite, PostgreSQL and PostgreSQL with two processes instead of the bare endpoint")
    ap.add_argument("--baseline", metavar="REV",
                    help="also run heartwatch as of this git revision, interleaved with the working tree's (A/B)")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.stores:
        return compare_stores(args.stores, levels, args.seconds, args.checks, args.repeat)

    tmp = Path(tempfile.mkdtemp(prefix="hw-bench-"))
    slugs = [f"job-{i:03d}" for i in range(args.checks)]
    config = tmp / "heartwatch.toml"
    steps, check_table = CONFIGS[args.config]
    config.write_text(
        f'[server]\nping_key = "{KEY}"\nretention = 10000000\nsynchronous = "{args.synchronous}"\n\n'
        + "".join(f"[checks.{s}]\n{check_table(i)}\n" for i, s in enumerate(slugs)))
    hw_port, bare_port, base_port = free_port(), free_port(), free_port()
    before = pg_events(args.db) if args.db else 0
    hw = heartwatch(config, args.db or tmp / "hw.db", hw_port, tmp / "hw.log")
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

    if args.db:
        stored, integrity = pg_events(args.db) - before, "ok"  # PostgreSQL checks its own pages
    else:
        db = sqlite3.connect(tmp / "hw.db")
        stored = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    synchronous = args.synchronous

    print(f"\nheartwatch ping throughput — {platform.machine()}, {_cpus()} CPUs,"
          f" Python {platform.python_version()},"
          f" load generator: {gen}, {args.seconds:g}s per run, {args.checks} checks ({args.config} config),"
          f" {'PostgreSQL' if args.db else 'SQLite'} synchronous={synchronous}\n")
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


def pg_events(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        try:
            row = conn.execute("SELECT COUNT(*) FROM events").fetchone()
        except psycopg.errors.UndefinedTable:  # a new database: heartwatch makes its tables at start
            return 0
    return int(row[0]) if row else 0


def compare_stores(admin_url: str, levels: list[int], seconds: float, checks: int, repeat: int) -> int:
    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix="hw-bench-"))
    slugs = [f"job-{i:03d}" for i in range(checks)]
    config = tmp / "heartwatch.toml"
    config.write_text(f'[server]\nping_key = "{KEY}"\nretention = 10000000\n\n'
                      + "".join(f'[checks.{s}]\nsteps = ["dump", "upload", "verify"]\n\n' for s in slugs))
    base = admin_url.rsplit("/", 1)[0]
    urls = []
    with psycopg.connect(admin_url, autocommit=True) as admin:
        for n in (1, 2):
            admin.execute(f"DROP DATABASE IF EXISTS hw_bench_{n}")
            admin.execute(f"CREATE DATABASE hw_bench_{n}")
            urls.append(f"{base}/hw_bench_{n}")
    setups: dict[str, list[str | Path]] = {"SQLite": [tmp / "hw.db"], "PostgreSQL, 1 process": [urls[0]],
                                           "PostgreSQL, 2 processes": [urls[1], urls[1]]}
    procs: dict[str, list[tuple[subprocess.Popen[bytes], int]]] = {}
    paths = loadgen.paths(f"/ping/{KEY}", slugs)
    answered = dict.fromkeys(setups, 0)
    table = []
    gen = ""
    try:
        for name, dbs in setups.items():
            procs[name] = []
            for i, db in enumerate(dbs):
                port = free_port()
                p = heartwatch(config, db, port, tmp / f"{name.split(',')[0]}-{len(procs[name])}.log")
                wait_http(f"http://127.0.0.1:{port}/healthz", p)
                procs[name].append((p, port))
                if i == 0 and len(dbs) > 1:
                    time.sleep(1)  # the first one leads: started alone, so the second does not race it for the lock
        for c in levels:
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
            for _ in range(repeat):
                for name, servers in procs.items():
                    gen, rps, p99, ok = measure_split(servers, paths, c, seconds)
                    answered[name] += ok
                    runs[name].append((rps, p99))
            for name, results in runs.items():
                results.sort()
                rps, p99 = results[len(results) // 2]
                table.append((c, name, rps, p99, [r for r, _ in results]))
    finally:
        for servers in procs.values():
            for p, _ in servers:
                stop(p)
    stored = {"SQLite": sqlite3.connect(tmp / "hw.db").execute("SELECT COUNT(*) FROM events").fetchone()[0]}
    for name, url in (("PostgreSQL, 1 process", urls[0]), ("PostgreSQL, 2 processes", urls[1])):
        with psycopg.connect(url) as conn:
            stored[name] = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]  # type: ignore[index]
    print(f"\nheartwatch ping throughput by store — {platform.machine()}, {_cpus()} CPUs, Python"
          f" {platform.python_version()}, load generator: {gen}, {seconds:g}s per run, {checks} checks,"
          f" median of {repeat} interleaved runs; PostgreSQL on the same machine\n")
    print(f"{'conc':>4} | {'store':<24} | {'pings/s':>8} {'p99 ms':>7} | all runs (pings/s)")
    print("-" * 80)
    for c, name, rps, p99, all_rps in table:
        print(f"{c:>4} | {name:<24} | {rps:>8,.0f} {p99:>7.2f} | {', '.join(f'{r:,.0f}' for r in all_rps)}")
    # wrk stops mid-flight: up to one request per connection may be stored but never counted as answered.
    slack = {n: sum(max(1, c // len(dbs)) * len(dbs) for c in levels) * repeat for n, dbs in setups.items()}
    good = all(answered[n] <= stored[n] <= answered[n] + slack[n] for n in setups)
    print("\n" + "   ".join(f"{n}: answered {answered[n]:,}, stored {stored[n]:,}" for n in setups)
          + f"   -> {'OK' if good else 'MISMATCH'}")
    return 0 if good else 1


def measure_split(servers: list[tuple[subprocess.Popen[bytes], int]], paths: list[str], conc: int, seconds: float
                  ) -> tuple[str, float, float, int]:
    """The load split evenly over the servers, at once: total answers per second, worst p99, answered ok."""
    from concurrent.futures import ThreadPoolExecutor

    share = max(1, conc // len(servers))
    with ThreadPoolExecutor(len(servers)) as pool:
        results = list(pool.map(lambda s: loadgen.run(f"http://127.0.0.1:{s[1]}", paths, share, seconds), servers))
    gen = results[0][0]
    return (gen, sum(r.requests for _, r in results) / max(r.seconds for _, r in results),
            max(r.p99_ms for _, r in results), sum(r.ok for _, r in results))


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
