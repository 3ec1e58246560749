"""`heartwatch notify-test`: send a test alert and say, per target, whether it arrived or what Apprise said.

Meant for setting up alerts: run it against the config's targets (or URLs on the command line) before
trusting them with a real outage.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from heartwatch.cli.settings import EXIT_CONFIG, settings_or_exit
from heartwatch.config import Settings
from heartwatch.engine import notify

TITLE = "TEST heartwatch: test alert"


def targets_for(settings: Settings, check: str | None) -> list[str]:
    """[alerts].urls plus the check's own alerts, without repeats; raises click.UsageError for a bad slug."""
    urls = list(settings.alert_urls)
    if check is not None:
        spec = settings.checks.get(check)
        if spec is None:
            known = ", ".join(settings.checks) or "none"
            raise click.UsageError(f"no check {check!r} in the config (checks: {known})")
        urls += spec.alerts
    return list(dict.fromkeys(urls))


def send_test(urls: Sequence[str], check: str | None, timeout: float) -> list[notify.TargetResult]:
    about = f" for check {check}" if check else ""
    body = (f"A test alert from heartwatch on {socket.gethostname()}{about}. "
            "If you can read this, alerts to this target work.")
    return notify.deliver(urls, TITLE, body, kind="info", timeout=timeout)


@click.command("notify-test")
@click.argument("urls", nargs=-1)
@click.option("--config", "-c", type=click.Path(path_type=Path), envvar="HEARTWATCH_CONFIG",
              help="heartwatch.toml whose [alerts] urls (and --check's alerts) to test.")
@click.option("--check", "check", metavar="SLUG", help="Also test this check's own `alerts` targets.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=notify.DEFAULT_TIMEOUT, show_default=True,
              help="Seconds to wait for each target.")
def notify_test(urls: tuple[str, ...], config: Path | None, check: str | None, timeout: float) -> None:
    """Send a test alert to URL... or to the configured targets; print each target's result."""
    if urls and check:
        raise click.UsageError("give either URLs or --check, not both")
    if urls:
        targets = list(urls)
    else:
        if check and config is None:
            raise click.UsageError("--check needs --config (the file that defines the check)")
        targets = targets_for(settings_or_exit(config), check)
    if not targets:
        click.echo("heartwatch: no alert targets: pass Apprise URLs, or set [alerts] urls in --config", err=True)
        sys.exit(EXIT_CONFIG)
    results = send_test(targets, check, timeout)
    width = max(len(r.url_redacted) for r in results)
    for r in results:
        click.echo(f"{r.url_redacted.ljust(width)}  {'ok' if r.ok else 'FAILED: ' + (r.error or 'unknown error')}")
    sys.exit(0 if all(r.ok for r in results) else 1)
