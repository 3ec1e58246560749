"""The wrapper's promise, against a server in each bad state: `heartwatch run` runs the job, returns its
exit status, passes its output through, and adds at most 2 s in all to the job's wall time (start, the
steps the job reports with `heartwatch step`, and finish together).

States: healthy (the reference), down (nothing listens: connections refused), hanging (the real heartwatch
stopped with SIGSTOP: the kernel accepts connections, nobody answers), answering 500 (a stdlib HTTP server),
slow (the real heartwatch behind a proxy that holds each request 0.1 s: the run must still be recorded in
full) and very slow (an HTTP server that answers after 3 s).

Added time = wall time under `heartwatch run` minus the wall time of the same script run bare (its
`heartwatch step` calls then find no run and return at once), the best of two of each, so a busy box does
not decide. Run with `-s` to see the figures.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support.ports import free_port
from support.server import Server, running_server

BIN = str(Path(sys.executable).parent)
SCRIPT = "echo out; heartwatch step dump; heartwatch step upload; heartwatch step verify; echo err >&2; exit 3"
PROMISE = 2.0
CONFIG = '[checks.job]\nperiod = "1h"\nsteps = ["dump", "upload", "verify"]\n'


def job_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTWATCH_")}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    began = time.monotonic()
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    return time.monotonic() - began, r


def best_of_two(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    first = timed(argv, env)
    second = timed(argv, env)
    return min(first, second, key=lambda t: t[0])


class _Stub(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # heartwatch run hung up on a slow answer: that is the point


@contextmanager
def http_stub(status: int, delay: float = 0.0, forward_to: str | None = None) -> Iterator[str]:
    """A loopback HTTP server: answers `status` after `delay`, or (forward_to) relays to a real server."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            time.sleep(delay)
            code, payload, headers = status, b"stub\n", {}
            if forward_to is not None:
                conn = http.client.HTTPConnection(forward_to.removeprefix("http://"), timeout=10)
                conn.request(self.command, self.path, body=body)
                answer = conn.getresponse()
                code, payload = answer.status, answer.read()
                headers = {k: v for k, v in answer.getheaders() if k.lower() == "ping-body-limit"}
                conn.close()
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    srv = _Stub(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("promise"), CONFIG) as srv:
        yield srv


@pytest.fixture(scope="module")
def baseline() -> float:
    seconds, r = best_of_two(["sh", "-c", SCRIPT], job_env())
    assert r.returncode == 3
    return seconds


def wrapped(url: str, key: str = "k") -> tuple[float, subprocess.CompletedProcess[str]]:
    argv = [os.path.join(BIN, "heartwatch"), "run", "job", "--server", url, "--ping-key", key, "--", "sh", "-c",
            SCRIPT]
    return best_of_two(argv, job_env())


def check_promise(state: str, seconds: float, r: subprocess.CompletedProcess[str], baseline: float) -> None:
    added = seconds - baseline
    print(f"\n{state}: job {baseline:.2f} s bare, {seconds:.2f} s under heartwatch run: +{added:.2f} s")
    assert r.returncode == 3, r.stderr  # the job's own status
    assert r.stdout == "out\n"
    assert r.stderr.startswith("err\n"), r.stderr  # passed through; at most one warning after it
    assert len(r.stderr.splitlines()) <= 2, r.stderr
    assert added < PROMISE, f"{state}: heartwatch added {added:.2f} s"


def runs_of(server: Server) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = server.api("/api/v1/checks/job/runs?limit=50")["runs"]
    return runs


def test_healthy_server_records_the_whole_run(real: Server, baseline: float) -> None:
    seconds, r = wrapped(real.url, real.ping_key)
    check_promise("healthy", seconds, r, baseline)
    assert r.stderr == "err\n"
    run = runs_of(real)[0]
    assert (run["state"], run["exit_code"]) == ("failed", 3)
    assert [s["name"] for s in run["steps"]] == ["dump", "upload", "verify"]


def test_server_down(baseline: float) -> None:
    seconds, r = wrapped(f"http://127.0.0.1:{free_port()}")
    check_promise("down (refused)", seconds, r, baseline)
    assert "could not reach" in r.stderr


def test_server_answering_500(baseline: float) -> None:
    with http_stub(500) as url:
        seconds, r = wrapped(url)
    check_promise("answering 500", seconds, r, baseline)
    assert "answered 500" in r.stderr


def test_server_very_slow(baseline: float) -> None:
    with http_stub(200, delay=3.0) as url:
        seconds, r = wrapped(url)
    check_promise("very slow (3 s per answer)", seconds, r, baseline)
    assert "did not answer in time" in r.stderr


def test_server_slow_still_records_the_run(real: Server, baseline: float) -> None:
    before = len(runs_of(real))
    with http_stub(200, delay=0.1, forward_to=real.url) as url:
        seconds, r = wrapped(url, real.ping_key)
    check_promise("slow (0.1 s per answer)", seconds, r, baseline)
    runs = runs_of(real)
    assert len(runs) == before + 2  # best of two: both runs were recorded
    assert all((run["state"], run["exit_code"]) == ("failed", 3) for run in runs[:2])
    assert [s["name"] for s in runs[0]["steps"]] == ["dump", "upload", "verify"]


def test_server_hanging(tmp_path: Path, baseline: float) -> None:
    # The real heartwatch, stopped: its socket still accepts connections (the kernel's backlog),
    # but nothing reads or answers them.
    with running_server(tmp_path, CONFIG) as srv:
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGSTOP)
        try:
            seconds, r = wrapped(srv.url, srv.ping_key)
        finally:
            srv.proc.send_signal(signal.SIGCONT)
    check_promise("hanging (accepts, never answers)", seconds, r, baseline)
    assert "did not answer in time" in r.stderr or "timed out" in r.stderr
