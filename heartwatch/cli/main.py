"""The `heartwatch` command: a thin click layer that parses options and calls typed functions.

Each subcommand lives in the module that owns its work; this file only gathers them.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from heartwatch import __version__
from heartwatch.cli.settings import settings_or_exit


class _Commands(click.Group):
    """The subcommands owned by other modules, imported when used: `heartwatch serve` does not load the HTTP
    client (httpx alone is a quarter of a second) and `heartwatch run` in a crontab does not load the server."""

    elsewhere = {
        "run": "heartwatch.cli.jobs:run_cmd",
        "step": "heartwatch.cli.jobs:step_cmd",
        "ping": "heartwatch.cli.jobs:ping_cmd",
        "import-crontab": "heartwatch.cli.jobs:import_crontab_cmd",
        "notify-test": "heartwatch.cli.notify_test:notify_test",
        "checks": "heartwatch.cli.checks:checks",
        "backup": "heartwatch.cli.backup:backup_cmd",
        "import": "heartwatch.cli.import_cmd:import_group",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.elsewhere])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.elsewhere:
            return super().get_command(ctx, name)
        module, attr = self.elsewhere[name].split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command) and command.name == name, name
        return command


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="heartwatch")
def main() -> None:
    """heartwatch: know when your scheduled jobs start, reach each step, and finish."""


@main.command()
@click.option("--config", "-c", type=click.Path(path_type=Path), envvar="HEARTWATCH_CONFIG",
              help="heartwatch.toml to load (checks, alerts, server settings).")
@click.option("--db", type=click.Path(path_type=Path),
              help="SQLite database file  [env HEARTWATCH_DB; default heartwatch.db]")
@click.option("--host", help="Address to listen on  [env HEARTWATCH_HOST; default 127.0.0.1]")
@click.option("--port", type=click.IntRange(1, 65535), help="Port  [env HEARTWATCH_PORT; default 8000]")
def serve(config: Path | None, db: Path | None, host: str | None, port: int | None) -> None:
    """Run the ping endpoint, status page, API, scheduler and alert sender."""
    from heartwatch.server import run_server  # keeps `heartwatch run` and friends quick to start

    settings = settings_or_exit(config, db=db, host=host, port=port)
    sys.exit(run_server(settings))
