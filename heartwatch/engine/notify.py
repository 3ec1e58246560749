"""Delivering one alert through Apprise, and saying for each target what happened.

This module owns the edge to Apprise: sending a title and body to a list of Apprise URLs with a
result per target (`deliver`, and `deliver_async`, which keeps Apprise's blocking I/O off the event
loop), telling whether Apprise understands a URL (`validate_url`), hiding the secrets in a URL
before it is shown or logged (`redact`), and the retry schedule (`backoff`, `MAX_ATTEMPTS`). It does
not decide when to send or retry, and it stores nothing: that is the outbox's job.

Written against Apprise 2.3, whose `notify()` returns a per-service result with the log lines of
that call (captured per call through context variables, so concurrent deliveries on other threads
do not mix their errors) and takes a `timeout`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import apprise

T = TypeVar("T")

#: Seconds one target may take before it counts as failed; a slow target must not hold up the
#: sender for long, the next attempt comes with the backoff.
DEFAULT_TIMEOUT = 30.0

# deliver_async stops waiting this long after Apprise's own deadline should have fired: a last
# resort for a thread stuck where Apprise cannot interrupt it (a DNS lookup, say).
_ASYNC_GRACE = 2.0

#: How Apprise should present the alert on services that colour or badge it (Apprise's notify_type). Not
#: core/watching.py's AlertKind, which says what happened; the sender maps one to the other.
NotifyType = Literal["info", "success", "warning", "failure"]
#: The old name, still used by engine/sender.py (hw-12's file); the lead drops it at the merge.
AlertKind = NotifyType

#: The wait after the first failed attempt (`backoff`); [alerts] retry_first overrides it.
FIRST_RETRY = timedelta(seconds=10)
_LONGEST_WAIT = timedelta(hours=1)

#: Attempts per alert and target: the first plus retries whose waits (`backoff(1)` ...
#: `backoff(MAX_ATTEMPTS - 1)`) add up to 23.4 hours, just under a day.
MAX_ATTEMPTS = 32


@dataclass(frozen=True, slots=True)
class TargetResult:
    """What happened at one target: its URL with secrets hidden, success, and Apprise's reason."""

    url_redacted: str
    ok: bool
    error: str | None = None


def backoff(attempt: int, first: timedelta = FIRST_RETRY) -> timedelta:
    """How long to wait after failed attempt number `attempt` (1 = the first) before the next.

    10 s, 20 s, 40 s ... doubling up to one hour, then hourly: a target that was down for a moment
    gets the alert quickly, one that is down for hours is not hammered. `first` ([alerts] retry_first)
    changes the first wait; the doubling and the hourly cap stay.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    # Past 2**9 the doubling is capped anyway; the bound keeps the integer small.
    return min(first * 2 ** min(attempt - 1, 16), _LONGEST_WAIT)


class _ThreadLogCapture(logging.Filter):
    """Collects Apprise's warnings and errors on the capturing thread, and keeps them from other
    handlers meanwhile.

    Used while parsing URLs: the reason a URL is rejected becomes our message, instead of a log line
    that may show parts of the URL. Installed once on the "apprise" logger; records from other
    threads, and all records while no capture is active, pass untouched.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        sink: list[str] | None = getattr(self._local, "sink", None)
        if sink is None:
            return True
        if record.levelno >= logging.WARNING:
            sink.append(record.getMessage())
        return False

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        sink: list[str] = []
        self._local.sink = sink
        try:
            yield sink
        finally:
            self._local.sink = None


_CAPTURE = _ThreadLogCapture()
logging.getLogger(apprise.LOGGER_NAME).addFilter(_CAPTURE)


def _asset() -> apprise.AppriseAsset:
    # Memory-only storage: Apprise would otherwise cache plugin state under the home directory,
    # which a hardened service may not be able to write (and need not).
    return apprise.AppriseAsset(
        app_id="heartwatch",
        app_desc="heartwatch alerts",
        storage_mode=apprise.PersistentStoreMode.MEMORY,
    )


def _load(url: str) -> tuple[apprise.NotifyBase | None, str | None]:
    """Apprise's plugin for `url`, or None and the reason it cannot be used."""
    text = url.strip()
    if not text:
        return None, "the URL is empty"
    scheme, sep, _ = text.partition("://")
    if not sep or not scheme:
        return None, "not an Apprise URL: expected service://..., for example ntfy://ntfy.sh/my-topic"
    if scheme.lower() not in apprise.NotificationManager():
        return None, (
            f"unknown service {scheme.lower()}:// "
            "(the services and their URLs are listed at https://github.com/caronc/apprise/wiki)"
        )
    with _CAPTURE.capture() as messages:
        plugin = apprise.Apprise.instantiate(text, asset=_asset())
    if plugin is not None:
        return plugin, None
    reason = "; ".join(dict.fromkeys(m.strip() for m in messages if m.strip()))
    return None, _scrub(reason or "Apprise could not read it", url)


def validate_url(url: str) -> str | None:
    """None when Apprise can use `url`; otherwise why not, in words fit for a config error."""
    return _load(url)[1]


