"""`heartwatch serve`: open the store, load the config's checks, serve HTTP, shut down cleanly.

Start-up work that can fail (opening the database, binding the port) happens before or around uvicorn
so failures print one line and exit non-zero instead of a traceback. uvicorn handles SIGINT/SIGTERM:
it stops accepting, lets in-flight requests (pings) finish, then we close the database. SIGHUP reloads
the config's checks and the [alerts] settings (targets, remind_every, retry_first).
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import gc
import logging
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

import click
import uvicorn

from heartwatch import __version__
from heartwatch.clock import Clock, system_clock
from heartwatch.config import ConfigError, Settings, is_database_url, load_settings, redact_db
from heartwatch.engine import notify
from heartwatch.engine.heartbeat import Heartbeat
from heartwatch.engine.leader import Leadership
from heartwatch.engine.scheduler import Scheduler
from heartwatch.engine.sender import Sender
from heartwatch.store.choose import MissingDriver, new_store
from heartwatch.store.sqlite import DamagedDatabase, Store
from heartwatch.web.app import create_app
from heartwatch.web.auth import Auth, is_loopback, secure_cookie_for
from heartwatch.web.hub import Hub
from heartwatch.web.limits import LimitedHttp

log = logging.getLogger("heartwatch")


def run_server(settings: Settings) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Apprise says "Notifying 1 service(s)" and "Sent ..." for every alert; the outbox records each attempt
    # (and our log says what failed), so only its warnings and errors are worth the log lines.
    logging.getLogger("apprise").setLevel(logging.WARNING)
    try:
        return _run(serve(settings))
    except KeyboardInterrupt:
        return 0


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where uvicorn[standard] installed it: the loop uvicorn.run would pick (and the bare
    endpoint of bench/pings.py runs on). Measured interleaved at concurrency 16: 2,360-2,670 pings/s on the
    stdlib loop, 2,950-3,390 on uvloop."""
    try:
        import uvloop
    except ImportError:  # uvloop has no Windows build; the stdlib loop works the same, only slower
        return asyncio.run(main)
    return uvloop.run(main)


class _Server(uvicorn.Server):
    """uvicorn (>= 0.29) re-raises a captured SIGTERM/SIGINT once it has shut down; SIGTERM's default action
    would then kill the process before the scheduler stops and the database is closed. We do our own clean
    exit (status 0) instead, so the signal is handled here and not raised again.

    `on_listening` runs once the socket is bound, so a port in use never reads as "listening"."""

    on_listening: Callable[[], None] = staticmethod(lambda: None)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_listening()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()


async def open_store(settings: Settings) -> Store:
    store = new_store(settings.db, retention=settings.retention, synchronous=settings.synchronous,
                      max_checks=settings.max_checks)
    await store.open(settings.ping_key, settings.checks)
    return store


async def serve(settings: Settings, clock: Clock = system_clock) -> int:
    unopenable: tuple[type[Exception], ...] = (sqlite3.Error, OSError, *_driver_errors(settings.db))
    try:
        store = await open_store(settings)
    except DamagedDatabase as e:
        click.echo(f"heartwatch: the database {settings.db} is damaged ({e}); not starting. Restore it from a"
                   " backup (README: Backup and restore), or move it away to start with an empty one.", err=True)
        return 1
    except MissingDriver as e:
        click.echo(f"heartwatch: {e}", err=True)
        return 1
    except unopenable as e:
        reason = " ".join(str(e).split())  # psycopg's messages run over several lines
        click.echo(f"heartwatch: cannot open the database {redact_db(settings.db)}: {reason}", err=True)
        return 1
    auth = None
    if settings.web_password:
        # Only the hash is kept from here on: the password leaves the settings every other part sees.
        auth = Auth(settings.web_password, await store.session_secret(),
                    secure_cookie=secure_cookie_for(settings.base_url), clock=clock)
        settings = dataclasses.replace(settings, web_password=None)
    hub = Hub(settings=settings, store=store, clock=clock)
    sender = Sender(store, clock, retry_first=settings.retry_first, status_url=f"{settings.public_url}/")
    scheduler = Scheduler(settings, store, clock, on_alerts=sender.wake)
    hub.ping_listeners.append(scheduler.ping_listener)
    hub.change_listeners.append(scheduler.wake)  # an API change may move a deadline earlier
    name = f"{socket.gethostname()}:{settings.port} pid {os.getpid()}"
    heartbeat = (Heartbeat(settings.heartbeat_url, store, clock, lambda: scheduler.last_pass,
                           lambda: sender.last_pass, name=name) if settings.heartbeat_url else None)

    async def lead() -> None:
        scheduler.start()
        sender.start()
        if heartbeat:
            heartbeat.start()

    async def follow() -> None:  # the lock is lost: stop alerting at once
        if heartbeat:
            await heartbeat.stop()
        await scheduler.stop()
        await sender.stop()

    # Of the processes sharing a PostgreSQL database, the one holding the lock runs the scheduler and the sender;
    # on SQLite this process always does (engine/leader.py).
    leadership = hub.leadership = Leadership(store.leader_lock(name), lead, follow)
    try:
        _report_bad_targets(settings)
        report = await store.sync_config(settings.checks, clock())
        await scheduler.prepare()
        if settings.checks or report.archived:
            log.info("config checks: %d created, %d updated, %d archived",
                     len(report.created), len(report.updated), len(report.archived))
        app = create_app(hub, auth=auth)
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                access_log=False, lifespan="off", server_header=False, http=LimitedHttp,
                                # Forwarded headers only from [server] trusted_proxies: uvicorn's default
                                # believes any client on loopback, which let one pick its address.
                                proxy_headers=bool(settings.trusted_proxies),
                                forwarded_allow_ips=list(settings.trusted_proxies) or None)
        server = _Server(config)
        server.on_listening = lambda: _announce(hub, login=auth is not None)
        _install_reload(hub, scheduler, sender)
        await leadership.step()  # leads at once if nobody does (always on SQLite)
        if store.shared:  # on SQLite nobody else can take the lead: nothing to look at every second
            leadership.start()
        _freeze_heap()
        try:
            await server.serve()
        except SystemExit as e:  # uvicorn exits when it cannot bind; it has already said why
            return int(e.code or 1)
        return 0
    finally:
        await leadership.stop()
        await scheduler.stop()
        await sender.stop()
        await store.close()
        log.info("stopped; database closed")


