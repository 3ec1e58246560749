"""The job's side of the ping protocol: ping URLs, sending with retries, and the logic behind
`heartwatch run`, `heartwatch step` and `heartwatch ping`.

Nothing here knows server internals; it only speaks HTTP to `/ping/...`. The one rule that shapes it:
monitoring must never stop, noticeably delay, or change the result of the job it watches. So `run`
starts the job at once and sends its pings (start, the steps `heartwatch step` hands over a Unix socket,
finish) in order from a thread of its own; after the job exits they get a fixed budget (TOTAL_BUDGET), a
failure is reported once as a warning on stderr, and `run` returns the command's own exit status
whatever happened to the pings.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from heartwatch import __version__

if TYPE_CHECKING:
    import httpx

DEFAULT_SERVER = "http://127.0.0.1:8000"
#: Used until the server tells us its own limit in the `Ping-Body-Limit` header.
DEFAULT_BODY_LIMIT = 10_000
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
RID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: Exit statuses a shell uses when a command cannot be run; `heartwatch run` mimics them.
EXIT_NOT_FOUND = 127
EXIT_CANNOT_EXECUTE = 126
#: How long output may keep coming after the command exited (see `run_command`).
DRAIN_SECONDS = 1.0
#: What `heartwatch run` may add to a job's wall time in all: starting up, then, after the job exited, the
#: rest of its output and the pings still to send (start and steps not yet answered, then the finish).
#: The part after the exit gets what start-up left of TOTAL_BUDGET, between these two bounds; the rest of
#: the promised 2 s is for the interpreter's exit and a busy machine.
TOTAL_BUDGET = 1.7
FINISH_BUDGET = 1.0
MIN_FINISH_BUDGET = 0.5
#: The socket `heartwatch step` hands its step to (see `StepListener`), and how long that may take.
STEP_SOCKET_ENV = "HEARTWATCH_STEP_SOCKET"
STEP_HANDOFF_SECONDS = 1.0
#: A step sent directly (no `heartwatch run` socket to reach) gets one attempt of at most this long.
STEP_DIRECT_SECONDS = 1.0
#: Signals passed on to the child so `systemctl stop`, `timeout` or Ctrl-C reach the real job.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

Warn = Callable[[str], None]


class ClientError(Exception):
    """A mistake in what the user asked for; `str()` is the one line to show."""


def warn_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- where pings go ---------------------------------------------------------------------------------


def resolve_server(server: str | None, ping_key: str | None, config_path: Path | None) -> tuple[str, str | None]:
    """Server URL and ping key: flag or environment (click merges those) first, then the config file.

    Only the file's own values are read (`environ={}`), so a flag or variable always wins over it.
    """
    if config_path is not None and (not server or not ping_key):
        from heartwatch.config import ConfigError, load_settings  # only needed when a config is given

        try:
            settings = load_settings(config_path, environ={})
        except ConfigError as e:
            raise ClientError(f"{config_path}: {e}") from None
        server = server or settings.public_url
        ping_key = ping_key or settings.ping_key
    return (server or DEFAULT_SERVER).rstrip("/"), ping_key or None


def check_url(server: str, check: str, ping_key: str | None) -> str:
    """The base ping URL of a check: `<server>/ping/<uuid>` or `<server>/ping/<ping_key>/<slug>`."""
    if not re.match(r"^https?://[^/\s]+", server):
        raise ClientError(f"server {server!r} is not an http:// or https:// URL")
    base = server.rstrip("/")
    if UUID_RE.match(check):
        return f"{base}/ping/{check.lower()}"
    if not re.match(r"^[a-z0-9_-]{1,64}$", check):
        raise ClientError(f"check {check!r} is neither a uuid nor a slug (1-64 characters of a-z, 0-9, - and _)")
    if not ping_key:
        raise ClientError(
            f"check {check!r} is a slug, so a ping key is needed: give --ping-key or set HEARTWATCH_PING_KEY "
            "(or use the check's uuid)"
        )
    return f"{base}/ping/{ping_key}/{check}"


def describe(url: str) -> str:
    """A ping URL for messages, without the ping key or uuid (they are what makes the URL secret)."""
    parts = urlsplit(url)
    path = parts.path.split("/")
    # /ping/<uuid> -> keep nothing secret; /ping/<key>/<slug> -> show the slug
    label = f" (check {path[3]!r})" if len(path) >= 4 and path[1] == "ping" and path[3] else ""
    return f"{parts.scheme}://{parts.netloc}{label}"


# --- sending ------------------------------------------------------------------------------------------


@dataclass
class PingResult:
    ok: bool
    status: int | None = None  # HTTP status, None when the server was not reached
    body_limit: int | None = None  # the server's `Ping-Body-Limit`, when it sent one
    error: str = ""


@dataclass
class Pinger:
    """Sends pings for one check URL; warns at most once per process, whatever goes wrong.

    Connection errors, timeouts, 429 and 5xx are retried with doubling backoff; other answers are final
    (a 404 will not turn into a 200 by asking again). Once the server proved unreachable, later pings
    get a single attempt, so a dead server costs one round of retries, not one per ping. With a
    `deadline` (a `time.monotonic()` value) no attempt starts, and no wait or timeout reaches, past it.
    """

    url: str
    warn: Warn = warn_stderr
    prefix: str = "heartwatch"
    attempts: int = 3
    backoff: float = 0.5
    timeout: float = 5.0
    connect_timeout: float = 3.0
    sleep: Callable[[float], object] = time.sleep
    deadline: float | None = None
    stop_retrying: Callable[[], bool] = lambda: False  # checked before each retry
    warned: bool = False
    unreachable: bool = False

    def send(self, suffix: str = "", params: Mapping[str, str] | None = None, body: bytes = b"") -> PingResult:
        import httpx  # a quarter of the start-up time of `heartwatch run`: loaded when the first ping goes out

        result = PingResult(ok=False, error="no time left to send it")
        attempts = 1 if self.unreachable else max(1, self.attempts)
        headers = {"User-Agent": f"heartwatch/{__version__}"}
        for attempt in range(attempts):
            if attempt:
                nap = self.backoff * 2 ** (attempt - 1)
                if self._left() <= nap or self.stop_retrying():
                    break
                self.sleep(nap)
                if self.stop_retrying():
                    break
            left = self._left()
            if left <= 0:
                break
            timeout = httpx.Timeout(min(self.timeout, left), connect=min(self.connect_timeout, left))
            try:
                with httpx.Client(timeout=timeout) as http:  # honours *_PROXY and SSL_CERT_FILE, as curl does
                    response = http.post(self.url + suffix, params=dict(params or {}), content=body,
                                         headers=headers)
            except httpx.HTTPError as e:
                result = PingResult(ok=False, error=_transport_reason(e))
                continue
            result = PingResult(
                ok=response.is_success,
                status=response.status_code,
                body_limit=_int_header(response.headers.get("Ping-Body-Limit")),
                error="" if response.is_success else _answer_reason(response),
            )
            if response.is_success or not (response.status_code == 429 or response.status_code >= 500):
                break
        if result.status is None:
            self.unreachable = True
        if not result.ok:
            self._warn_once(result)
        return result

    def _left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def _warn_once(self, result: PingResult) -> None:
        if self.warned:
            return
        self.warned = True
        if result.status is None:
            self.warn(f"{self.prefix}: warning: could not reach {describe(self.url)}: {result.error}; "
                      "the job is not affected, but this run is not monitored")
        else:
            self.warn(f"{self.prefix}: warning: {describe(self.url)} answered {result.error}")


def _transport_reason(e: Exception) -> str:
    import httpx

    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    reason = str(e) or type(e).__name__
    return reason.splitlines()[0]


def _answer_reason(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:200]
    return f"{response.status_code} {text}".rstrip()


def _int_header(value: str | None) -> int | None:
    if value is None or not (value.strip().isascii() and value.strip().isdigit() and len(value.strip()) <= 12):
        return None
    return int(value)


# --- the output tail ------------------------------------------------------------------------------------


class OutputTail:
    """The last `limit` bytes of the job's output (stdout and stderr, in the order they were read)."""

    def __init__(self, limit: int = DEFAULT_BODY_LIMIT) -> None:
        self._limit = max(0, limit)
        self._buf = bytearray()
        self._lock = threading.Lock()  # fed by the pump thread, resized by the sender, read at the end

    @property
    def limit(self) -> int:
        return self._limit

    def set_limit(self, limit: int) -> None:
        with self._lock:
            self._limit = max(0, limit)
            self._trim()

    def feed(self, data: bytes) -> None:
        with self._lock:
            self._buf += data[-(self._limit + 3):] if self._limit else b""  # +3: see _trim
            self._trim()

    def value(self) -> bytes:
        with self._lock:
            return bytes(self._buf)

    def _trim(self) -> None:
        excess = len(self._buf) - self._limit
        if excess > 0:
            # Also drop the rest of a UTF-8 character cut in half, so the tail reads as clean text.
            while excess < len(self._buf) and excess < 3 + len(self._buf) - self._limit \
                    and 0x80 <= self._buf[excess] <= 0xBF:
                excess += 1
            del self._buf[:excess]


