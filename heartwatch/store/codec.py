"""How domain values are written to SQLite columns and read back.

Times are stored as UTC epoch seconds (REAL): compact, indexable and compared without parsing.
A check's spec and a run's steps are JSON, because they are read and written whole.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from typing import Any

from heartwatch.core.model import (
    Check,
    CheckSource,
    CheckSpec,
    Run,
    RunFlag,
    RunState,
    Since,
    StepMark,
    Trouble,
    Watch,
)
from heartwatch.core.settings import spec_fields_from_store, spec_to_store


def to_ts(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


def from_ts(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as the API shows times."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def spec_to_json(spec: CheckSpec) -> str:
    """The spec as stored, without its slug: the text `json.dumps` makes of it with compact separators.

    The keys and how each value is written come from the table of check settings (core/settings.py); a test
    holds the text to json.dumps's output byte for byte.
    """
    return spec_to_store(spec)


def spec_from_json(slug: str, text: str) -> CheckSpec:
    # The JSON leaves out the slug, so checks with the same settings share it: decoded once (100,000 checks
    # are read at every start).
    return CheckSpec(slug=slug, **_spec_fields(text))


@functools.lru_cache(maxsize=4096)
def _spec_fields(text: str) -> dict[str, Any]:
    """CheckSpec's fields but the slug. Callers unpack it: it is shared, never to be changed."""
    return spec_fields_from_store(json.loads(text))


CHECK_COLUMNS = "id, uuid, slug, spec, source, paused, archived_at, created_at, muted, maintenance_until"


#: Checks created together (a config's, at its first start) share one creation time: one object for all of
#: them rather than a datetime each (5 MB of 100,000 checks read at a restart).
_shared_time = functools.lru_cache(maxsize=256)(from_ts)


def check_from_row(row: Any, spec: CheckSpec | None = None) -> Check:
    """`spec`: the row's spec when the caller already holds it (one whose spec_to_json is the row's text)."""
    return Check(id=row[0], uuid=row[1], spec=spec or spec_from_json(row[2], row[3]), source=CheckSource(row[4]),
                 paused=bool(row[5]), archived=row[6] is not None, created_at=_shared_time(row[7]),
                 muted=bool(row[8]), maintenance_until=from_ts(row[9]))


def steps_to_json(steps: list[StepMark]) -> str:
    # A run's row is rewritten with all its steps on every ping of the run, so each mark (immutable) is
    # encoded once and its text reused: encoding the whole list each time was ~40% of the writer's share.
    return "[" + ",".join(map(_mark_json, steps)) + "]"


@functools.lru_cache(maxsize=8192)
def _mark_json(mark: StepMark) -> str:
    # Written out rather than through json's encoder: a step ping's mark is new, so the cache above does not
    # help it, and the encoder (a dict built, then walked) was most of the run's write. Same text as
    # _compact({"name": ..., "at": ..., "flags": [...]}), which tests/test_store.py holds it to.
    return (f'{{"name":{_string(mark.name)},"at":{mark.at.timestamp()!r},'
            f'"flags":[{",".join(map(_string, mark.flags))}]}}')


_compact = json.JSONEncoder(separators=(",", ":")).encode
_string = json.encoder.encode_basestring_ascii


def steps_from_json(text: str) -> list[StepMark]:
    return [StepMark(s["name"], datetime.fromtimestamp(s["at"], UTC), tuple(RunFlag(f) for f in s["flags"]))
            for s in json.loads(text)]


def flags_to_json(flags: set[RunFlag]) -> str:
    return json.dumps(sorted(flags)) if flags else "[]"


RUN_COLUMNS = "id, check_id, rid, state, started_at, ended_at, exit_code, steps, flags, deadline, missed"


def run_from_row(row: Any) -> Run:
    started = from_ts(row[4])
    assert started is not None
    return Run(id=row[0], check_id=row[1], rid=row[2], state=RunState(row[3]), started_at=started,
               ended_at=from_ts(row[5]), exit_code=row[6], steps=steps_from_json(row[7]),
               flags={RunFlag(f) for f in json.loads(row[8])}, deadline=from_ts(row[9]), missed=row[10])


def run_values(run: Run) -> tuple[Any, ...]:
    """Values for RUN_COLUMNS without id, plus the denormalised last step used by list queries."""
    last = run.last_step
    return (run.check_id, run.rid, run.state.value, to_ts(run.started_at), to_ts(run.ended_at),
            run.exit_code, steps_to_json(run.steps), flags_to_json(run.flags),
            last.name if last else None, to_ts(last.at) if last else None, to_ts(run.deadline), run.missed)


WATCH_COLUMNS = "expected_at, start_deadline, down_since, bad_streak, next_reminder, memory"
#: A down check stored before the alert rules of version 2 knew why it was down: it had alerted.
_LEGACY_DOWN = Trouble("down")


def watch_from_row(row: Any) -> Watch:
    w = Watch(expected_at=from_ts(row[0]), start_deadline=from_ts(row[1]), down_since=from_ts(row[2]),
              bad_streak=row[3], next_reminder=from_ts(row[4]))
    memory = row[5] if len(row) > 5 else None
    if memory is None:
        if w.down_since is not None:
            w.trouble = w.told = _LEGACY_DOWN
        return w
    m = json.loads(memory)
    w.good_streak = m.get("g", 0)
    w.trouble = Trouble.from_key(m["t"]) if m.get("t") else None
    w.told = Trouble.from_key(m["o"]) if m.get("o") else None
    s = m.get("s") or {}
    w.since = Since(bad=s.get("bad", 0), missed=s.get("missed", 0), good=s.get("good", 0), late=s.get("late", 0),
                    held=s.get("held", 0), last=Trouble.from_key(s["last"]) if s.get("last") else None,
                    last_at=from_ts(s.get("last_at")))
    w.recent = tuple(datetime.fromtimestamp(t, UTC) for t in m.get("r", ()))
    w.released_at = from_ts(m.get("u"))
    w.parent_run = m.get("pr")
    w.parent_failed = bool(m.get("pf"))
    return w


def _memory(w: Watch) -> str | None:
    if (not w.good_streak and w.trouble is None and w.told is None and w.since == _NOTHING_SINCE
            and not w.recent and w.released_at is None and w.parent_run is None):
        return None  # the common case: a check that is fine stores nothing here
    # Written out (a watch changes on every start and finish): the text _compact makes of
    # {"g": ..., "t": ..., "o": ..., "s": {"bad": ..., ..., "last_at": ...}, "r": [...]}; tests/test_store.py
    # holds the two equal.
    s = w.since
    return (f'{{"g":{w.good_streak},"t":{_key(w.trouble)},"o":{_key(w.told)},"s":{{"bad":{s.bad},'
            f'"missed":{s.missed},"good":{s.good},"late":{s.late},"held":{s.held},"last":{_key(s.last)},'
            f'"last_at":{_number(to_ts(s.last_at))}}},'
            f'"r":[{",".join(repr(t.timestamp()) for t in w.recent)}],'
            f'"u":{_number(to_ts(w.released_at))},"pr":{_number(w.parent_run)},'
            f'"pf":{"true" if w.parent_failed else "null"}}}')


def _key(trouble: Trouble | None) -> str:
    return "null" if trouble is None else _string(trouble.key)


def _number(value: float | None) -> str:
    return "null" if value is None else repr(value)


_NOTHING_SINCE = Since()


def watch_values(w: Watch) -> tuple[Any, ...]:
    return (to_ts(w.expected_at), to_ts(w.start_deadline), to_ts(w.down_since), w.bad_streak,
            to_ts(w.next_reminder), _memory(w))
