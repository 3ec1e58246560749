"""Scale: how heartwatch behaves with many checks, and how fast alerts leave when many fall due at once.

    .venv/bin/python bench/scale.py [--sizes 1000,10000,100000] [--idle-seconds 30] [--due 10000]

For each size it writes a heartwatch.toml of cron checks (varied schedules, time zones, some with steps and
tags; none falls due while it is measured, so "idle" means nothing to do) and measures:

- start-up: from starting the process to /healthz answering, on an empty database (the checks are created)
  and again on the same database (a restart: every check is already there and unchanged); both include
  reading and validating the config file;
- RSS: VmRSS of the server once start-up has settled, after the first start and after the restart (the
  restart's database holds --history finished runs per check, seeded while the server was stopped);
- idle CPU: CPU seconds the restarted server used over --idle-seconds with no requests;
- overview: the median time of several GETs of the status page `/` (its first page), and of a filtered one;
  the first GET apart (it builds the status index), and RSS after them (with the index in memory).

Then the alert hand-off: --due checks whose start deadlines all end at the same second (each expects a start
at the same minute and has a start_grace that ends at the chosen instant), one json:// target on a local
HTTP receiver that counts the POSTs and the alerts each covers (a digest's title says how many it holds; any
other message is one alert). Three moments per alert, all measured from the deadline:
- claimed: the sender took the delivery from the outbox and queued it for its workers (the alert is out
  of the scheduler's hands and in the sender's memory; nothing else stands between it and Apprise);
- handed to Apprise: a worker called `notify.deliver_async` for the send that carries it, alone or in a
  digest (Apprise's send begins); both from `Sender.handoff_log`, one entry per delivery;
- received: the local receiver got the POST that carries it (a digest's arrival counts for each of its alerts).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, cpu_seconds, free_port, heartwatch, stop, wait_http

KEY = "bench-key"
ZONES = ["UTC", "UTC", "UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
# Runs `heartwatch serve` and, at exit, writes the sender's hand-off log to the file named first.
_SERVE_WITH_HANDOFF_LOG = """
import atexit, json, sys
from heartwatch.engine import sender
senders = []
_start = sender.Sender.start
def start(self):
    senders.append(self)
    _start(self)
sender.Sender.start = start
dump = sys.argv.pop(1)
def write():
    with open(dump, "w") as f:
        json.dump({"log": [list(entry) for s in senders for entry in s.handoff_log],
                   "sends": sum(getattr(s, "sends", len(s.handoff_log)) for s in senders)}, f)
atexit.register(write)
from heartwatch.cli.main import main
main(prog_name="heartwatch")
"""


def quiet_hours(now: datetime) -> list[int]:
    """Hours (local to any of ZONES) far enough from now that no check falls due while it is measured."""
    offsets = {-5, -4, 0, 1, 2, 9}
    busy = {(now.hour + off + d) % 24 for off in offsets for d in (-1, 0, 1, 2)}
    return [h for h in range(24) if h not in busy] or [now.hour]


#: Distinct cron expressions in a generated config. Many checks share a schedule, as jobs on a fleet of
#: hosts do ("the nightly backup at 02:30"); with ZONES that makes about 3,000 distinct (schedule, zone) pairs.
SCHEDULES = 499


def cron_for(i: int, hours: list[int]) -> str:
    i %= SCHEDULES
    h, h2 = hours[i % len(hours)], hours[(i // 7) % len(hours)]
    m = (i * 7) % 60
    return [f"{m} {h} * * *", f"{m} {h} * * {i % 7}", f"*/15 {h} * * *", f"{m} {h},{h2} * * 1-5",
            f"0 {h} {1 + i % 28} * *", f"{m} {h} * * 1-5", f"30 {h} 1,15 * *"][i % 7]


def scale_config(n: int) -> str:
    hours = quiet_hours(datetime.now(UTC))
    out = [f'[server]\nping_key = "{KEY}"\n\n[alerts]\nremind_every = "0"\n\n']
    for i in range(n):
        lines = [f"[checks.job-{i:06d}]", f'schedule = "{cron_for(i, hours)}"']
        if i % 6:
            lines.append(f'timezone = "{ZONES[i % len(ZONES)]}"')
        if i % 5 == 0:
            lines.append(f'name = "Job {i}"')
        if i % 10 == 0:
            lines.append('steps = ["dump", {name = "upload", max = "30m"}, "verify"]')
            lines.append('max_runtime = "2h"')
        if i % 3 == 0:
            lines.append(f'tags = ["team-{i % 4}", "prod"]')
        out.append("\n".join(lines) + "\n\n")
    return "".join(out)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def settle(pid: int, limit: float = 20) -> None:
    """Wait until the server stops using CPU after start-up (under 2% of a core over half a second)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        c0 = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - c0 < 0.01:
            return


