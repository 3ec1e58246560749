"""The job's side of the ping protocol (DESIGN.md section 3): ping URLs, sending with retries, and the
logic behind `heartwatch run`, `heartwatch step` and `heartwatch ping`.

Nothing here knows server internals; it only speaks HTTP to `/ping/...`. The one rule that shapes it:
monitoring must never stop, noticeably delay, or change the result of the job it watches. So every
send is bounded (short timeouts, a few retries), a failure is reported once as a warning on stderr, and
`run` returns the command's own exit status whatever happened to the pings.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx

from heartwatch import __version__

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
#: Set for the child when the start ping found the server unreachable (see `send_step`).
UNREACHABLE_ENV = "HEARTWATCH_SERVER_UNREACHABLE"
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
    get a single attempt, so a dead server costs the job one round of retries, not one per ping.
    """

    url: str
    warn: Warn = warn_stderr
    prefix: str = "heartwatch"
    attempts: int = 3
    backoff: float = 0.5
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(5.0, connect=3.0))
    sleep: Callable[[float], None] = time.sleep
    warned: bool = False
    unreachable: bool = False
    quiet_when_unreachable: bool = False  # someone else (the parent `heartwatch run`) reports that

    def send(self, suffix: str = "", params: Mapping[str, str] | None = None, body: bytes = b"") -> PingResult:
        result = PingResult(ok=False)
        attempts = 1 if self.unreachable else max(1, self.attempts)
        headers = {"User-Agent": f"heartwatch/{__version__}"}
        for attempt in range(attempts):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                with httpx.Client(timeout=self.timeout) as http:  # honours *_PROXY and SSL_CERT_FILE, as curl does
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

    def _warn_once(self, result: PingResult) -> None:
        if self.warned or (result.status is None and self.quiet_when_unreachable):
            return
        self.warned = True
        if result.status is None:
            self.warn(f"{self.prefix}: warning: could not reach {describe(self.url)}: {result.error}; "
                      "the job is not affected, but this run is not monitored")
        else:
            self.warn(f"{self.prefix}: warning: {describe(self.url)} answered {result.error}")


def _transport_reason(e: httpx.HTTPError) -> str:
    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    reason = str(e) or type(e).__name__
    return reason.splitlines()[0]


def _answer_reason(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:200]
    return f"{response.status_code} {text}".rstrip()


def _int_header(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


# --- the output tail ------------------------------------------------------------------------------------


class OutputTail:
    """The last `limit` bytes of the job's output (stdout and stderr, in the order they were read)."""

    def __init__(self, limit: int = DEFAULT_BODY_LIMIT) -> None:
        self._limit = max(0, limit)
        self._buf = bytearray()
        self._lock = threading.Lock()  # fed from two pump threads

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


def _pump(source: BinaryIO, sink_fd: int, tail: OutputTail) -> None:
    """Copy a pipe to our own stream as it arrives, keeping the tail; never stop draining the child.

    Writes go straight to the file descriptor: no Python buffer (whose lock a still-running pump could
    hold while the interpreter exits) and no delay between the job's output and ours.
    """
    fd = source.fileno()
    sink_ok = True
    while chunk := os.read(fd, 65536):
        tail.feed(chunk)
        view = memoryview(chunk)
        while sink_ok and view:
            try:
                view = view[os.write(sink_fd, view):]
            except OSError:
                # Our stdout was closed (e.g. `| head`): keep draining so the child never blocks on a full pipe.
                sink_ok = False
    source.close()


# --- heartwatch run -------------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    exit_status: int
    rid: str
    start: PingResult | None = None
    finish: PingResult | None = None


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
    start_wait: float = 2.0,
    rid: str | None = None,
) -> RunOutcome:
    """Run `argv` as one monitored run of a check and return its exit status (shell conventions).

    `pinger` is None when monitoring is not possible (bad check or server given): the command still runs.
    The start ping goes out in the background and the command starts as soon as it is answered, or after
    `start_wait` seconds at the latest, so a slow server never holds a job back for long.
    """
    rid = rid or new_rid()
    outcome = RunOutcome(exit_status=0, rid=rid)
    tail = OutputTail()

    start_thread: threading.Thread | None = None
    if pinger is not None:
        active = pinger

        def send_start() -> None:
            outcome.start = active.send("/start", {"rid": rid})
            if outcome.start.body_limit is not None:
                tail.set_limit(outcome.start.body_limit)

        start_thread = threading.Thread(target=send_start, name="heartwatch-start", daemon=True)
        start_thread.start()
        start_thread.join(start_wait)

    env = dict(environ)
    env.pop(UNREACHABLE_ENV, None)
    if pinger is not None:
        env["HEARTWATCH_PING_URL"] = pinger.url
        env["HEARTWATCH_RUN_ID"] = rid
        # "1": already warned, so `heartwatch step` in the script tries once, quietly, instead of retrying
        # at every step. "0": not known yet (the start may still be retrying) — either way `run` itself
        # says once that the server is unreachable, so a step never repeats that warning.
        env[UNREACHABLE_ENV] = "1" if pinger.unreachable else "0"

    forwarder = _SignalForwarder()
    with forwarder:
        try:
            proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        except OSError as e:
            status, message = _launch_failure(argv, e)
            os.write(stderr_fd, f"heartwatch run: {message}\n".encode())
            outcome.exit_status = status
            if start_thread is not None and pinger is not None:
                start_thread.join()
                outcome.finish = pinger.send("/fail", {"rid": rid}, f"heartwatch run: {message}\n".encode())
            return outcome
        forwarder.attach(proc)
        assert proc.stdout is not None and proc.stderr is not None  # both are PIPE
        pumps = [
            threading.Thread(target=_pump, args=(proc.stdout, stdout_fd, tail), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, stderr_fd, tail), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        returncode = proc.wait()
        # Output still in the pipes takes milliseconds to read. A pipe still open after that belongs to
        # something the command left running in the background; waiting for it could take forever.
        drained_by = time.monotonic() + DRAIN_SECONDS
        for pump in pumps:
            pump.join(max(0.0, drained_by - time.monotonic()))

    outcome.exit_status = exit_status_of(returncode)
    if start_thread is not None and pinger is not None:
        start_thread.join()  # keeps start before finish on the server
        suffix = "" if outcome.exit_status == 0 else f"/{outcome.exit_status}"
        outcome.finish = pinger.send(suffix, {"rid": rid}, tail.value())
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
    """Report a step of the run `heartwatch run` started; returns None when there is no run to report to."""
    url = environ.get("HEARTWATCH_PING_URL", "")
    if not url:
        warn(f"heartwatch step: warning: HEARTWATCH_PING_URL is not set, so step {name!r} was not reported; "
             "run this script under `heartwatch run CHECK -- ...`")
        return None
    params = {"step": name}
    rid = environ.get("HEARTWATCH_RUN_ID", "")
    if rid:
        params["rid"] = rid
    # A script waits for each step, so a step gets a smaller budget than run's own pings; and none
    # beyond one quiet try when `heartwatch run` has already found the server unreachable and said so.
    quiet = environ.get(UNREACHABLE_ENV) == "1"
    pinger = Pinger(url, warn=warn, prefix="heartwatch step", attempts=1 if quiet else 2, backoff=0.25,
                    timeout=httpx.Timeout(3.0, connect=2.0), warned=quiet,
                    quiet_when_unreachable=UNREACHABLE_ENV in environ)
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
