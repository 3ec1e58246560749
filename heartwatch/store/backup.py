"""A consistent copy of the database, taken while the server keeps serving (`heartwatch backup PATH`, whose
command is in cli/backup.py).

The copy uses SQLite's online backup API from a connection of its own, inside one read transaction: the
copy is the database as of one commit, and in WAL mode a reader never blocks the server's writer.
Without that pinned snapshot SQLite restarts a step-wise backup whenever another connection commits, and
under a steady stream of pings it would never finish. The copy is written next to PATH under a temporary
name, checked with `PRAGMA quick_check`, switched out of WAL mode (one self-contained file) and only
then renamed to PATH, so PATH is never a half-written backup.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

#: Pages copied per backup step (4 MB at SQLite's default page size); steps only pace the copy.
STEP_PAGES = 1024


class BackupError(Exception):
    """Why there is no backup, in one line fit for the user."""


class TargetExists(BackupError):
    """PATH is there already and --force was not given: a usage error (exit 2), nothing was copied."""


@dataclass(frozen=True)
class BackupReport:
    source: Path
    target: Path
    pages: int
    size: int  # bytes
    checks: int
    events: int
    seconds: float
    restarts: int = 0  # times SQLite started the copy over because the source changed under it

    def __str__(self) -> str:
        return (f"copied {self.source} to {self.target}: {self.pages} pages, {self.size / 1e6:.1f} MB, "
                f"{self.checks} checks, {self.events} events, in {self.seconds:.1f} s; quick_check ok")


def backup(source: Path, target: Path, force: bool = False, step_pages: int = STEP_PAGES) -> BackupReport:
    """Copy the database at `source` to `target`; refuses an existing `target` unless `force`."""
    started = time.monotonic()
    if not source.is_file():
        raise BackupError(f"no database at {source} (give --db or --config)")
    if target.exists() and target.resolve() == source.resolve():
        raise BackupError(f"{target} is the database itself; give another path")
    if target.exists() and not force:
        raise TargetExists(f"{target} exists; pass --force to overwrite it")
    if not target.parent.is_dir():
        raise BackupError(f"no directory {target.parent} to write the backup into")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        restarts = _copy(source, partial, step_pages)
        checks, events, pages = _verify(partial, source)
        partial.replace(target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return BackupReport(source, target, pages, target.stat().st_size, checks, events, time.monotonic() - started,
                        restarts)


def _copy(source: Path, partial: Path, step_pages: int) -> int:
    """Copy `source` into the new file `partial`; returns how often SQLite restarted the copy (0 expected)."""
    remaining: list[int] = []

    def progress(status: int, left: int, total: int) -> None:
        remaining.append(left)

    src = sqlite3.connect(source, isolation_level=None, timeout=30)
    try:
        src.execute("PRAGMA query_only=1")
        # One read transaction for the whole copy: every step reads the same snapshot, so the copy is
        # consistent and is never restarted by the server's commits (which it does not hold up: WAL).
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchall()
        dst = sqlite3.connect(partial, isolation_level=None)
        try:
            src.backup(dst, pages=step_pages, progress=progress)
            dst.execute("PRAGMA journal_mode=DELETE")  # the copy is one file: nothing else to carry along
        finally:
            dst.close()
        src.execute("COMMIT")
    except sqlite3.Error as e:
        raise BackupError(f"cannot copy {source}: {e}") from e
    finally:
        src.close()
    return sum(1 for a, b in itertools.pairwise(remaining) if b > a)


def _verify(path: Path, source: Path) -> tuple[int, int, int]:
    """quick_check the copy and count what is in it: (checks, events, pages)."""
    conn = sqlite3.connect(path)
    try:
        problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(2)")]
        if problems != ["ok"]:
            raise BackupError(f"the copy failed quick_check ({'; '.join(problems)}); the database may be damaged")
        [(checks,)] = conn.execute("SELECT count(*) FROM checks").fetchall()
        [(events,)] = conn.execute("SELECT count(*) FROM events").fetchall()
        [(pages,)] = conn.execute("PRAGMA page_count").fetchall()
    except sqlite3.Error as e:
        raise BackupError(f"the copy cannot be read ({e}); is {source} a heartwatch database?") from e
    finally:
        conn.close()
    return int(checks), int(events), int(pages)
