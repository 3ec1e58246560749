"""What the status pages show, gathered from the store's reads into plain values the templates only lay out:
the overview's counts, order and pages, a run's chain, where a run stopped, the event log's bodies."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from heartwatch.core import dependencies
from heartwatch.core.model import BAD_STATES, Check, CheckStatus, Run, RunFlag, RunState, Watch
from heartwatch.core.schedule import next_expected_start
from heartwatch.core.status import check_status
from heartwatch.store.base import CheckSnapshot, Reads, StripRun
from heartwatch.store.codec import from_ts

#: Runs drawn in the overview's strip per check.
STRIP_RUNS = 30
#: Checks per page of the overview: only one page is drawn, and only its strips are read. 50 rows with their
#: strips of 30 runs are 1,500 cells, about 330 KB of HTML.
PAGE_SIZE = 50
#: Counted at the top of the overview, in this order.
COUNTED = (CheckStatus.UP, CheckStatus.RUNNING, CheckStatus.LATE, CheckStatus.DOWN, CheckStatus.PAUSED,
           CheckStatus.NEW)

# Part of the live-refresh token: a restarted server must not answer "unchanged" to a page that saw
# the previous process's data, even if SQLite's data_version happens to repeat.
_PROCESS_NONCE = secrets.token_hex(4)
#: Pages show coarse relative times ("3 min ago") and statuses that turn late with the clock: a page
#: whose data did not change is still re-rendered this often.
CLOCK_GRAIN_S = 10

@dataclass
class CheckRow:
    check: Check
    status: CheckStatus
    last_run: Run | None
    strip: list[StripRun]  # the last STRIP_RUNS runs, newest first
    expected_at: datetime | None  # next expected start, when known
    note: str | None = None  # "waiting on router", "not expected, dump failed"


@dataclass
class Overview:
    rows: list[CheckRow]  # filtered, down first
    counts: dict[CheckStatus, int]  # over all checks, before filtering
    total: int
    tags: list[str]
    tag: str | None
    status: CheckStatus | None
    query: str = ""  # the search box: part of a slug, name or tag
    matched: int = 0  # rows matching the filter, on every page
    page: int = 1
    pages: int = 1
    pipeline: str | None = None  # only the checks linked to this one by depends_on and after

    @property
    def first(self) -> int:
        """The number of the first row shown, counting from 1."""
        return (self.page - 1) * PAGE_SIZE + 1

    def page_url(self, page: int) -> str:
        """The link to another page of the same filter."""
        query = {"q": self.query, "tag": self.tag or "", "status": self.status.value if self.status else "",
                 "pipeline": self.pipeline or "", "page": str(page)}
        return "?" + urlencode({k: v for k, v in query.items() if v})

    @property
    def title(self) -> str:
        """The browser tab says what needs attention, so a pinned tab is a monitor of its own."""
        bad = [f"{self.counts[s]} {s.value}" for s in (CheckStatus.DOWN, CheckStatus.LATE) if self.counts[s]]
        return f"{', '.join(bad)} · heartwatch" if bad else "heartwatch"


class LinkKind(StrEnum):
    """Which part of a run's chain a link is (the templates style each)."""

    START = "start"
    STEP = "step"
    END = "end"


class LinkState(StrEnum):
    """How far the run got with one link of its chain."""

    DONE = "done"
    STOPPED = "stopped"  # the last thing that happened in a bad or running run: where it stopped (or is now)
    PENDING = "pending"  # declared but not reached (yet)
    SKIPPED = "skipped"  # not seen in a run that finished
    FAILED = "failed"  # the run's fail ping
    MISSED = "missed"  # a missed run: nothing ran, so nothing stopped anywhere


@dataclass
class ChainItem:
    """One link of a run's job chain as the run page and the runs table draw it."""

    name: str
    kind: LinkKind
    state: LinkState
    at: datetime | None = None
    since_previous: timedelta | None = None
    allowed: timedelta | None = None  # the step's declared `max`
    flags: list[RunFlag] = field(default_factory=list)


async def change_token(store: Reads, now: datetime) -> str:
    """An ETag for live refresh: changes whenever any write commits, and with the clock's grain."""
    return f'"{_PROCESS_NONCE}-{await store.change_version()}-{int(now.timestamp()) // CLOCK_GRAIN_S}"'


