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
    FAIL_KEYWORD = "fail_keyword"  # a finish whose body held one of the check's fail_keywords: failed
    NEXT_RUN_DUE = "next_run_due"  # timed out (no max_runtime) because it was still open when the next run was due


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
    recover_after: int = 1  # consecutive good runs before a down check counts as recovered (flap damping)
    remind_every: timedelta | None = None  # None: the server's [alerts] remind_every; 0: never
    methods: tuple[str, ...] = ()  # only pings with these HTTP methods count; () = every method
    fail_keywords: tuple[str, ...] = ()  # a finish whose body holds one of these counts as failed
    resume_on_ping: bool = False  # a ping to a paused check resumes it
    maintenance: tuple[str, ...] = ()  # recurring windows ("Sat 02:00-04:00", in `timezone`) that hold alerts
    description: str = ""  # free text for people (Healthchecks' `desc`)
    depends_on: tuple[str, ...] = ()  # parents (slugs): while one is down, paused or in maintenance, no alerts
    after: str | None = None  # instead of a schedule: expected within start_grace after this check finishes well

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
    muted: bool = False  # no reminders until it recovers
    maintenance_until: datetime | None = None  # a one-off window: alerts held until then

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
    missed: int = 1  # for a missed run: how many expected starts it stands for (folded while down)

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
                   list(self.steps), set(self.flags), self.deadline, self.missed)


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
    ping_ms: float | None = None  # a response time the sender measured (Uptime Kuma's `ping`), kept with the event


@dataclass(frozen=True, slots=True)
class Trouble:
    """What is wrong with a check, as far as alerts care: a new alert goes out only when this changes."""

    kind: str  # an AlertKind value (missed, timed_out, failed, interrupted)
    exit_code: int | None = None
    step: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}|{'' if self.exit_code is None else self.exit_code}|{self.step or ''}"

    @classmethod
    def from_key(cls, key: str) -> Trouble:
        kind, code, step = key.split("|", 2)
        return cls(kind, int(code) if code else None, step or None)


@dataclass(frozen=True, slots=True)
class Since:
    """What happened since the last alert went out: what a reminder sums up."""

    bad: int = 0  # bad runs judged
    missed: int = 0  # expected starts that never came
    good: int = 0  # good runs (not yet enough to recover)
    late: int = 0  # timed-out runs that finished late
    held: int = 0  # alerts held back (paused, maintenance, the hourly limit)
    last: Trouble | None = None
    last_at: datetime | None = None


@dataclass(slots=True)
class Watch:
    """What the scheduler keeps per check between pings: the expectation, and what alerts have said.

    `down_since`/`trouble` are the truth (the check is down, and why); `told` is what the last alert said
    (None: nothing bad, or "recovered"). An alert goes out when the two differ and nothing holds it.
    """

    expected_at: datetime | None = None  # next expected start
    start_deadline: datetime | None = None  # expected_at + start_grace
    down_since: datetime | None = None  # set when bad runs reached alert_after; cleared on recovery
    bad_streak: int = 0  # consecutive bad runs (alert_after counts these)
    next_reminder: datetime | None = None
    good_streak: int = 0  # consecutive good runs (recover_after counts these)
    trouble: Trouble | None = None  # what is wrong now (the latest bad run), while down
    told: Trouble | None = None  # what the last alert said was wrong; None: told up (or nothing yet)
    since: Since = field(default_factory=Since)
    recent: tuple[datetime, ...] = ()  # when the latest alerts went out (the hourly limit counts these)
    released_at: datetime | None = None  # when it last recovered: its depends_on children wait their grace from here
    parent_run: int | None = None  # `after`: the parent's run (id) the pending expectation, or its absence, follows
    parent_failed: bool = False  # `after`: that parent run did not finish well, so no start is expected
