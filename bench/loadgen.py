"""Load generators for bench/: Debian's wrk when installed, else a small asyncio keep-alive client.

Both send one request per round trip on each connection (no pipelining) and count only complete answers.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: The step chain each check's pings cycle through (bench/pings.py's default config: steps = ["dump", "upload"]).
STEPS = ["start", "dump", "upload", "finish"]
BODY = "rows=1234 bytes=567890 status=ok\n"


@dataclass
class Result:
    requests: int  # complete answers
    ok: int  # answers with status 200/201
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_us: float = 0.0  # CPU time the server used per answered request

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def paths(prefix: str, slugs: list[str], steps: list[str] = STEPS) -> list[str]:
    return [f"{prefix}/{slug}?step={step}" for slug in slugs for step in steps]


_LUA = """
local paths = %s
local n = #paths
local i = math.random(n)
request = function()
  i = i %% n + 1
  return wrk.format("POST", paths[i], {["Content-Type"] = "text/plain"}, %s)
end
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %%d, "bad": %%d, "errors": %%d, "us": %%d, "p50": %%d, "p99": %%d}\\n',
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(base: str, path_list: list[str], connections: int, seconds: float) -> Result:
    script = _LUA % ("{" + ",".join(json.dumps(p) for p in path_list) + "}", json.dumps(BODY))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", f.name, base]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    Path(f.name).unlink()
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    d = json.loads(line[len("RESULT "):])
    return Result(d["requests"], d["requests"] - d["bad"], d["us"] / 1e6, d["p50"] / 1000, d["p99"] / 1000)


async def _client(host: str, port: int, path_list: list[str], stop_at: float, latencies: list[float],
                  counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    body = BODY.encode()
    i = random.randrange(len(path_list))
    try:
        while time.perf_counter() < stop_at:
            i = (i + 1) % len(path_list)
            t0 = time.perf_counter()
            writer.write(f"POST {path_list[i]} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            counts[0] += 1
            if status_line.split()[1] in (b"200", b"201"):
                counts[1] += 1
    finally:
        writer.close()


def run_builtin(base: str, path_list: list[str], connections: int, seconds: float) -> Result:
    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    counts = [0, 0]

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(_client(host, int(port), path_list, t0 + seconds, latencies, counts)
                               for _ in range(connections)))
        return time.perf_counter() - t0

    elapsed = asyncio.run(main())
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return Result(counts[0], counts[1], elapsed, pick(0.50), pick(0.99))


def run(base: str, path_list: list[str], connections: int, seconds: float) -> tuple[str, Result]:
    if shutil.which("wrk"):
        return "wrk", run_wrk(base, path_list, connections, seconds)
    return "asyncio client", run_builtin(base, path_list, connections, seconds)