def expected_start(check: Check, watch: Watch | None, last_run: Run | None, now: datetime) -> datetime | None:
    """The next expected start: the scheduler's, or for display only an estimate until it has written one."""
    if watch is not None and watch.expected_at is not None:
        return watch.expected_at
    if check.paused or check.archived:
        return None
    if check.spec.schedule is not None:
        return next_expected_start(check.spec, now)
    if check.spec.period is not None and last_run is not None and last_run.state is not RunState.MISSED:
        return last_run.started_at + check.spec.period
    return None


def status_of(check: Check, last_run: Run | None, watch: Watch | None, now: datetime) -> CheckStatus:
    # Only the scheduler's own expectation can make a check late: an estimate could be wrong.
    return check_status(check, last_run, now, watch)


async def overview(store: Reads, now: datetime, tag: str | None, status: str | None, page: int = 1,
                   query: str = "", pipeline: str | None = None) -> Overview:
    """The overview's counts and one page of its rows. The store keeps every check's status in order
    (store/status_index.py), so the counts and the page cost what the page holds, not what the checks number;
    a tag, a search or a pipeline looks at every check of the statuses shown, in memory."""
    query, tag, pipeline = query.strip(), tag or None, pipeline or None
    # An unknown status in the URL (a typo, an old bookmark) shows everything rather than an error.
    wanted = next((s for s in CheckStatus if s.value == status), None)
    slugs = frozenset(await store.relatives(pipeline)) if pipeline is not None else None
    found = await store.status_page(now, wanted, page, PAGE_SIZE, tag, query.lower(), slugs)
    ids = [cid for _, cid in found.rows]
    checks = await store.checks_by_id(ids)
    watches = await store.watches_of(ids)
    recent = await store.recent_runs(ids, STRIP_RUNS)
    parents = await store.snapshots_of([p for c in checks.values() for p in c.spec.depends_on])
    rows = []
    for line_status, cid in found.rows:
        check = checks.get(cid)
        if check is None:
            continue  # created by a write the read connection does not see yet
        watch = watches.get(cid)
        last, strip = recent.get(cid, (None, []))
        note = (status_note(CheckSnapshot(check, last, watch), parents, now)
                if check.spec.depends_on or check.spec.after else None)
        rows.append(CheckRow(check, line_status, last, strip, expected_start(check, watch, last, now), note))
    counts = {s: found.counts[s] for s in COUNTED}
    return Overview(rows, counts, found.total, found.tags, tag, wanted, query=query, matched=found.matched,
                    page=found.page, pages=found.pages, pipeline=pipeline)


@dataclass
class PipelineItem:
    """One line of the check page's pipeline view."""

    snap: CheckSnapshot
    depth: int  # negative: above the check (its parents); 0: the check; positive: below it
    via: str  # how this line is linked: "depends_on", "after" ("" for the check)
    of: str  # above: the check that names this one; below: the check this one names
    status: CheckStatus
    note: str | None  # "waiting on router", "not expected, dump failed"
    stopped: tuple[str, datetime] | None  # where its newest run stopped, when it is bad or running

    top: int = 0  # the depth of the first line

    @property
    def indent(self) -> int:
        return min(self.depth - self.top, 8)


def status_note(snap: CheckSnapshot, linked: Mapping[str, CheckSnapshot], now: datetime) -> str | None:
    """"waiting on router", "not expected, dump failed": the words beside the check's status, if any."""
    known = {s: (r.check, r.watch) for s, r in linked.items()}
    return dependencies.status_note(snap.check.spec, snap.watch, dependencies.waiting_of(snap.check, known, now))


def pipeline_view(slug: str, linked: Mapping[str, CheckSnapshot], now: datetime) -> list[PipelineItem]:
    """The check's parents and children (and theirs) with their statuses; empty when it has none."""
    if len(linked) <= 1:
        return []
    known = {s: (r.check, r.watch) for s, r in linked.items()}
    rows = dependencies.pipeline(slug, {s: r.check.spec for s, r in linked.items()})
    top = min(r.depth for r in rows)
    items = []
    for row in rows:
        snap = linked[row.slug]
        waiting = dependencies.waiting_of(snap.check, known, now)
        status = status_of(snap.check, snap.last_run, snap.watch, now)
        items.append(PipelineItem(snap, row.depth, row.via, row.of, status,
                                  dependencies.status_note(snap.check.spec, snap.watch, waiting),
                                  stopped_at(snap.last_run), top))
    return items


