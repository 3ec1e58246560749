"""`heartwatch backup PATH`: the command; the copy itself is the store's (store/backup.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from heartwatch.cli.settings import EXIT_CONFIG, settings_or_exit
from heartwatch.store.backup import BackupError, TargetExists, backup


@click.command("backup")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--config", "-c", type=click.Path(path_type=Path), envvar="HEARTWATCH_CONFIG",
              help="heartwatch.toml whose [server] db to copy.")
@click.option("--db", type=click.Path(path_type=Path),
              help="SQLite database file  [env HEARTWATCH_DB; default heartwatch.db]")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def backup_cmd(path: Path, config: Path | None, db: Path | None, force: bool) -> None:
    """Copy the database to PATH, consistently, while the server runs (see README: Backup and restore)."""
    settings = settings_or_exit(config, db=db)
    if not isinstance(settings.db, Path):
        click.echo("heartwatch: backup copies a SQLite file; back a PostgreSQL database up with pg_dump"
                   " (docs/postgresql.md)", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        report = backup(settings.db, path, force=force)
    except BackupError as e:
        click.echo(f"heartwatch: backup failed: {e}", err=True)
        sys.exit(EXIT_CONFIG if isinstance(e, TargetExists) else 1)
    click.echo(f"heartwatch: {report}")
