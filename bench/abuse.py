"""Each attack of issue 14, on loopback against a real `heartwatch serve`, bounded in time.

For every attack it prints what the server answered, its RSS and database size (with the WAL) before and after,
and the p50/p99 of a normal job's pings (one every 20 ms on a connection of its own) during the attack, next to
the same without any attack. Nothing here needs the internet; every attack lasts --seconds (default 5).

    python bench/abuse.py [--seconds 5] [--connections 8] [--only 'whole lists'] [--rate-limit 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from common import free_port, heartwatch, stop, wait_http

KEY = "bench-key"
TOKEN = "bench-token-0123456789abcdef"
PASSWORD = "bench password"
CONFIG = f"""
[server]
ping_key = "{KEY}"
retention = 1000
max_checks = 1000
rate_limit = {{rate_limit}}

[alerts]
urls = ["json://127.0.0.1:9/down"]  # nobody listens: deliveries stay pending, so their alerts are kept

[api]
tokens = ["{TOKEN}"]

[web]
password = "{PASSWORD}"

[checks.normal]
period = "1h"

[checks.target]
period = "1h"
"""


class Conn:
    """One keep-alive HTTP/1.1 connection, reopened when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
                      ) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            try:
                self.writer.write(head.encode("latin-1") + b"\r\n" + body)
                status_line = await self.reader.readline()
                if not status_line:
                    raise ConnectionError("closed")
                found: dict[str, str] = {}
                while (line := await self.reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    found[name.strip().lower()] = value.strip()
                data = await self.reader.readexactly(int(found.get("content-length", "0")))
                if found.get("connection") == "close":
                    self.close()
                return int(status_line.split()[1]), found, data
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                self.close()
                if attempt == 2:
                    return 0, {}, b""
        return 0, {}, b""

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# --- measurements ---------------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else 0.0


def db_mb(db: Path) -> str:
    """The database file's size, and the WAL's beside it (a checkpoint folds it back; it does not grow for ever)."""
    wal = db.with_name(db.name + "-wal")
    return f"{db.stat().st_size / 1e6:.1f} + {wal.stat().st_size / 1e6 if wal.exists() else 0:.1f}"


def rows(db: Path) -> str:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return ", ".join(f"{t} {conn.execute(f'SELECT count(*) FROM {t}').fetchone()[0]}"
                         for t in ("checks", "runs", "events", "alerts", "deliveries"))
    finally:
        conn.close()


async def probe(port: int, stop_at: float, latencies: list[float]) -> None:
    """The normal job: a ping every 20 ms, each timed."""
    conn = Conn(port)
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        await conn.request("POST", f"/ping/{KEY}/normal/log", body=b"ok")
        latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(max(0.0, 0.02 - (time.perf_counter() - t0)))
    conn.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


# --- the attacks: each returns what the server answered ---------------------------------------------------------

Attack = Callable[[int, float, int, Counter[str]], Awaitable[None]]


async def _loop(port: int, stop_at: float, connections: int, answers: Counter[str],
                one: Callable[[Conn, int], Awaitable[int]]) -> None:
    async def worker(w: int) -> None:
        conn, i = Conn(port), 0
        while time.perf_counter() < stop_at:
            answers[str(await one(conn, w * 10_000_000 + i))] += 1
            i += 1
        conn.close()

    await asyncio.gather(*(worker(w) for w in range(connections)))


async def huge_user_agent(port: int, stop_at: float, connections: int, answers: Counter[str]) -> None:
    """1. a 1 MB User-Agent (refused: 431), and a 10 KB one (stored cut to 500)."""
    big, medium = "u" * 1_000_000, "m" * 10_000

    async def one(conn: Conn, i: int) -> int:
        ua = big if i % 2 else medium
        return (await conn.request("POST", f"/ping/{KEY}/target/log", {"User-Agent": ua}))[0]

    await _loop(port, stop_at, connections, answers, one)


async def start_flood(port: int, stop_at: float, connections: int, answers: Counter[str]) -> None:
    """2. /start as fast as it goes: runs, alerts and deliveries (now pruned with the retention)."""
    async def one(conn: Conn, i: int) -> int:
        return (await conn.request("POST", f"/ping/{KEY}/target/start"))[0]

    await _loop(port, stop_at, connections, answers, one)


async def rid_flood(port: int, stop_at: float, connections: int, answers: Counter[str]) -> None:
    """3. starts with a new ?rid= each: open runs (now at most 100 per check)."""
    async def one(conn: Conn, i: int) -> int:
        return (await conn.request("POST", f"/ping/{KEY}/target/start?rid=r{i}"))[0]

    await _loop(port, stop_at, connections, answers, one)


async def create_flood(port: int, stop_at: float, connections: int, answers: Counter[str]) -> None:
    """4. ?create=1 with new slugs (capped by max_checks: 409)."""
    async def one(conn: Conn, i: int) -> int:
        return (await conn.request("POST", f"/ping/{KEY}/made-{i}?create=1"))[0]

    await _loop(port, stop_at, connections, answers, one)


async def whole_lists(port: int, stop_at: float, connections: int, answers: Counter[str]) -> None:
    """4. /metrics and /api/v1/checks of all the checks, read again and again (2 connections)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def one(conn: Conn, i: int) -> int:
        return (await conn.request("GET", "/metrics" if i % 2 else "/api/v1/checks", auth))[0]

    await _loop(port, stop_at, min(2, connections), answers, one)


async def login_guesses(port: int, stop_at: float, connections: int, answers: Counter[str]) -> None:
    """5. wrong passwords, each claiming a new X-Forwarded-For (ignored: the brakes hold)."""
    async def one(conn: Conn, i: int) -> int:
        status, headers, page = await conn.request("GET", "/login")
        csrf = re.search(rb'name="csrf" value="([^"]+)"', page)
        cookie = headers.get("set-cookie", "").split(";")[0]
        if csrf is None:
            return status
        form = f"csrf={csrf.group(1).decode()}&password=guess{i}&next=/".encode()
        return (await conn.request("POST", "/login", {"Cookie": cookie, "X-Forwarded-For": f"10.{i % 250}.0.1",
                                                      "Content-Type": "application/x-www-form-urlencoded"},
                                   form))[0]

    await _loop(port, stop_at, connections, answers, one)


async def bad_numbers(port: int, stop_at: float, connections: int, answers: Counter[str]) -> None:
    """7. bad and huge numbers in parameters, deep JSON to the write API: 400s, never 500."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    paths = ["/api/v1/checks/target/events?limit=%C2%B2", "/api/v1/checks/target/runs?limit=" + "9" * 5000,
             "/api/v1/checks/target/runs?limit=99999999999999999999999"]

    async def one(conn: Conn, i: int) -> int:
        if i % 4 == 3:
            return (await conn.request("POST", "/api/v1/checks", auth, b"[" * 60_000))[0]
        return (await conn.request("GET", paths[i % 3], auth))[0]

    await _loop(port, stop_at, connections, answers, one)