def stopped_at(run: Run | None) -> tuple[str, datetime] | None:
    """Where an unfinished or bad run stopped: its last step (or its start) and when."""
    if run is None or not (run.state in BAD_STATES or run.state is RunState.RUNNING):
        return None
    if run.state is RunState.MISSED:
        return None
    last = run.last_step
    if last is not None:
        return last.name, last.at
    return "start", run.started_at


def chain(check: Check, run: Run, now: datetime) -> list[ChainItem]:
    """The run's chain: start, each step seen (in arrival order), declared steps it never reached, the end."""
    spec = check.spec
    bad_or_open = run.state in BAD_STATES or run.state is RunState.RUNNING
    items: list[ChainItem] = []
    if run.state is RunState.MISSED:
        # Nothing ran, so nothing stopped anywhere: the chain says so instead of marking its start.
        return [ChainItem("did not start", LinkKind.START, LinkState.MISSED, run.started_at)]
    seen_start = RunFlag.START_NOT_SEEN not in run.flags
    items.append(ChainItem("start", LinkKind.START, LinkState.DONE if seen_start else LinkState.SKIPPED,
                           run.started_at if seen_start else None))
    previous = run.started_at
    seen: set[str] = set()
    for mark in run.steps:
        index = spec.step_index(mark.name)
        allowed = spec.steps[index].max if index is not None else None
        items.append(ChainItem(mark.name, LinkKind.STEP, LinkState.DONE, mark.at, mark.at - previous, allowed,
                               list(mark.flags)))
        previous = mark.at
        seen.add(mark.name)
    if bad_or_open:
        # The last thing that happened is where it stopped (or, for a running run, where it is now).
        last_done = next((i for i in reversed(items) if i.state is LinkState.DONE), None)
        if last_done is not None:
            last_done.state = LinkState.STOPPED
    for step in spec.steps:
        if step.name not in seen:
            items.append(ChainItem(step.name, LinkKind.STEP, LinkState.PENDING if bad_or_open else LinkState.SKIPPED,
                                   allowed=step.max))
    if run.ended_at is not None and run.state is not RunState.INTERRUPTED:
        failed = run.state is RunState.FAILED
        items.append(ChainItem("fail" if failed else "finish", LinkKind.END,
                               LinkState.FAILED if failed else LinkState.DONE, run.ended_at, run.ended_at - previous))
    elif run.state is RunState.INTERRUPTED:
        items.append(ChainItem("interrupted by a new start", LinkKind.END, LinkState.DONE, run.ended_at))
    else:
        items.append(ChainItem("finish", LinkKind.END, LinkState.PENDING, None, None, spec.max_runtime))
    return items


@dataclass
class EventView:
    """A ping as the event log shows it; the body is text (bad UTF-8 replaced), escaped by the template."""

    id: int
    run_id: int | None
    at: datetime
    kind: str
    step: str | None
    rid: str | None
    exit_code: int | None
    body: str
    remote_addr: str | None
    user_agent: str | None
    method: str | None

    #: Bodies longer than this (or with more lines) are collapsed behind their first line.
    LONG_CHARS = 300
    LONG_LINES = 6

    @property
    def is_long(self) -> bool:
        return len(self.body) > self.LONG_CHARS or self.body.count("\n") >= self.LONG_LINES

    @property
    def summary(self) -> str:
        first = self.body.strip().splitlines()[0] if self.body.strip() else ""
        return first[:120] + ("…" if len(first) > 120 else "")


def event_views(events: list[dict[str, Any]]) -> list[EventView]:
    out = []
    for e in events:
        body: bytes | None = e["body"]
        at = from_ts(e["at"])
        assert at is not None
        out.append(EventView(e["id"], e["run_id"], at, e["kind"], e["step"], e["rid"], e["exit_code"],
                             body.decode("utf-8", "replace") if body else "", e["remote_addr"], e["user_agent"],
                             e["method"]))
    return out
