"""The commands a job or an operator's shell uses: `run`, `step`, `ping` and `import-crontab`.

Each only parses options and calls the typed functions in `heartwatch.cli.ping_client` and
`heartwatch.cli.crontab_import`. `run` and `step` never fail the job because of monitoring: a problem with
the server or the check is one warning on stderr, and the job's own exit status stands.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import BinaryIO, TextIO

import click

from heartwatch.cli.ping_client import (
    ClientError,
    Pinger,
    check_rid,
    check_url,
    finish_budget,
    ping_suffix,
    resolve_server,
    run_command,
    seconds_since_process_start,
    send_step,
    warn_stderr,
)

#: Exit status for a mistake on the command line, as click uses for usage errors.
EXIT_USAGE = 2
#: The largest body limit a server can be configured with ([server] body_limit).
MAX_BODY = 1_000_000


def _server_options(f: click.decorators.FC) -> click.decorators.FC:
    """--server, --ping-key and --config, shared by the commands that ping a check."""
    f = click.option("--config", "-c", type=click.Path(path_type=Path, dir_okay=False), envvar="HEARTWATCH_CONFIG",
                     help="heartwatch.toml to take base_url and ping_key from, when not given otherwise.")(f)
    f = click.option("--ping-key", envvar="HEARTWATCH_PING_KEY", show_envvar=True,
                     help="The server's ping key, for slug ping URLs (not needed with a uuid).")(f)
    f = click.option("--server", envvar="HEARTWATCH_URL", show_envvar=True,
                     help="heartwatch server URL  [default: http://127.0.0.1:8000]")(f)
    return f


def this_heartwatch() -> str:
    """The command that starts this very heartwatch, as an absolute path cron can run with its short PATH.

    The console script we were started as (a /usr/local/bin symlink stays a symlink, so an upgrade of the
    venv behind it keeps working); else the one beside our Python (`python -m heartwatch` in a venv);
    else that Python with `-m heartwatch`.
    """
    argv0 = sys.argv[0]
    if os.path.basename(argv0) == "heartwatch" and os.path.isfile(argv0):
        return shlex.quote(os.path.abspath(argv0))
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "heartwatch")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return shlex.quote(beside)
    return f"{shlex.quote(os.path.abspath(sys.executable))} -m heartwatch"


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(EXIT_USAGE)


class _CommandAfterDashes(click.Command):
    """`run`'s parsing: options before or after CHECK, up to `--`; every word after `--` is the command,
    untouched (`-c` there is the command's own option). Without `--`, the command starts at the first word
    after CHECK that is not one of our options.

    A mistake in our own options must not cost the job its run: when there is a command to run, a usage
    error becomes one warning (see `run_cmd`) and the command runs unmonitored.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
        else:
            cut = self._command_start(args)
            args = [*args[:cut], "--", *args[cut:]]
        command = args[cut + 1:]
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            if not command or ctx.resilient_parsing:
                raise
            ctx.meta[USAGE_ERROR] = e.format_message()
            ctx.params = {"server": None, "ping_key": None, "config": None, "ping_wait": None, "check": "",
                          "command": tuple(command)}
            return []

    def _command_start(self, args: list[str]) -> int:
        takes_value = {name for p in self.params if isinstance(p, click.Option) and not p.is_flag
                       for name in p.opts}
        positional, i = 0, 0
        while i < len(args):
            word = args[i]
            if word.startswith("-") and len(word) > 1 and positional < 1:
                i += 2 if word in takes_value else 1
                continue
            positional += 1
            if positional == 2:
                return i
            i += 1
        return len(args)


USAGE_ERROR = "heartwatch.usage_error"


@click.command("run", cls=_CommandAfterDashes)
@_server_options
@click.option("--ping-wait", type=click.FloatRange(min=0), envvar="HEARTWATCH_PING_WAIT", show_envvar=True,
              metavar="SECONDS",
              help="Time the pings may take after the job exited  [default: what start-up left of 1.7 s, "
                   "0.5-1 s]. More where a complete record matters more than a prompt exit.")
@click.argument("check")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run_cmd(ctx: click.Context, server: str | None, ping_key: str | None, config: Path | None,
            ping_wait: float | None, check: str, command: tuple[str, ...]) -> None:
    """Run COMMAND as one monitored run of CHECK (a slug or a uuid).

    Sends start, passes the output through while keeping its tail, sends the exit status with the tail,
    and exits with the command's status. Options go before or after CHECK; everything after `--` is the
    command. The command gets HEARTWATCH_PING_URL and HEARTWATCH_RUN_ID, and can report its steps with
    `heartwatch step NAME`. Whatever the server does, this adds at most about 2 s to the job.

    \b
    Example:  heartwatch run nightly-backup --server http://box.lan:8000 -- /usr/local/bin/backup.sh --full
    """
    argv = list(command)
    if not argv:
        _fail("heartwatch run: give the command to run after --, e.g. `heartwatch run CHECK -- backup.sh`")
    pinger: Pinger | None = None
    usage_error = ctx.meta.get(USAGE_ERROR)
    try:
        if usage_error:
            raise ClientError(usage_error)
        url, key = resolve_server(server, ping_key, config)
        pinger = Pinger(check_url(url, check, key), prefix="heartwatch run")
    except ClientError as e:
        # A monitoring mistake must not cost the job its run: say so once, then run it unmonitored.
        warn_stderr(f"heartwatch run: warning: {e}; running the command unmonitored")
    sys.stdout.flush()
    wait = finish_budget(seconds_since_process_start()) if ping_wait is None else ping_wait
    outcome = run_command(argv, pinger, stdout_fd=sys.stdout.fileno(), stderr_fd=sys.stderr.fileno(),
                          environ=os.environ, finish_budget=wait)
    # A ping still hanging on the sender thread is abandoned here: exit without the interpreter's shutdown,
    # which could otherwise find that thread writing a warning to stderr, or wait on it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(outcome.exit_status)


@click.command("step")
@click.argument("name")
def step_cmd(name: str) -> None:
    """Report step NAME of the current run, from inside a job started by `heartwatch run`.

    Reads HEARTWATCH_PING_URL and HEARTWATCH_RUN_ID. Always exits 0, so a monitoring problem never
    stops a script that uses `set -e`; problems are one warning on stderr.
    """
    send_step(name, os.environ)


@click.command("ping")
@_server_options
@click.argument("check")
@click.option("--start", is_flag=True, help="The run starts.")
@click.option("--fail", is_flag=True, help="The run failed.")
@click.option("--exit-code", type=click.IntRange(0, 255), help="The run ended with this exit status (0 = ok).")
@click.option("--step", help="The run reached this step.")
@click.option("--rid", help="Run id tying the pings of one run together.")
@click.option("-m", "--message", help="Text to send as the body (a log line, a reason).")
@click.option("--body-file", type=click.File("rb"), help="Send this file's content as the body ('-' = stdin).")
@click.option("--strict", is_flag=True, help="Exit 1 when the ping was not accepted (default: warn, exit 0).")
def ping_cmd(server: str | None, ping_key: str | None, config: Path | None, check: str, start: bool, fail: bool,
             exit_code: int | None, step: str | None, rid: str | None, message: str | None,
             body_file: BinaryIO | None, strict: bool) -> None:
    """Send one ping for CHECK (a slug or a uuid); plain means "finished ok".

    \b
    Examples:  heartwatch ping nightly-backup --start --rid "$RID"
               heartwatch ping nightly-backup --step upload --rid "$RID"
               heartwatch ping nightly-backup --exit-code 3 --body-file /var/log/backup.log
    """
    if message is not None and body_file is not None:
        _fail("heartwatch ping: give either -m/--message or --body-file, not both")
    try:
        suffix = ping_suffix(start=start, fail=fail, exit_code=exit_code, step=step)
        url, key = resolve_server(server, ping_key, config)
        target = check_url(url, check, key)
        params = {"rid": check_rid(rid)} if rid else {}
    except ClientError as e:
        _fail(f"heartwatch ping: {e}")
    if step is not None:
        params["step"] = step
    # The server keeps only the tail of a body (its limit is at most MAX_BODY), so only the tail travels.
    body = body_file.read()[-MAX_BODY:] if body_file is not None else (message or "").encode()
    result = Pinger(target, prefix="heartwatch ping").send(suffix, params, body)
    if strict and not result.ok:
        sys.exit(1)


@click.command("import-crontab")
@click.argument("file", type=click.File("r"), default="-")
@click.option("--system", is_flag=True,
              help="Lines have a user column after the schedule (/etc/crontab, /etc/cron.d/*).")
@click.option("--server", envvar="HEARTWATCH_URL", help="Server URL to set in the rewritten crontab.")
@click.option("--ping-key", envvar="HEARTWATCH_PING_KEY", help="Ping key to set in the rewritten crontab.")
@click.option("--heartwatch-bin", metavar="PATH",
              help="How cron starts heartwatch  [default: the absolute path of this heartwatch; cron's PATH "
                   "is only /usr/bin:/bin]")
def import_crontab_cmd(file: TextIO, system: bool, server: str | None, ping_key: str | None,
                       heartwatch_bin: str | None) -> None:
    """Propose checks for a crontab's jobs and rewrite it to use `heartwatch run`.

    FILE is a crontab, or - for stdin: `crontab -l | heartwatch import-crontab`.

    Prints the [checks.*] tables to add to heartwatch.toml, then the crontab rewritten so each job runs
    under `heartwatch run`. Nothing is changed on disk.
    """
    from heartwatch.cli.crontab_import import parse_and_rewrite, render

    try:
        text = file.read()
    except UnicodeDecodeError:
        _fail(f"heartwatch import-crontab: {file.name} is not a text file")
    result = parse_and_rewrite(text, system=system, heartwatch_bin=heartwatch_bin or this_heartwatch())
    click.echo(render(result, server=server, ping_key=ping_key), nl=False)