# Generic webhooks (json://, xml://, form://) often carry a token in the path; the plugins do not
# know which part is secret, so long path segments are shortened as Apprise shortens known tokens.
_LONG_SEGMENT = 16


def _shorten(segment: str) -> str:
    if len(segment) <= _LONG_SEGMENT or "@" in segment or "%40" in segment.lower():
        return segment
    return f"{segment[0]}...{segment[-1]}"


@functools.lru_cache(maxsize=1024)  # every delivery redacts its target; Apprise parses it each time
def redact(url: str) -> str:
    """`url` fit for pages and logs: scheme and host kept, passwords and tokens hidden.

    Apprise's privacy rendering knows where each service keeps its secrets (`tgram://1...I/12345`,
    `json://user:****@host/path`); the query string is dropped since it may hold tokens or custom
    headers, and long path segments are shortened. A URL Apprise cannot read keeps only its scheme.
    """
    plugin, _ = _load(url)
    if plugin is None:
        return _scheme_only(url)
    parts = urlsplit(plugin.url(privacy=True))
    path = "/".join(_shorten(segment) for segment in parts.path.split("/"))
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _scrub(text: str, url: str) -> str:
    """Belt and braces for messages that came from Apprise: never repeat the URL or its password."""
    if url.strip():
        text = text.replace(url.strip(), _scheme_only(url))
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "****")
    return text


def _scheme_only(url: str) -> str:
    scheme = url.strip().partition("://")[0]
    return f"{scheme}://..." if scheme.isalnum() else "(unreadable URL)"


def _deliver_one(url: str, redacted: str, title: str, body: str, kind: NotifyType, timeout: float) -> TargetResult:
    plugin, problem = _load(url)
    if plugin is None:
        return TargetResult(redacted, False, problem)
    sender = apprise.Apprise(asset=plugin.asset)
    sender.add(plugin)
    try:
        result = sender.notify(body=body, title=title, notify_type=kind, timeout=timeout)
    except Exception as e:  # a plugin bug must become this target's error, not the sender's crash
        return TargetResult(redacted, False, _scrub(f"Apprise failed: {type(e).__name__}: {e}", url))
    with result:
        if result:
            return TargetResult(redacted, True)
        # The call's capture keeps warnings and errors: the lines that say why it failed.
        messages = [entry.message.strip() for entry in result.logs() if entry.message.strip()]
        reason = "; ".join(dict.fromkeys(messages)) or f"Apprise reported {result.status.name.lower()}"
    return TargetResult(redacted, False, _scrub(reason, url))


def deliver(
    urls: Sequence[str],
    title: str,
    body: str,
    *,
    kind: NotifyType = "info",
    timeout: float = DEFAULT_TIMEOUT,
) -> list[TargetResult]:
    """Send `title` and `body` to each URL in turn; one result per URL, in order. Blocks.

    Each target gets its own Apprise object so its success and error are its own. A target that
    does not answer counts as failed after `timeout` seconds.
    """
    return [_deliver_one(url, redact(url), title, body, kind, timeout) for url in urls]


#: Sends at once. Apprise runs every send that has a timeout on its own shared pool, which has this many
#: threads (ThreadPoolExecutor's default); more at once would queue there, and Apprise starts a send's
#: clock when it queues it, so a burst would time out sends that never began, and send them again.
PARALLEL_SENDS = min(32, (os.cpu_count() or 1) + 4)
# Our side of each send (redaction, waiting for Apprise) gets a pool of the same size of its own, so a send
# waits for no unrelated work in asyncio's default pool while its timeout runs.
_SEND_POOL = ThreadPoolExecutor(PARALLEL_SENDS, thread_name_prefix="heartwatch-apprise")


def _in_thread(func: Callable[..., T], *args: object) -> asyncio.Future[T]:
    """asyncio.to_thread on our own pool (threads start on first use)."""
    context = contextvars.copy_context()
    return asyncio.get_running_loop().run_in_executor(_SEND_POOL, functools.partial(context.run, func, *args))


async def deliver_async(
    urls: Sequence[str],
    title: str,
    body: str,
    *,
    kind: NotifyType = "info",
    timeout: float = DEFAULT_TIMEOUT,
) -> list[TargetResult]:
    """`deliver` for the event loop: targets are sent concurrently on worker threads, and each
    result comes within about `timeout` seconds, so a hanging target never blocks the loop."""

    async def one(url: str) -> TargetResult:
        # Parsing loads Apprise's plugins on first use (a noticeable pause): also off the loop.
        redacted = await _in_thread(redact, url)
        work = _in_thread(_deliver_one, url, redacted, title, body, kind, timeout)
        try:
            return await asyncio.wait_for(work, timeout + _ASYNC_GRACE)
        except TimeoutError:
            # The thread is left to finish on its own; Apprise's socket timeouts end it.
            return TargetResult(redacted, False, f"no answer within {timeout:g} seconds")

    return list(await asyncio.gather(*(one(url) for url in urls)))