def get_ms(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        size = len(r.read())
    return (time.perf_counter() - t0) * 1000, size


def seed_history(db: Path, runs_per_check: int) -> None:
    """Give every check `runs_per_check` finished runs (some failed), written straight into the database
    while the server is stopped: the overview draws the last 30 of each, and pinging them in would take
    longer than the rest of the benchmark."""
    conn = sqlite3.connect(db)
    ids = [r[0] for r in conn.execute("SELECT id FROM checks")]
    now = time.time()
    with conn:
        for check_id in ids:
            rows = []
            for k in range(runs_per_check):
                started = now - (runs_per_check - k) * 86400 - check_id % 3600
                failed = k == runs_per_check - 1 and check_id % 17 == 0
                rows.append((check_id, "failed" if failed else "ok", started, started + 60 + k, 1 if failed else 0,
                             '[{"name": "dump", "at": %f, "flags": []}]' % (started + 30), "dump", started + 30))
            conn.executemany("INSERT INTO runs (check_id, state, started_at, ended_at, exit_code, steps, last_step,"
                             " last_step_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()


def measure_size(n: int, idle_seconds: float, repeats: int, history: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="hw-scale-"))
    config, db = tmp / "heartwatch.toml", tmp / "hw.db"
    config.write_text(scale_config(n))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    r: dict[str, float] = {"checks": n}

    proc = heartwatch(config, db, port, tmp / "first.log")
    try:
        r["start_fresh_s"] = wait_http(f"{base}/healthz", proc, timeout=900)
        settle(proc.pid)
        r["rss_fresh_mb"] = rss_mb(proc.pid)
    finally:
        stop(proc)
    if history:
        seed_history(db, history)
    proc = heartwatch(config, db, port, tmp / "restart.log")
    try:
        r["start_restart_s"] = wait_http(f"{base}/healthz", proc, timeout=900)
        settle(proc.pid)
        r["rss_mb"] = rss_mb(proc.pid)
        c0 = cpu_seconds(proc.pid)
        time.sleep(idle_seconds)
        r["idle_cpu_s"] = cpu_seconds(proc.pid) - c0
        # The first GET compiles the templates and fills the caches (and builds the status index: O(checks), once)
        r["overview_first_ms"] = get_ms(f"{base}/")[0]
        times = []
        for _ in range(repeats):
            ms, size = get_ms(f"{base}/")
            times.append(ms)
        r["overview_ms"] = statistics.median(times)
        r["overview_kb"] = size / 1024
        r["overview_filtered_ms"] = statistics.median(get_ms(f"{base}/?tag=team-1&status=up")[0]
                                                      for _ in range(repeats))
        r["rss_after_overview_mb"] = rss_mb(proc.pid)  # the status index held in memory
    finally:
        stop(proc)
    shutil.rmtree(tmp, ignore_errors=True)  # 100,000 checks with their history are a few hundred MB
    return r


# --- the hand-off of many simultaneous deadlines --------------------------------------------------------------


def alerts_in(title: str) -> int:
    """How many alerts one message carries: a digest says so in its title ("heartwatch: 37 alerts (...)")."""
    match = re.match(r"heartwatch: (\d+) alerts \(", title)
    return int(match[1]) if match else 1


class CountingReceiver:
    """A local HTTP server that counts the POSTs Apprise's json:// makes, when each arrived, and how many
    alerts each carries."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.alerts: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                at = time.time()
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                with receiver._lock:
                    receiver.times.append(at)
                    receiver.alerts.append(alerts_in(str(payload.get("title", ""))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 1024
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        """Alerts received so far."""
        with self._lock:
            return sum(self.alerts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def measure_handoff(n: int, timeout: float) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="hw-handoff-"))
    config, db, dump = tmp / "heartwatch.toml", tmp / "hw.db", tmp / "handoffs.json"
    receiver = CountingReceiver()
    t0 = time.time()
    # Every check expects a start at minute `boundary` (the first whole minute at least 15 s away, so the
    # checks exist before it) and its start_grace ends at `deadline`, at least 25 s from now: time to start.
    boundary = (int(t0 + 15) // 60 + 1) * 60
    grace = max(0, math.ceil(t0 + 25 - boundary))
    deadline = boundary + grace
    minute = datetime.fromtimestamp(boundary, UTC).minute
    config.write_text(
        f'[server]\nping_key = "{KEY}"\n\n[alerts]\nurls = ["json://127.0.0.1:{receiver.port}/alert"]\n'
        'remind_every = "0"\n\n'
        + "".join(f'[checks.due-{i:05d}]\nschedule = "{minute} * * * *"\nstart_grace = "{grace}s"\n\n'
                  for i in range(n)))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", _SERVE_WITH_HANDOFF_LOG, str(dump), "serve", "--config",
                             str(config), "--db", str(db), "--port", str(port)],
                            stdout=(tmp / "serve.log").open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    r: dict[str, float] = {"due": n}
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout=600)
        if time.time() > deadline - 1:
            raise SystemExit("the server took too long to start for the hand-off deadline; try fewer --due")
        settle(proc.pid, limit=max(0.0, deadline - time.time() - 1))
        cpu0 = cpu_seconds(proc.pid)
        while receiver.count() < n and time.time() < deadline + timeout:
            time.sleep(0.05)
        r["cpu_s"] = cpu_seconds(proc.pid) - cpu0
    finally:
        stop(proc)
        receiver.close()
    dumped: dict[str, Any] = json.loads(dump.read_text()) if dump.exists() else {"log": [], "sends": 0}
    log = dumped["log"]
    claims = [entry[1] for entry in log]
    handoffs = [entry[2] for entry in log]
    received = [t for t, alerts in zip(receiver.times, receiver.alerts, strict=True) for _ in range(alerts)]
    conn = sqlite3.connect(db)
    first_alert = conn.execute("SELECT MIN(created_at), COUNT(*) FROM alerts").fetchone()
    conn.close()
    r["alerts"] = first_alert[1]
    r["woke_ms"] = (first_alert[0] - deadline) * 1000 if first_alert[0] else math.nan
    r["handed_off"] = len(handoffs)
    r["sends"] = dumped["sends"]
    r["posts"] = len(receiver.times)
    r["received"] = len(received)
    lat = [(t - deadline) * 1000 for t in handoffs]
    claim = [(t - deadline) * 1000 for t in claims]
    r["claim_p50_ms"] = percentile(claim, 50) if claim else math.nan
    r["claim_p99_ms"] = percentile(claim, 99) if claim else math.nan
    r["claim_all_ms"] = max(claim) if len(claim) >= n else math.nan
    rec = [(t - deadline) * 1000 for t in received]
    r["handoff_p50_ms"] = percentile(lat, 50) if lat else math.nan
    r["handoff_p99_ms"] = percentile(lat, 99) if lat else math.nan
    r["handoff_all_ms"] = max(lat) if len(lat) >= n else math.nan
    r["received_p50_ms"] = percentile(rec, 50) if rec else math.nan
    r["received_all_ms"] = max(rec) if len(rec) >= n else math.nan
    return r


def retried(measure: Callable[..., dict[str, float]], *args: Any) -> dict[str, float]:
    """One measurement; if the server died under it (on a shared box something may kill it), once more."""
    try:
        return measure(*args)
    except (OSError, SystemExit) as e:
        print(f"  {measure.__name__}{args} failed ({e}); measuring again", file=sys.stderr, flush=True)
        return measure(*args)


def median_of(results: list[dict[str, float]]) -> dict[str, float]:
    """Each number's median over the runs (the machine may be busy with other work)."""
    for r in results:
        print("  run:", {k: round(v, 3) for k, v in r.items()}, file=sys.stderr, flush=True)
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def _fmt(value: float, digits: int = 0) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--idle-seconds", type=float, default=30)
    ap.add_argument("--repeats", type=int, default=7, help="GETs of the overview page per size (median)")
    ap.add_argument("--history", type=int, default=30, help="finished runs per check seeded before the restart")
    ap.add_argument("--due", default="10,10000",
                    help="checks falling due in the same second, one measurement per number ('' to skip)")
    ap.add_argument("--handoff-timeout", type=float, default=120)
    ap.add_argument("--runs", type=int, default=1, help="repeat every measurement; the table shows medians")
    args = ap.parse_args()

    rows = [median_of([retried(measure_size, int(s), args.idle_seconds, args.repeats, args.history)
                       for _ in range(args.runs)]) for s in args.sizes.split(",") if s]
    handoffs = [median_of([retried(measure_handoff, int(n), args.handoff_timeout) for _ in range(args.runs)])
                for n in args.due.split(",") if n]

    print(f"\nheartwatch scale — {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
          f" idle CPU over {args.idle_seconds:g}s, overview = median of {args.repeats} GETs of /,"
          f" {args.history} runs per check, medians of {args.runs} run(s)\n")
    print(f"{'checks':>8} | {'start-up s':>10} {'RSS MB':>6} | {'restart s':>9} {'idle RSS MB':>11}"
          f" {'idle CPU s':>10} | {'overview ms':>11} {'KB':>5} {'filtered ms':>11} {'first ms':>8}"
          f" {'RSS after MB':>12}")
    print("-" * 123)
    for r in rows:
        print(f"{int(r['checks']):>8,} | {r['start_fresh_s']:>10.2f} {r['rss_fresh_mb']:>6.1f} |"
              f" {r['start_restart_s']:>9.2f} {r['rss_mb']:>11.1f} {r['idle_cpu_s']:>10.2f} |"
              f" {r['overview_ms']:>11.1f} {r['overview_kb']:>5.0f} {r['overview_filtered_ms']:>11.1f}"
              f" {r['overview_first_ms']:>8.0f} {r['rss_after_overview_mb']:>12.1f}")
    if handoffs:
        print("\nChecks falling due in the same second, one json:// target (a local receiver); ms after the deadline,"
              " per alert (an alert in a digest: its digest's moments).\nsends: Apprise calls; POSTs: received,"
              " carrying `alerts` alerts (more than due = repeats)\n")
        print(f"{'due':>6} | {'woke':>4} | {'claimed p50':>11} {'p99':>6} {'all':>6} | {'to Apprise p50':>14}"
              f" {'p99':>6} {'all':>6} | {'received p50':>12} {'all':>6} | {'sends':>6} {'POSTs':>6} {'alerts':>6}"
              f" {'CPU s':>5}")
        print("-" * 126)
    for h in handoffs:
        print(f"{h['due']:>6,.0f} | {_fmt(h['woke_ms']):>4} | {_fmt(h['claim_p50_ms']):>11}"
              f" {_fmt(h['claim_p99_ms']):>6} {_fmt(h['claim_all_ms']):>6} | {_fmt(h['handoff_p50_ms']):>14}"
              f" {_fmt(h['handoff_p99_ms']):>6} {_fmt(h['handoff_all_ms']):>6} | {_fmt(h['received_p50_ms']):>12}"
              f" {_fmt(h['received_all_ms']):>6} | {h['sends']:>6,.0f} {h['posts']:>6,.0f} {h['received']:>6,.0f}"
              f" {h['cpu_s']:>5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