def _driver_errors(db: Path | str) -> tuple[type[Exception], ...]:
    """PostgreSQL's errors, for a postgresql:// database whose driver is installed. Not for a SQLite file: the
    driver's import alone added 7 MB to the RSS of every SQLite server."""
    if not is_database_url(db):
        return ()
    try:
        import psycopg
    except ImportError:
        return ()
    return (psycopg.Error,)


def _freeze_heap() -> None:
    """Leave what start-up built (modules, every check and its spec, the caches) out of later collections.

    A full collection walks every tracked object: with 100,000 checks that is ~60 ms with the GIL held,
    a stall for every ping in flight whenever the collector decides a full pass is due. These objects live
    as long as the process (or until the next reload), so there is nothing in them to collect. (No collection
    first: it would take 0.3 s at 100,000 checks, and start-up leaves next to no cyclic garbage to keep.)"""
    gc.freeze()
    _trim_heap()


def _trim_heap() -> None:
    """Give the memory start-up freed back to the system (glibc keeps freed blocks for reuse otherwise).

    Reading and syncing 100,000 checks frees tens of MB (the writer's page cache shrunk after the sync, the
    config's parse): malloc_trim returned ~60 MB of a first start's 172 MB RSS (in-process, bench/scale.py's
    config). Elsewhere than glibc there is nothing to call and nothing is done."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _report_bad_targets(settings: Settings) -> None:
    """A typo in an Apprise URL should be found at start, not when the first alert is due."""
    urls = [*settings.alert_urls, *(u for spec in settings.checks.values() for u in spec.alerts)]
    for url in dict.fromkeys(urls):
        problem = notify.validate_url(url)
        if problem:
            log.error("alert target %s will not work: %s", notify.redact(url), problem)


def _announce(hub: Hub, login: bool) -> None:
    s = hub.settings
    click.echo(f"heartwatch {__version__} listening on http://{s.host}:{s.port}  (database {redact_db(s.db)})")
    click.echo(f"  ping URLs: {s.public_url}/ping/<uuid>  or  {hub.slug_url('<slug>')}")
    click.echo(f"  status:    {s.public_url}/   API: {s.public_url}/api/v1/checks"
               + ("   (login required: [web] password is set)" if login else ""))
    if not login and not is_loopback(s.host):
        warning = (f"WARNING: listening on {s.host}, reachable from the network, without a password: anyone who can"
                   " reach this port can read the status page, the read API and /metrics. Set [web] password (or"
                   " HEARTWATCH_WEB_PASSWORD) to require a login, or bind to 127.0.0.1.")
        log.warning("%s", warning)
        click.echo(f"  {warning}")
    if not s.alert_urls and not any(spec.alerts for spec in s.checks.values()):
        # Otherwise a newcomer learns that alerts go nowhere on the night a backup fails.
        nowhere = ("WARNING: no alert targets: [alerts] urls is empty and no check in the config has alerts, so"
                   " failed, missed and late runs show on the status page but no alert is sent. Add Apprise URLs"
                   " to [alerts] urls (or HEARTWATCH_ALERT_URLS) and try them with `heartwatch notify-test`.")
        log.warning("%s", nowhere)
        click.echo(f"  {nowhere}")
    sys.stdout.flush()


def _install_reload(hub: Hub, scheduler: Scheduler, sender: Sender) -> None:
    """SIGHUP re-reads the config file, upserts its checks and applies its [alerts] settings; a bad file is
    reported and ignored."""
    path = hub.settings.config_path
    if path is None:
        return

    async def reload(path: Path) -> None:
        try:
            fresh = load_settings(path, os.environ)
        except ConfigError as e:
            log.error("config not reloaded: %s: %s", path, e)
            return
        report = await hub.store.sync_config(fresh.checks, hub.clock())
        # Alerts written from now on go to the new targets (the scheduler reads them from its settings when
        # it writes an alert's deliveries); deliveries already in the outbox keep theirs.
        targets_changed = fresh.alert_urls != hub.settings.alert_urls
        hub.settings = dataclasses.replace(hub.settings, alert_urls=fresh.alert_urls,
                                           remind_every=fresh.remind_every, retry_first=fresh.retry_first)
        scheduler.apply_settings(dataclasses.replace(scheduler.settings, alert_urls=fresh.alert_urls,
                                                     remind_every=fresh.remind_every, retry_first=fresh.retry_first))
        sender.retry_first = fresh.retry_first
        _report_bad_targets(fresh)
        scheduler.wake()  # deadlines may have moved
        _freeze_heap()
        targets = len(fresh.alert_urls)
        log.info("config reloaded: %d created, %d updated, %d archived; alert targets: %d URL%s (%s)",
                 len(report.created), len(report.updated), len(report.archived), targets, "" if targets == 1 else "s",
                 "changed" if targets_changed else "unchanged")

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload(path)))
