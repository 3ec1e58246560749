"""Helpers shared by the benchmarks: free ports, starting a server process and waiting for it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> float:
    """Poll `url` until it answers; returns the seconds it took."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return time.perf_counter() - t0
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def heartwatch(config: Path, db: Path | str, port: int, log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    """`heartwatch serve`; `cwd` holds the package it runs (`python -m` imports from there first)."""
    return subprocess.Popen([sys.executable, "-m", "heartwatch", "serve", "--config", str(config), "--db", str(db),
                             "--port", str(port)], stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=cwd)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc): per-request cost, whatever else the box does."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