async def slow_clients(port: int, stop_at: float, connections: int, answers: Counter[str]) -> None:
    """9. 500 connections trickling their headers a byte a second: closed after the head timeout (10 s)."""
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(500):
        opened.append(await asyncio.open_connection("127.0.0.1", port))
    for _, writer in opened:
        writer.write(b"GET / HTTP/1.1\r\n")
    t0 = time.perf_counter()
    while time.perf_counter() < stop_at:
        for _, writer in opened:
            if not writer.is_closing():
                writer.write(b"X")
        await asyncio.sleep(1)
    closed = 0
    for reader, writer in opened:
        try:
            closed += await asyncio.wait_for(reader.read(1), 0.05) == b""
        except (ConnectionResetError, BrokenPipeError):
            closed += 1  # closed by the server, then reset by our writes after it
        except TimeoutError:
            pass
        writer.close()
    answers[f"closed by the server after {time.perf_counter() - t0:.0f}s"] = closed
    answers["still open"] = 500 - closed


ATTACKS: list[tuple[str, Attack]] = [
    ("1 huge User-Agent", huge_user_agent), ("2 /start flood", start_flood), ("3 new rid per start", rid_flood),
    ("4 ?create=1 flood", create_flood), ("4 whole lists", whole_lists), ("5 login guesses, XFF", login_guesses),
    ("7 bad numbers, deep JSON", bad_numbers), ("9 slow clients", slow_clients),
]


async def measure(port: int, seconds: float, attack: Attack | None, connections: int
                  ) -> tuple[list[float], Counter[str]]:
    stop_at = time.perf_counter() + seconds
    latencies: list[float] = []
    answers: Counter[str] = Counter()
    jobs = [probe(port, stop_at, latencies)]
    if attack is not None:
        jobs.append(attack(port, stop_at, connections, answers))
    await asyncio.gather(*jobs)
    return latencies, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--only", default="", help="run only the attacks whose name holds this text")
    parser.add_argument("--rate-limit", type=int, default=0, help="[server] rate_limit (pings per minute per check)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "heartwatch.toml").write_text(CONFIG.replace("{rate_limit}", str(args.rate_limit)))
        db, port = folder / "hw.db", free_port()
        proc = heartwatch(folder / "heartwatch.toml", db, port, folder / "server.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", proc)
            asyncio.run(measure(port, 1.0, None, 1))  # warm up
            base, _ = asyncio.run(measure(port, args.seconds, None, 1))
            print(f"{os.cpu_count()} cores; each attack {args.seconds:.0f} s on {args.connections} connections; "
                  f"normal pings: one every 20 ms; rate_limit = {args.rate_limit}")
            print("| attack | answers | RSS MB before → after | DB + WAL MB before → after | normal p50 / p99 ms |")
            print("| --- | --- | --- | --- | --- |")
            print(f"| none | | {rss_mb(proc.pid):.0f} | {db_mb(db)} | {pct(base, .5):.1f} / {pct(base, .99):.1f} |")
            for name, attack in ATTACKS:
                if args.only not in name:
                    continue
                rss0, db0 = rss_mb(proc.pid), db_mb(db)
                seconds = 12.0 if attack is slow_clients else args.seconds
                lat, answers = asyncio.run(measure(port, seconds, attack, args.connections))
                said = ", ".join(f"{k}: {v}" for k, v in sorted(answers.items()))
                print(f"| {name} | {said} | {rss0:.0f} → {rss_mb(proc.pid):.0f} | {db0} → {db_mb(db)} "
                      f"| {pct(lat, .5):.1f} / {pct(lat, .99):.1f} |", flush=True)
            log = (folder / "server.log").read_text()
            print(f"server log: {len(log.splitlines())} lines, {log.count('Traceback')} tracebacks")
            print(f"rows at the end: {rows(db)}")
            print("settings: " + json.dumps({"retention": 1000, "max_checks": 1000, "open runs per check": 100,
                                             "rate_limit": args.rate_limit}))
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
