"""`heartwatch checks`: every check with its status, last run, last step and next due; `checks pause|resume|mute|
unmute` (pause `--for 2h` or `--until` holds alerts for a while).

The table reads the database directly (`--db`: the store's ReadOnlyStore, without a writer, so it is safe
next to a running server) or asks a server's JSON API (`--server`). Pausing and resuming always go through the
API: the server keeps its checks in memory and its scheduler must hear of the change, so a write behind
its back would not take effect.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx

from heartwatch.cli.ping_client import DEFAULT_SERVER
from heartwatch.cli.settings import db_flag, settings_or_exit
from heartwatch.clock import system_clock
from heartwatch.core.model import Check, CheckSpec, Run, RunState, Watch
from heartwatch.core.schedule import next_expected_start
from heartwatch.core.status import check_status
from heartwatch.store import codec
from heartwatch.store.base import CheckSnapshot, Reads, UnreadableDatabase
from heartwatch.store.reads import ReadOnlyStore

#: Exit status when the database or the server could not be read, or refused the change.
EXIT_FAILED = 1
TIMEOUT = 10.0


class ChecksError(Exception):
    """What went wrong, as the one line to show."""


@dataclass
class CheckLine:
    """One row of the table, whichever source it came from."""

    slug: str
    name: str
    status: str
    last_run: str | None  # the newest run's state
    last_run_at: datetime | None  # when it ended, or started if still open
    last_step: str | None
    next_due: datetime | None


# --- reading --------------------------------------------------------------------------------------------


def _next_due(check: Check, last: Run | None, watch: Watch | None, now: datetime) -> datetime | None:
    """The scheduler's next expected start; without one yet, what the schedule says."""
    if check.paused or check.archived:
        return None
    if watch is not None and watch.expected_at is not None:
        return watch.expected_at
    spec = check.spec
    if spec.schedule is not None:
        return next_expected_start(spec, now)
    if spec.period is not None and last is not None and last.state is not RunState.MISSED:
        return last.started_at + spec.period
    return None


def _line(check: Check, last: Run | None, watch: Watch | None, now: datetime) -> CheckLine:
    status = check_status(check, last, now, watch)
    return CheckLine(
        slug=check.slug, name=check.spec.display_name, status=status.value,
        last_run=last.state.value if last else None,
        last_run_at=(last.ended_at or last.started_at) if last else None,
        last_step=last.last_step.name if last and last.last_step else None,
        next_due=_next_due(check, last, watch, now))


def read_db(path: Path | str, now: datetime) -> list[CheckLine]:
    """The live checks from a heartwatch database (a SQLite file or a PostgreSQL URL), opened read-only."""
    opened: AbstractAsyncContextManager[Reads]
    if isinstance(path, Path):
        if not path.is_file():
            raise ChecksError(f"no database at {path}; give --db PATH, or --server URL to ask a running server")
        opened = ReadOnlyStore.open(path)
    else:
        try:
            from heartwatch.store.postgres import PgReadOnlyStore
        except ImportError:
            raise ChecksError("a postgresql:// database needs psycopg 3: pip install 'psycopg[binary]'") from None
        opened = PgReadOnlyStore.open(path)

    async def read() -> list[CheckSnapshot]:
        async with opened as store:
            return await store.snapshots()

    try:
        snapshots = asyncio.run(read())
    except UnreadableDatabase as e:
        raise ChecksError(str(e)) from None
    return [_line(s.check, s.last_run, s.watch, now) for s in snapshots]


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None


def _line_from_json(c: dict[str, Any], now: datetime) -> CheckLine:
    run = c.get("last_run") or {}
    next_due = _time(c.get("next_due"))
    if next_due is None and not c.get("paused"):
        # Older servers do not send next_due: estimate it from the schedule as the status page does.
        if c.get("schedule"):
            next_due = next_expected_start(CheckSpec(slug=c["slug"], schedule=c["schedule"],
                                                     timezone=c.get("timezone") or "UTC"), now)
        elif c.get("period") and run.get("started_at") and run.get("state") != "missed":
            from heartwatch.core.durations import parse_duration

            started = _time(run["started_at"])
            next_due = started + parse_duration(c["period"]) if started else None
    return CheckLine(slug=c["slug"], name=c.get("name") or c["slug"], status=c.get("status", "?"),
                     last_run=run.get("state"), last_run_at=_time(run.get("ended_at") or run.get("started_at")),
                     last_step=run.get("last_step"), next_due=next_due)


