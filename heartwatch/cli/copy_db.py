"""`heartwatch copy-db SRC DST`: the command; the copy itself is the store's (store/copy.py)."""

from __future__ import annotations

import sqlite3
import sys

import click

from heartwatch.cli.settings import EXIT_CONFIG, db_flag
from heartwatch.store.choose import MissingDriver
from heartwatch.store.copy import CopyError, NotEmpty, copy_db


@click.command("copy-db")
@click.argument("source")
@click.argument("target")
@click.option("--force", is_flag=True, help="Replace everything DST holds (it must be empty otherwise).")
def copy_db_cmd(source: str, target: str, force: bool) -> None:
    """Copy every check, run, event and pending alert from SOURCE to TARGET, each a SQLite file or a
    postgresql:// URL: to move to PostgreSQL, or back. UUIDs, ids and the ping key are kept, so ping URLs go on
    working. Stop the servers on SOURCE first: what they write during the copy is not copied.

    \b
    Example:  heartwatch copy-db /var/lib/heartwatch/heartwatch.db postgresql://heartwatch@db1/heartwatch
    """
    src, dst = db_flag(source), db_flag(target)
    assert src is not None and dst is not None
    errors: tuple[type[Exception], ...] = (sqlite3.Error, OSError, MissingDriver)
    try:
        import psycopg

        errors = (*errors, psycopg.Error)
    except ImportError:  # a SQLite-only install: a postgresql:// URL is refused as MissingDriver
        pass
    try:
        report = copy_db(src, dst, force=force)
    except CopyError as e:
        click.echo(f"heartwatch: copy-db: {e}", err=True)
        sys.exit(EXIT_CONFIG if isinstance(e, NotEmpty) else 1)
    except errors as e:
        click.echo(f"heartwatch: copy-db: nothing copied: {' '.join(str(e).split())}", err=True)
        sys.exit(1)
    click.echo(f"heartwatch: {report}")
