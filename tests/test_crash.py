"""Crash safety: the real `heartwatch serve`, killed with SIGKILL at random moments under concurrent pings.

Every ping carries a unique marker in its body. A client counts a ping as answered only on a 200; after
the last kill the database is opened with sqlite3 and every answered marker must be in `events`, and the
file must pass `PRAGMA integrity_check`. Each restart also runs heartwatch's own start-up quick_check on
the file the kill left behind. `pytest -s` prints the figures; HEARTWATCH_CRASH_SEED picks other moments.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from support.server import Server

KILLS = 6
CLIENTS = 6
CHECKS = 4
SEED = int(os.environ.get("HEARTWATCH_CRASH_SEED", "20240501"))

CONFIG = "[server]\nretention = 10000000\n" + "".join(
    f'[checks.c{i}]\nsteps = ["dump", "upload"]\n' for i in range(CHECKS))


@dataclass
class Client:
    """One job runner: runs of start, dump, upload, finish with its own rids, round the checks."""

    number: int
    server: Server
    stop: threading.Event
    answered: list[tuple[str, float]] = field(default_factory=list)  # (marker, when)
    unanswered: int = 0
    max_latency: float = 0.0

    def run(self) -> None:
        seq = 0
        with httpx.Client(timeout=5) as http:
            while not self.stop.is_set():
                run = seq // 4
                slug = f"c{(self.number + run) % CHECKS}"
                rid = f"t{self.number}-r{run}"
                step = ("start", "dump", "upload", "finish")[seq % 4]
                marker = f"m-{self.number}-{seq}"
                seq += 1
                try:
                    t0 = time.monotonic()
                    r = http.post(self.server.slug_url(slug), params={"step": step, "rid": rid},
                                  content=marker.encode())
                    if r.status_code == 200:
                        self.max_latency = max(self.max_latency, time.monotonic() - t0)
                        self.answered.append((marker, time.monotonic()))
                        continue
                    raise AssertionError(f"{r.status_code} {r.text}")  # never expected: fails the test
                except httpx.TransportError:  # down, or killed mid-request: not answered, not counted
                    self.unanswered += 1
                    time.sleep(0.02)


def test_every_answered_ping_survives_sigkill(tmp_path: Path) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    config = tmp_path / "heartwatch.toml"
    config.write_text(CONFIG)
    server = Server(config, tmp_path / "heartwatch.db")
    server.start()

    stop = threading.Event()
    clients = [Client(i, server, stop) for i in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, name=f"client-{c.number}", daemon=True) for c in clients]
    for t in threads:
        t.start()
    answered_per_life: list[int] = []
    try:
        for kill in range(KILLS):
            life_began = time.monotonic()
            time.sleep(rng.uniform(0.2, 0.9))  # the random moment
            assert server.stop(signal.SIGKILL) == -signal.SIGKILL
            answered_per_life.append(sum(1 for c in clients for _, at in c.answered if at >= life_began))
            if kill < KILLS - 1:
                server.start()  # same database, same port; start-up runs quick_check on what the kill left
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        if server.proc is not None:
            server.stop(signal.SIGKILL)
    assert not any(t.is_alive() for t in threads), "a client thread did not stop"

    conn = sqlite3.connect(server.db_path)  # the last kill's WAL is recovered here, as at a restart
    try:
        [(integrity,)] = conn.execute("PRAGMA integrity_check").fetchall()
        stored = {bytes(body).decode() for (body,) in conn.execute("SELECT body FROM events WHERE body IS NOT NULL")}
        [(runs,)] = conn.execute("SELECT count(*) FROM runs").fetchall()
    finally:
        conn.close()

    answered = [marker for c in clients for marker, _ in c.answered]
    lost = [m for m in answered if m not in stored]
    print(f"\ncrash test (seed {SEED}): {KILLS} SIGKILLs survived, {len(answered)} pings answered 200 from "
          f"{CLIENTS} clients over {CHECKS} checks ({runs} runs), {len(answered) - len(lost)} found in the "
          f"database, {len(lost)} lost; {sum(c.unanswered for c in clients)} requests refused or cut off by "
          f"kills; answered per life {answered_per_life}; max ping latency "
          f"{max(c.max_latency for c in clients) * 1000:.0f} ms; integrity_check {integrity}; "
          f"{time.monotonic() - started:.1f} s")
    assert integrity == "ok"
    assert all(n > 0 for n in answered_per_life), "every life of the server must answer pings, or a kill proved nothing"
    assert len(answered) == len(set(answered))
    assert lost == []