def _answer_error(r: httpx.Response) -> str:
    try:
        message = r.json().get("error")
    except ValueError:
        message = None
    return f"{message or r.text.strip()[:200] or r.reason_phrase} (HTTP {r.status_code})"


def read_api(server: str, now: datetime) -> list[CheckLine]:
    url = f"{server.rstrip('/')}/api/v1/checks"
    try:
        r = httpx.get(url, timeout=TIMEOUT)
    except httpx.HTTPError as e:
        raise ChecksError(f"cannot reach {url}: {e}") from None
    if r.status_code != 200:
        raise ChecksError(f"{url}: {_answer_error(r)}")
    try:
        checks = r.json()["checks"]
    except (ValueError, KeyError, TypeError):
        raise ChecksError(f"{url} did not answer with heartwatch's check list; is it a heartwatch server?") from None
    return [_line_from_json(c, now) for c in checks]


def set_paused(server: str, token: str | None, slug: str, paused: bool,
               hold: dict[str, str] | None = None) -> dict[str, Any]:
    """POST .../pause or .../resume; returns the check as the server shows it after the change.
    `hold` ({"for": "2h"} or {"until": ISO}): a pause for a while, alerts held until then."""
    return post_hold(server, token, slug, "pause" if paused else "resume", hold)


def post_hold(server: str, token: str | None, slug: str, action: str,
              body: dict[str, str] | None = None) -> dict[str, Any]:
    """POST .../<action> (pause, resume, mute, unmute); returns the check as the server shows it after."""
    if not token:
        raise ChecksError("this needs an API token: give --token or set HEARTWATCH_API_TOKEN "
                          "(a token from the server's [api] tokens)")
    url = f"{server.rstrip('/')}/api/v1/checks/{slug}/{action}"
    try:
        r = httpx.post(url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT,
                       **({"json": body} if body else {}))  # type: ignore[arg-type]
    except httpx.HTTPError as e:
        raise ChecksError(f"cannot reach {url}: {e}") from None
    if r.status_code != 200:
        raise ChecksError(_answer_error(r))
    result: dict[str, Any] = r.json()
    return result


# --- showing -------------------------------------------------------------------------------------------


def _relative(at: datetime | None, now: datetime) -> str:
    """`5m ago` / `in 2h15m`, to the two largest units: enough to read at a glance."""
    if at is None:
        return "-"
    seconds = int(abs((at - now).total_seconds()))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    text = "".join(parts[:2])
    return f"in {text}" if at > now + timedelta(seconds=1) else f"{text} ago"


def table(lines: list[CheckLine], now: datetime) -> str:
    header = ("CHECK", "STATUS", "LAST RUN", "LAST STEP", "NEXT DUE")
    rows = [header] + [
        (line.slug, line.status,
         f"{line.last_run} {_relative(line.last_run_at, now)}" if line.last_run else "-",
         line.last_step or "-", _relative(line.next_due, now))
        for line in lines]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def as_json(lines: list[CheckLine]) -> str:
    def iso(value: object) -> object:
        return codec.iso(value) if isinstance(value, datetime) else value

    return json.dumps([{k: iso(v) for k, v in asdict(line).items()} for line in lines], indent=2)


# --- the commands ----------------------------------------------------------------------------------------


def _fail(command: str, e: ChecksError) -> None:
    click.echo(f"heartwatch {command}: {e}", err=True)
    sys.exit(EXIT_FAILED)


