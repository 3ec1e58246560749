"""What a store offers the rest of heartwatch, whatever database is behind it.

`Reads` lists the read methods the web, the metrics endpoint and the CLI use, and the values they return
(the domain's types from core/model.py, and the few read models below). store/sqlite.py's Store implements
them (its queries are in store/reads.py); a PostgreSQL store (issue 14) is a sibling module implementing the
same methods, so nothing above the store changes. Only the store speaks SQL: a test fails on SQL elsewhere.

The writes (sync_config, set_paused, api_save_check, api_archive, record_ping) and the outbox are the
Store's own methods in store/sqlite.py; they join this interface once the ping pipeline's shape is settled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

from heartwatch.core.model import Check, CheckStatus, Run, RunState, Watch
from heartwatch.store.uptime import WINDOWS, Uptime


@dataclass(frozen=True, slots=True)
class CheckSnapshot:
    """One check as the pages, the API, the metrics and the CLI show it: read together, in one statement."""

    check: Check
    last_run: Run | None  # the newest run, open or not
    watch: Watch | None  # the scheduler's expectation; None until it has written one


class StripRun(NamedTuple):
    """A run as its cell in the overview's strip shows it, from plain columns: its steps' JSON (the bulk of a
    run's row) is not decoded, and its times stay epoch seconds until a cell is drawn (see web/format.py).
    `last_step` is the name of its newest step, which the runs table keeps beside the steps for list views."""

    id: int
    state: RunState
    started_ts: float
    ended_ts: float | None
    exit_code: int | None
    last_step: str | None

    @property
    def started_at(self) -> datetime:
        return datetime.fromtimestamp(self.started_ts, UTC)

    @property
    def duration(self) -> timedelta | None:
        # As Run.duration: the difference of the two datetimes, so it rounds as the run page's does.
        return None if self.ended_ts is None else datetime.fromtimestamp(self.ended_ts, UTC) - self.started_at


#: What the overview reads for every live check, enough to count, filter and order it. A plain tuple (one per
#: check on every request): (id, display name, tags, paused, newest run's state or None).
StatusLine = tuple[int, str, tuple[str, ...], bool, RunState | None, str]


@dataclass(frozen=True, slots=True)
class StatusLines:
    """Every live check's StatusLine, and the expectations already due (only those can make a check late)."""

    lines: list[StatusLine]
    due: dict[int, tuple[datetime | None, datetime | None]]  # check id -> (expected_at, start_deadline)
    #: Checks the watch holds down though the newest run is good (recover_after not reached yet): few.
    down: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class StatusPage:
    """One page of the overview's order (severity, then name), and what the page says about every check."""

    counts: dict[CheckStatus, int]  # every status, over all live checks, before any filter
    total: int  # live checks
    matched: int  # checks the filter kept, on every page
    page: int  # the page shown (the one asked for, brought inside 1..pages)
    pages: int
    rows: list[tuple[CheckStatus, int]]  # (status, check id) of the page's checks, in order
    tags: list[str]  # every tag of a live check, sorted


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert the scheduler wrote to the outbox, as the pages list it."""

    id: int
    run_id: int | None
    kind: str  # watching.AlertKind's value
    title: str
    body: str
    at: datetime


@dataclass(frozen=True, slots=True)
class MetricsRows:
    """What /metrics counts besides the snapshots, each keyed by check id."""

    last_duration: dict[int, float]  # seconds of the newest run that ended (missed runs left out)
    last_ok_at: dict[int, float]  # epoch seconds when the newest good run ended
    runs_by_state: dict[tuple[int, RunState], int]  # kept runs
    alerts_by_kind: list[tuple[str, int]]  # by kind, in kind order
    delivered: int
    gave_up: int
    pending: int


class UnreadableDatabase(Exception):
    """A database the CLI cannot read: `str()` is the one line to show."""


class LeaderLock(Protocol):
    """Who runs the scheduler and the sender: exactly one process of those sharing a database at a time.

    On SQLite the one process always holds it (SoleLeader); on PostgreSQL it is an advisory lock on a
    connection of its own (store/postgres.py), released by PostgreSQL when that connection dies."""

    name: str  # this process, as the pages and /healthz name it

    async def acquire(self) -> bool:
        """Take the lock if it is free; whether this process holds it now."""
        ...

    async def still_held(self) -> bool:
        """Whether this process still holds it (False once its connection is gone: stop leading at once)."""
        ...

    async def holder(self) -> str | None:
        """The name of the process holding it, if any."""
        ...

    async def release(self) -> None: ...


class SoleLeader:
    """The lock of a store only one process can open (SQLite): always held by it."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def acquire(self) -> bool:
        return True

    async def still_held(self) -> bool:
        return True

    async def holder(self) -> str | None:
        return self.name

    async def release(self) -> None:
        return None


class Reads(Protocol):
    """The read side of a store. Every method reads one consistent state and never writes."""

    async def snapshot(self, slug: str) -> CheckSnapshot | None:
        """The check with this slug (archived ones too), its newest run and its watch; None if there is none."""
        ...

    async def snapshots(self, include_archived: bool = False) -> list[CheckSnapshot]:
        """Every check (live ones, or all), by slug, each with its newest run and its watch."""
        ...

    async def snapshots_of(self, slugs: Sequence[str]) -> dict[str, CheckSnapshot]:
        """The live checks with these slugs, by slug (unknown or archived ones left out)."""
        ...

    async def relatives(self, slug: str, limit: int = 100) -> dict[str, CheckSnapshot]:
        """The live checks linked to `slug` by depends_on and after, up and down, by slug (itself included)."""
        ...

    async def checks(self, include_archived: bool = False) -> list[Check]: ...

    async def check(self, slug: str) -> Check | None: ...

    async def checks_by_id(self, ids: list[int]) -> dict[int, Check]: ...

    async def watches_of(self, ids: list[int]) -> dict[int, Watch]:
        """The watches of these checks (a check without one is left out)."""
        ...

    async def runs(self, check_id: int, limit: int = 50, before: int | None = None) -> list[Run]:
        """A check's runs, newest first; `before`: only runs with a smaller id (the next page)."""
        ...

    async def run(self, check_id: int, run_id: int) -> Run | None: ...

    async def recent_runs(self, check_ids: list[int], limit: int) -> dict[int, tuple[Run, list[StripRun]]]:
        """The newest `limit` runs of each check: the newest decoded whole, and all of them as strip cells."""
        ...

    async def uptimes(self, check_ids: Sequence[int], now: datetime,
                      windows: Sequence[tuple[str, timedelta]] = WINDOWS) -> dict[int, list[Uptime]]:
        """Each check's share of ok runs over the last 24 h, 7 d and 30 d (or the windows given) with its
        failures, in the windows' order."""
        ...

    async def events(self, check_id: int, limit: int = 100, run_id: int | None = None) -> list[dict[str, Any]]:
        """A check's (or one run's) pings, newest first, as dicts of the events' columns."""
        ...

    async def alerts(self, check_id: int, limit: int = 20, run_id: int | None = None) -> list[AlertRecord]:
        """Alerts written for a check (or one of its runs), newest first."""
        ...

    async def status_lines(self, now: datetime) -> StatusLines:
        """What the overview needs of every live check, read in one statement (status_page's way on a store
        without a writer, whose status index it would otherwise use)."""
        ...

    async def status_page(self, now: datetime, wanted: CheckStatus | None, page: int, per_page: int,
                          tag: str | None = None, query: str = "", slugs: frozenset[str] | None = None
                          ) -> StatusPage:
        """One page of the overview: the checks in `wanted` status (or all), with `tag`, matching the search
        `query` (lower case), among `slugs`, in severity then name order; with every status's count."""
        ...

    async def metrics_rows(self) -> MetricsRows: ...

    async def change_version(self) -> int:
        """A number that changes whenever anything commits (the pages' live refresh compares it)."""
        ...

    async def is_healthy(self) -> bool:
        """The database answers a query."""
        ...