def same_file(fd_a: int, fd_b: int) -> bool:
    """Whether two of our file descriptors lead to the same file, pipe, socket or terminal."""
    try:
        a, b = os.fstat(fd_a), os.fstat(fd_b)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _pump(sources: Mapping[int, int], tail: OutputTail) -> None:
    """Copy each pipe (read fd -> our fd) as data arrives, keeping the tail; never stop draining the child.

    One thread reads every pipe, so what it reads goes into the tail in the order it was read. Writes go
    straight to the file descriptor: no Python buffer (whose lock a still-running pump could hold while
    the interpreter exits) and no delay between the job's output and ours.
    """
    broken: set[int] = set()
    with selectors.DefaultSelector() as sel:
        for fd, sink in sources.items():
            sel.register(fd, selectors.EVENT_READ, sink)
        while sel.get_map():
            for key, _ in sel.select():
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    os.close(key.fd)
                    continue
                tail.feed(chunk)
                view = memoryview(chunk)
                while key.data not in broken and view:
                    try:
                        view = view[os.write(key.data, view):]
                    except OSError:
                        # Our stream was closed (e.g. `| head`): keep draining so the child never blocks.
                        broken.add(key.data)


class StepListener:
    """A Unix socket the job's `heartwatch step` hands its step names to, so a step costs the job
    milliseconds whatever the server does: the run's own sender sends them, in order, in the background.

    It lives in a fresh 0700 folder, so only our user (the job's) can reach it.
    """

    def __init__(self, on_step: Callable[[str], None]) -> None:
        self._on_step = on_step
        self._folder = tempfile.mkdtemp(prefix="heartwatch-run-")
        self.path = os.path.join(self._folder, "steps")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(16)
        self._thread = threading.Thread(target=self._serve, name="heartwatch-steps", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed: the run is over
                return
            with conn:
                try:
                    conn.settimeout(STEP_HANDOFF_SECONDS)
                    data = b""
                    while len(data) < 1024 and (chunk := conn.recv(1024)):
                        data += chunk
                    self._on_step(data.decode(errors="replace"))
                    conn.sendall(b"ok\n")
                except OSError:
                    continue

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() above
        self._sock.close()
        self._thread.join(1.0)
        shutil.rmtree(self._folder, ignore_errors=True)


def hand_step_to_run(path: str, name: str) -> bool:
    """Give a step name to the `heartwatch run` listening at `path`; False when it cannot be reached."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(STEP_HANDOFF_SECONDS)
            s.connect(path)
            s.sendall(name.encode())
            s.shutdown(socket.SHUT_WR)
            return s.recv(16) == b"ok\n"
    except OSError:
        return False


class PingQueue:
    """One run's pings, sent in the order they were queued by a thread of its own, so the job never waits.

    `finish` gives what is still queued until a deadline; the main thread stops waiting then, whatever the
    server does (a request still hanging is abandoned with the daemon thread).
    """

    def __init__(self, pinger: Pinger, tail: OutputTail) -> None:
        self.pinger = pinger
        self._tail = tail
        self._items: queue.SimpleQueue[tuple[str, dict[str, str], Callable[[], bytes], bool] | None] = \
            queue.SimpleQueue()
        self.dropped = 0
        # Set when the job has ended: a ping still waiting to retry then goes on to the next, so the time
        # left goes to the finish, the ping that matters most.
        self._ending = threading.Event()
        pinger.sleep = self._ending.wait
        self._thread = threading.Thread(target=self._work, name="heartwatch-pings", daemon=True)
        self._thread.start()

    def put(self, suffix: str, params: dict[str, str], body: Callable[[], bytes] = lambda: b"",
            last: bool = False) -> None:
        self._items.put((suffix, params, body, last))

    def finish(self, deadline: float) -> bool:
        """Stop taking pings and wait, until `deadline` at the latest, for the queued ones; True if all went."""
        self.pinger.deadline = deadline
        self._ending.set()
        self._items.put(None)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive() and not self.dropped

    def _work(self) -> None:
        while (item := self._items.get()) is not None:
            suffix, params, body, last = item
            if self.pinger.deadline is not None and time.monotonic() >= self.pinger.deadline:
                self.dropped += 1
                continue
            # The finish may retry in the time left; earlier pings stop retrying once the job has ended.
            self.pinger.stop_retrying = (lambda: False) if last else self._ending.is_set
            self.pinger.sleep = time.sleep if last else self._ending.wait
            result = self.pinger.send(suffix, params, body())
            if result.body_limit is not None:
                self._tail.set_limit(result.body_limit)


# --- heartwatch run -------------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    exit_status: int
    rid: str
    pings_sent: bool = False  # every ping of the run was answered before the deadline


def seconds_since_process_start() -> float:
    """How long ago this process started (Linux: /proc/self/stat against the boot clock); 0 when unknown."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, counted from after the name
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def finish_budget(spent: float) -> float:
    """The time the pings get after the job exited, when start-up took `spent` seconds of TOTAL_BUDGET."""
    return min(FINISH_BUDGET, max(MIN_FINISH_BUDGET, TOTAL_BUDGET - spent))


def new_rid() -> str:
    return str(uuid.uuid4())


def exit_status_of(returncode: int) -> int:
    """A Popen return code as a shell reports it: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def run_command(
    argv: Sequence[str],
    pinger: Pinger | None,
    *,
    stdout_fd: int,
    stderr_fd: int,
    environ: Mapping[str, str],
    rid: str | None = None,
    finish_budget: float = FINISH_BUDGET,
) -> RunOutcome:
    """Run `argv` as one monitored run of a check and return its exit status (shell conventions).

    `pinger` is None when monitoring is not possible (bad check or server given): the command still runs.
    The command starts at once; its pings (start, the steps it hands over, finish with the output tail)
    go out in the background, in order. After the command exits, reading the rest of its output and the
    pings still to send get `finish_budget` seconds in all: that is all heartwatch can add to a job.
    """
    rid = rid or new_rid()
    outcome = RunOutcome(exit_status=0, rid=rid)
    tail = OutputTail()
    pings: PingQueue | None = None
    steps: StepListener | None = None
    env = dict(environ)
    env.pop(STEP_SOCKET_ENV, None)
    if pinger is not None:
        pings = PingQueue(pinger, tail)
        pings.put("/start", {"rid": rid})
        env["HEARTWATCH_PING_URL"] = pinger.url
        env["HEARTWATCH_RUN_ID"] = rid
        queued = pings

        def on_step(name: str) -> None:
            queued.put("", {"step": name, "rid": rid})

        try:
            steps = StepListener(on_step)
            env[STEP_SOCKET_ENV] = steps.path
        except OSError:
            pass  # no socket here (a read-only TMPDIR): `heartwatch step` then pings directly, bounded

    # One pipe for both streams when ours are the same file (a terminal, cron's mail, the journal,
    # `>> log 2>&1`): the tail then keeps the exact order the job wrote in, and nothing is lost by
    # merging. When the caller split them (`> /dev/null` to mail only errors), each keeps its own pipe.
    merged = same_file(stdout_fd, stderr_fd)
    out_r, out_w = os.pipe()
    err_r, err_w = (out_r, out_w) if merged else os.pipe()
    sources = {out_r: stdout_fd} if merged else {out_r: stdout_fd, err_r: stderr_fd}

    forwarder = _SignalForwarder()
    with forwarder:
        try:
            proc = subprocess.Popen(list(argv), stdout=out_w, stderr=err_w, env=env)
        except OSError as e:
            for fd in {out_r, out_w, err_r, err_w}:
                os.close(fd)
            status, message = _launch_failure(argv, e)
            os.write(stderr_fd, f"heartwatch run: {message}\n".encode())
            outcome.exit_status = status
            return _finish(outcome, pings, steps, f"/{status}", lambda: f"heartwatch run: {message}\n".encode(),
                           time.monotonic() + finish_budget)
        for fd in {out_w, err_w}:
            os.close(fd)
        forwarder.attach(proc)
        pump = threading.Thread(target=_pump, args=(sources, tail), name="heartwatch-output", daemon=True)
        pump.start()
        returncode = proc.wait()
        deadline = time.monotonic() + finish_budget
        # Output still in the pipes takes milliseconds to read. A pipe still open after that belongs to
        # something the command left running in the background; waiting for it could take forever.
        pump.join(min(DRAIN_SECONDS, finish_budget / 2))

    outcome.exit_status = exit_status_of(returncode)
    suffix = "" if outcome.exit_status == 0 else f"/{outcome.exit_status}"
    return _finish(outcome, pings, steps, suffix, tail.value, deadline)


def _finish(outcome: RunOutcome, pings: PingQueue | None, steps: StepListener | None, suffix: str,
            body: Callable[[], bytes], deadline: float) -> RunOutcome:
    if steps is not None:
        steps.close()
    if pings is None:
        return outcome
    pings.put(suffix, {"rid": outcome.rid}, body, last=True)
    outcome.pings_sent = pings.finish(deadline)
    if not outcome.pings_sent and not pings.pinger.warned:
        pings.pinger.warned = True
        pings.pinger.warn(f"heartwatch run: warning: {describe(pings.pinger.url)} did not answer in time; "
                          "the job is not affected, but this run may not be recorded")
    return outcome


def _launch_failure(argv: Sequence[str], e: OSError) -> tuple[int, str]:
    name = argv[0] if argv else ""
    if isinstance(e, FileNotFoundError):
        return EXIT_NOT_FOUND, f"{name}: command not found"
    if isinstance(e, PermissionError):
        return EXIT_CANNOT_EXECUTE, f"{name}: permission denied"
    return EXIT_CANNOT_EXECUTE, f"{name}: cannot execute: {e.strerror or e}"


class _SignalForwarder:
    """Passes SIGTERM/SIGINT/SIGHUP on to the child while it runs; restores the old handlers after.

    Handlers go in before the child is started, so a signal that arrives in between is not lost: it is
    held and delivered as soon as the child exists. In a terminal, Ctrl-C reaches the child directly too
    (same process group); a second SIGINT is harmless for almost every program and keeps `kill -INT`
    working when there is no terminal, as under cron.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending: list[int] = []
        self._saved: dict[int, object] = {}

    def __enter__(self) -> _SignalForwarder:
        if threading.current_thread() is threading.main_thread():
            for sig in FORWARDED_SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]  # a handler signal.signal returned

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        for sig in self._pending:
            self._forward(sig)
        self._pending.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._proc is None:
            self._pending.append(signum)
        else:
            self._forward(signum)

    def _forward(self, signum: int) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):  # it has just exited; its status says the rest
            self._proc.send_signal(signum)