def _explicit(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


@click.group(invoke_without_command=True)
@click.option("--db", envvar="HEARTWATCH_DB",
              help="Read this database (a SQLite file or a postgresql:// URL) directly (read-only; safe while the"
                   " server runs).  [env HEARTWATCH_DB]")
@click.option("--server", envvar="HEARTWATCH_URL",
              help=f"Ask this server's API instead.  [env HEARTWATCH_URL; default {DEFAULT_SERVER}]")
@click.option("--config", "-c", type=click.Path(path_type=Path, dir_okay=False), envvar="HEARTWATCH_CONFIG",
              help="heartwatch.toml whose [server] db to read, when neither --db nor --server is given.")
@click.option("--json", "as_json_", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def checks(ctx: click.Context, db: str | None, server: str | None, config: Path | None, as_json_: bool) -> None:
    """Show every check: status, last run, last step and next due.

    Reads the database with --db, or a server's API with --server. Without either: the config's
    database, else ./heartwatch.db if it exists, else the server at http://127.0.0.1:8000.

    \b
    Examples:  heartwatch checks --db /var/lib/heartwatch/heartwatch.db
               heartwatch checks --server http://backup-box.lan:8000
               heartwatch checks pause nightly-backup --token "$TOKEN"
    """
    ctx.obj = {"server": server}
    if ctx.invoked_subcommand is not None:
        return
    now = system_clock()
    try:
        if db is not None and (_explicit(ctx, "db") or not server):
            lines = read_db(db_flag(db) or Path(db), now)
        elif server:
            lines = read_api(server, now)
        elif config is not None:
            lines = read_db(settings_or_exit(config).db, now)
        elif Path("heartwatch.db").is_file():
            lines = read_db(Path("heartwatch.db"), now)
        else:
            lines = read_api(DEFAULT_SERVER, now)
    except ChecksError as e:
        _fail("checks", e)
    if as_json_:
        click.echo(as_json(lines))
    elif not lines:
        click.echo("no checks yet: add [checks.<slug>] to heartwatch.toml, or ping a slug URL with ?create=1")
    else:
        click.echo(table(lines, now))


def _token(token: str | None) -> str | None:
    if token:
        return token
    file_name = os.environ.get("HEARTWATCH_API_TOKEN_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip() or None
        except OSError as e:
            raise ChecksError(f"HEARTWATCH_API_TOKEN_FILE={file_name}: {e.strerror or e}") from None
    return None


_HELP = {
    "pause": "A paused check has no deadlines and sends no alerts; config checks can be paused too. With --for or"
             " --until, its alerts are held until then instead (it is still watched), and what is still wrong"
             " then is sent once.",
    "resume": "Ends a pause or a hold; its next expected start is computed afresh.",
    "mute": "No reminders until the check recovers.",
    "unmute": "Reminders again while it is down.",
}


def _hold_command(verb: str) -> click.Command:
    def command(slug: str, server: str | None, token: str | None, for_: str | None = None,
                until: str | None = None) -> None:
        server = server or (click.get_current_context().obj or {}).get("server") or DEFAULT_SERVER
        if for_ and until:
            _fail(f"checks {verb}", ChecksError("give --for or --until, not both"))
        body = {"for": for_} if for_ else {"until": until} if until else None
        try:
            check = post_hold(server, _token(token), slug, verb, body)
        except ChecksError as e:
            _fail(f"checks {verb}", e)
        held = f", alerts held until {check['maintenance_until']}" if check.get("maintenance_until") else ""
        click.echo(f"{check.get('slug', slug)}: {check.get('status', verb + 'd')}{held}")

    decorated = click.option("--token", envvar="HEARTWATCH_API_TOKEN", help=(
        "API token  [env HEARTWATCH_API_TOKEN, or a file named by HEARTWATCH_API_TOKEN_FILE]"))(command)
    decorated = click.option("--server", envvar="HEARTWATCH_URL",
                             help=f"Server URL  [env HEARTWATCH_URL; default {DEFAULT_SERVER}]")(decorated)
    if verb == "pause":
        decorated = click.option("--until", default=None, help="Hold alerts until this ISO 8601 time")(decorated)
        decorated = click.option("--for", "for_", default=None, help="Hold alerts this long, e.g. 2h")(decorated)
    decorated = click.argument("slug")(decorated)
    help_text = f"{verb.capitalize()} check SLUG through the server's API (needs an API token). {_HELP[verb]}"
    return click.command(verb, help=help_text)(decorated)


for _verb in _HELP:
    checks.add_command(_hold_command(_verb))
