"""Settings for a command: loaded as `heartwatch serve` loads them, or one line naming the bad key and exit 2.

Every command that reads heartwatch.toml comes here, so they all find the database and the alert targets by
the same rules; and none of them imports the command group (cli/main.py) to do it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from heartwatch.config import ConfigError, Settings, load_settings, parse_db, redact_db

#: Exit status for a startup failure the user can fix (bad config, bad flag), like click's usage errors.
EXIT_CONFIG = 2


def settings_or_exit(config: Path | None, **flags: object) -> Settings:
    """Load settings; on a bad value print one line naming key and value, and exit 2."""
    try:
        return load_settings(config, os.environ, flags)
    except ConfigError as e:
        where = f"{config}: " if config else ""
        click.echo(f"heartwatch: {where}{e}", err=True)
        sys.exit(EXIT_CONFIG)


def db_flag(db: str | None) -> Path | str | None:
    """`--db`: a SQLite file or a postgresql:// URL; a bad one is one line and exit 2."""
    if db is None:
        return None
    try:
        return parse_db(db)
    except ValueError as e:
        click.echo(f"heartwatch: --db {redact_db(db)!r}: {e}", err=True)
        sys.exit(EXIT_CONFIG)