# --- heartwatch step / ping -----------------------------------------------------------------------------


def send_step(name: str, environ: Mapping[str, str], warn: Warn = warn_stderr) -> PingResult | None:
    """Report a step of the run `heartwatch run` started; returns None when there is no run to report to.

    Under `heartwatch run` the step is handed to it through its socket and the script goes on at once.
    Only when that socket cannot be reached (the job changed user, a sandbox) is it sent from here, with
    one short attempt, so a script still never waits long on a step.
    """
    url = environ.get("HEARTWATCH_PING_URL", "")
    socket_path = environ.get(STEP_SOCKET_ENV, "")
    if socket_path and hand_step_to_run(socket_path, name):
        return None
    if not url:
        warn(f"heartwatch step: warning: HEARTWATCH_PING_URL is not set, so step {name!r} was not reported; "
             "run this script under `heartwatch run CHECK -- ...`")
        return None
    params = {"step": name}
    rid = environ.get("HEARTWATCH_RUN_ID", "")
    if rid:
        params["rid"] = rid
    pinger = Pinger(url, warn=warn, prefix="heartwatch step", attempts=1, timeout=STEP_DIRECT_SECONDS,
                    connect_timeout=STEP_DIRECT_SECONDS, deadline=time.monotonic() + STEP_DIRECT_SECONDS)
    return pinger.send("", params)


def ping_suffix(*, start: bool, fail: bool, exit_code: int | None, step: str | None) -> str:
    """The URL suffix for `heartwatch ping`; at most one kind of ping may be asked for."""
    kinds = [k for k, on in (("--start", start), ("--fail", fail), ("--exit-code", exit_code is not None),
                             ("--step", step is not None)) if on]
    if len(kinds) > 1:
        raise ClientError(f"give only one of {', '.join(kinds)}")
    if start:
        return "/start"
    if fail:
        return "/fail"
    if exit_code is not None:
        return f"/{exit_code}"
    return ""


def check_rid(rid: str) -> str:
    if not RID_RE.match(rid):
        raise ClientError(f"rid {rid!r} must be 1-64 characters of letters, digits and . _ : -")
    return rid
