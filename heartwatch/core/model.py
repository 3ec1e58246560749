"""The domain's vocabulary: checks, runs, steps and pings, as plain typed values.

Nothing here touches the clock, the database or the network; the store and the web layer translate
to and from these types, and the pure functions in `runs`, `schedule` and `status` work on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class RunState(StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"
    MISSED = "missed"


#: States that count as a bad run (alerting, "down").
BAD_STATES = frozenset({RunState.FAILED, RunState.TIMED_OUT, RunState.INTERRUPTED, RunState.MISSED})


class PingKind(StrEnum):
    START = "start"
    STEP = "step"
    SUCCESS = "success"
    FAIL = "fail"
    LOG = "log"


class CheckStatus(StrEnum):
    NEW = "new"
    UP = "up"
    RUNNING = "running"
    LATE = "late"
    DOWN = "down"
    PAUSED = "paused"


class CheckSource(StrEnum):
    """Where a check came from, which decides who may change it."""

    CONFIG = "config"  # heartwatch.toml: read-only through the API (the file would put its version back)
    API = "api"  # the write API
    PING = "ping"  # a slug ping with ?create=1


class RunFlag(StrEnum):
    """Remarks on a run that do not change its state by themselves."""

    START_NOT_SEEN = "start_not_seen"  # the run was opened by a step or finish
    OUT_OF_ORDER = "out_of_order"  # a declared step came before one it should follow
    UNDECLARED_STEP = "undeclared_step"  # a step name the check does not declare
    SKIPPED_STEPS = "skipped_steps"  # finished without every declared step
    TOO_FAST = "too_fast"  # finished sooner than min_runtime
    LATE_FINISH = "late_finish"  # finished after it had timed out
    DUPLICATE_START = "duplicate_start"  # a second start for the same rid
    STEPS_TRUNCATED = "steps_truncated"  # more step pings than a run keeps; repeats were dropped


@dataclass(frozen=True, slots=True)
class StepSpec:
    name: str
    max: timedelta | None = None  # time allowed since the previous step (or the start)


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """What a check expects: the `[checks.<slug>]` table of heartwatch.toml, with defaults applied."""

    slug: str
    name: str = ""
    schedule: str | None = None  # cron expression, evaluated in `timezone`
    period: timedelta | None = None  # or: a start every `period`
    timezone: str = "UTC"
    start_grace: timedelta = timedelta(minutes=15)
    max_runtime: timedelta | None = None
    min_runtime: timedelta | None = None
    steps: tuple[StepSpec, ...] = ()
    strict_steps: bool = False
    alert_after: int = 1
    alerts: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def display_name(self) -> str:
        return self.name or self.slug

    def step_index(self, name: str) -> int | None:
        for i, step in enumerate(self.steps):
            if step.name == name:
                return i
        return None


@dataclass(slots=True)
class Check:
    """A check as stored: its spec plus identity and where it came from."""

    id: int
    uuid: str
    spec: CheckSpec
    source: CheckSource = CheckSource.API
    paused: bool = False
    archived: bool = False
    created_at: datetime | None = None

    @property
    def slug(self) -> str:
        return self.spec.slug


@dataclass(frozen=True, slots=True)
class StepMark:
    """One step seen in a run, with the remarks it earned."""

    name: str
    at: datetime
    flags: tuple[RunFlag, ...] = ()


@dataclass(slots=True)
class Run:
    check_id: int
    state: RunState
    started_at: datetime
    id: int | None = None  # None until the store has written it
    rid: str | None = None
    ended_at: datetime | None = None
    exit_code: int | None = None
    steps: list[StepMark] = field(default_factory=list)
    flags: set[RunFlag] = field(default_factory=set)
    # When the run was opened by a step or a finish, started_at is the time of that first ping.
    deadline: datetime | None = None  # when a running run times out; kept by the scheduler

    @property
    def is_open(self) -> bool:
        """Open runs take further pings: running ones, and timed-out ones awaiting a late finish."""
        return self.ended_at is None and self.state in (RunState.RUNNING, RunState.TIMED_OUT)

    @property
    def last_step(self) -> StepMark | None:
        return self.steps[-1] if self.steps else None

    @property
    def duration(self) -> timedelta | None:
        return None if self.ended_at is None else self.ended_at - self.started_at

    def copy(self) -> Run:
        # Spelled out rather than dataclasses.replace: this runs on every ping, and replace() is slow.
        return Run(self.check_id, self.state, self.started_at, self.id, self.rid, self.ended_at, self.exit_code,
                   list(self.steps), set(self.flags), self.deadline)


@dataclass(frozen=True, slots=True)
class Ping:
    """One ping as the job sent it, already classified."""

    kind: PingKind
    at: datetime
    step: str | None = None  # for PingKind.STEP
    rid: str | None = None
    exit_code: int | None = None
    body: bytes = b""
    remote_addr: str | None = None
    user_agent: str | None = None
    method: str = "GET"


@dataclass(slots=True)
class Watch:
    """What the scheduler keeps per check between pings: the expectation and the alerting streak."""

    expected_at: datetime | None = None  # next expected start
    start_deadline: datetime | None = None  # expected_at + start_grace
    down_since: datetime | None = None  # set when a bad run alerted; cleared by a good run
    bad_streak: int = 0  # consecutive bad runs (alert_after counts these)
    next_reminder: datetime | None = None
