"""Uptime: the share of a check's expected runs that were ok over the last 24 hours, 7 days and 30 days.

A run counts in a window when it started (or, for a missed run, was expected) inside it; runs still going
are left out until they end. Every run that ended is one the schedule expected or the job reported, so the
share of ok ones among them is what the check page calls uptime, and the others are its failures (failed,
timed out, interrupted, missed). A missed run that stands for several expected starts (folded while the
check was down: the runs table's `missed` column) counts as that many. Read from the runs_by_start index
alone (migration 8), for every check of a page in one statement (`SqliteReads.uptimes`).

Runs older than the retention (`[server] retention` finished runs per check) are pruned; each leaves its count
in its check's hour of `uptime_hours` first (store/retention.py), which this query adds in, so pruning does not
change uptime (to the hour: an hour counts in a window when it starts inside it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from heartwatch.core.model import RunState

#: The windows shown, shortest first, with their labels.
WINDOWS: tuple[tuple[str, timedelta], ...] = (("24 h", timedelta(hours=24)), ("7 d", timedelta(days=7)),
                                              ("30 d", timedelta(days=30)))
#: The overview's column: one window, so a page of checks costs a third of the three.
MONTH = WINDOWS[-1:]


@dataclass(frozen=True, slots=True)
class Uptime:
    """One window of one check: how many runs ended in it and how many of them were not ok."""

    label: str
    runs: int
    failures: int

    @property
    def share(self) -> float | None:
        """Ok runs over all runs, from 0 to 1; None when no run ended in the window."""
        return None if self.runs == 0 else (self.runs - self.failures) / self.runs

    @property
    def percent(self) -> str:
        """As people read it: "100%", "99.5%", "0%", or "n/a" for a window without runs."""
        share = self.share
        if share is None:
            return "n/a"
        value = share * 100
        # 99.96% must not read as 100% while a failure is in the window: round down, to one decimal.
        text = f"{int(value * 10) / 10:.1f}".rstrip("0").rstrip(".")
        return f"{text}%"


def uptime_query(check_ids: Sequence[int], now: datetime, windows: Sequence[tuple[str, timedelta]] = WINDOWS
                 ) -> tuple[str, tuple[Any, ...]]:
    """The statement (and its parameters) that counts these checks' ended runs and failures in each window.

    Each window costs two sums per run read: `python bench/uptime.py` measures a page of 50 checks of 1,000 runs
    at 16 ms for the 30-day window alone (the overview's column; 31 ms without the index) and 36 ms for all
    three; one check's three windows (the check page) take 0.3 ms.
    """
    now_ts = now.timestamp()
    cuts = [now_ts - span.total_seconds() for _, span in windows]
    # A missed run folded while the check was down stands for `missed` expected starts (1 for every other run).
    # CASE rather than SQLite's (condition) * n: PostgreSQL has no arithmetic on booleans.
    columns = ", ".join("SUM(CASE WHEN started_at >= ? THEN n ELSE 0 END),"
                        " SUM(CASE WHEN started_at >= ? THEN bad ELSE 0 END)" for _ in cuts)
    marks = ",".join("?" * len(check_ids))
    ok = RunState.OK.value
    # Runs pruned by retention left their counts in uptime_hours (store/retention.py): an hour counts in a window
    # when it starts inside it, so a window's oldest pruned hour is within an hour of exact.
    sql = (f"SELECT check_id, {columns} FROM ("
           f"SELECT check_id, started_at, missed AS n, CASE WHEN state != ? THEN missed ELSE 0 END AS bad FROM runs"
           f" WHERE check_id IN ({marks}) AND started_at >= ? AND state != ?"
           f" UNION ALL SELECT check_id, hour * 3600.0, runs, failures FROM uptime_hours"
           f" WHERE check_id IN ({marks}) AND hour >= ?) AS windowed GROUP BY check_id")
    oldest = min(cuts)
    return sql, (*(x for cut in cuts for x in (cut, cut)), ok, *check_ids, oldest, RunState.RUNNING.value,
                 *check_ids, int(oldest // 3600) + (0 if oldest % 3600 == 0 else 1))


def uptimes_from(rows: Iterable[Sequence[Any]], check_ids: Sequence[int],
                 windows: Sequence[tuple[str, timedelta]] = WINDOWS) -> dict[int, list[Uptime]]:
    """The query's rows as each check's windows, in the order given; a check without runs gets empty windows."""
    out = {cid: [Uptime(label, 0, 0) for label, _ in windows] for cid in check_ids}
    for cid, *counts in rows:
        out[cid] = [Uptime(label, int(counts[2 * i] or 0), int(counts[2 * i + 1] or 0))
                    for i, (label, _) in enumerate(windows)]
    return out
