"""Store on a temporary database: group commit, failure isolation, retention, config sync, the ping key."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.db import query

from heartwatch.core.model import (
    Check,
    CheckSpec,
    Ping,
    PingKind,
    RunFlag,
    RunState,
    Since,
    StepMark,
    StepSpec,
    Trouble,
    Watch,
)
from heartwatch.core.pings import PingRequest
from heartwatch.core.runs import MAX_OPEN_RUNS
from heartwatch.store import codec
from heartwatch.store.choose import new_store
from heartwatch.store.sqlite import OPEN_RUNS, PRUNE_EVERY, PingOutcome, Store, new_uuids

T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)


async def add_check(store: Store, slug: str = "backup", **kw: object) -> Check:
    await store.sync_config({slug: CheckSpec(slug=slug, **kw)}, T0)  # type: ignore[arg-type]
    check = await store.check(slug)
    assert check is not None
    return check


def ping_of(check: Check, kind: PingKind, at: datetime = T0, **kw: object) -> tuple[PingRequest, Ping]:
    return PingRequest(kind=kind, uuid=check.uuid), Ping(kind=kind, at=at, **kw)  # type: ignore[arg-type]


async def count(store: Store, table: str, check: Check | None = None) -> int:
    where, params = ("", ()) if check is None else (" WHERE check_id = ?", (check.id,))
    [(n,)] = await query(store, f"SELECT count(*) FROM {table}{where}", params)
    return int(n)


# --- group commit -------------------------------------------------------------------------------------------


async def test_concurrent_pings_share_commits_and_are_all_stored(store: Store) -> None:
    check = await add_check(store)
    batches = store.writer.batches
    n = 200
    results = await asyncio.gather(*(
        store.record_ping(*ping_of(check, PingKind.START, T0 + timedelta(seconds=i), rid=f"r{i}"))
        for i in range(n)))
    assert all(r.outcome is PingOutcome.RECORDED for r in results)
    assert store.writer.batches - batches < n  # fewer commits than pings: they shared transactions
    assert await count(store, "events", check) == n
    assert await count(store, "runs", check) == n
    runs = await store.runs(check.id, limit=n)
    assert {r.rid for r in runs} == {f"r{i}" for i in range(n)}
    # At most MAX_OPEN_RUNS stay open: each start past it closed the oldest (issue 14, finding 3).
    running = {r.rid for r in runs if r.state is RunState.RUNNING}
    assert running == {f"r{i}" for i in range(n - MAX_OPEN_RUNS, n)}
    assert all(r.state is RunState.INTERRUPTED for r in runs if r.rid not in running)


async def test_a_ping_is_readable_as_soon_as_record_ping_returns(store: Store) -> None:
    check = await add_check(store)
    result = await store.record_ping(*ping_of(check, PingKind.START, body=b"hello", method="POST",
                                              remote_addr="10.0.0.5", user_agent="curl/8"))
    assert result.applied is not None and result.applied.run is not None
    run_id = result.applied.run.id
    [event] = await store.events(check.id)
    assert event["run_id"] == run_id and run_id is not None
    assert (event["kind"], event["body"], event["method"], event["remote_addr"], event["user_agent"]) == (
        "start", b"hello", "POST", "10.0.0.5", "curl/8")


async def test_a_failing_operation_does_not_lose_the_rest_of_its_batch(store: Store) -> None:
    check = await add_check(store)

    def half_write_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO events (check_id, at, kind) VALUES (?, 0, 'poison')", (check.id,))
        raise RuntimeError("boom")

    batches = store.writer.batches
    pings = [store.record_ping(*ping_of(check, PingKind.LOG, T0, body=f"p{i}".encode())) for i in range(20)]
    results = await asyncio.gather(*pings[:10], store.writer.submit(half_write_then_fail), *pings[10:],
                                   return_exceptions=True)
    failure = results.pop(10)
    assert isinstance(failure, RuntimeError) and str(failure) == "boom"
    assert all(not isinstance(r, BaseException) and r.outcome is PingOutcome.RECORDED for r in results)
    assert store.writer.batches - batches < 21  # the failure shared a transaction with pings
    events = await store.events(check.id)
    assert sorted(e["body"] for e in events) == sorted(f"p{i}".encode() for i in range(20))
    assert all(e["kind"] != "poison" for e in events)  # the failing op's own write was rolled back
    # The store still works afterwards (its in-memory index was rebuilt, not emptied).
    after = await store.record_ping(*ping_of(check, PingKind.START))
    assert after.outcome is PingOutcome.RECORDED


async def test_a_failure_whose_output_holds_nul_bytes_is_stored_and_alerted(store: Store) -> None:
    # PostgreSQL's text cannot hold NUL: the output is kept as bytes, and the alert quoting it reads U+FFFD there.
    check = await add_check(store, "job", period=timedelta(hours=1))
    result = await store.record_ping(*ping_of(check, PingKind.FAIL, body=b"tar: \x00\x00 binary junk"))
    assert result.outcome is PingOutcome.RECORDED and result.alerts == 1
    [event] = await store.events(check.id)
    assert event["body"] == b"tar: \x00\x00 binary junk"
    [alert] = await store.alerts(check.id)
    assert "binary junk" in alert.body


async def test_unknown_check_is_not_found_and_stores_nothing(store: Store) -> None:
    req = PingRequest(kind=PingKind.START, uuid="00000000-0000-0000-0000-000000000000")
    result = await store.record_ping(req, Ping(kind=PingKind.START, at=T0))
    assert result.outcome is PingOutcome.NOT_FOUND
    assert await count(store, "events") == 0 and await count(store, "runs") == 0


async def test_slug_ping_needs_the_right_key_and_create_makes_the_check(store: Store) -> None:
    key = store.ping_key
    start = Ping(kind=PingKind.START, at=T0)
    wrong = await store.record_ping(PingRequest(kind=PingKind.START, ping_key="nope", slug="new", create=True), start)
    assert wrong.outcome is PingOutcome.NOT_FOUND
    no_create = await store.record_ping(PingRequest(kind=PingKind.START, ping_key=key, slug="new"), start)
    assert no_create.outcome is PingOutcome.NOT_FOUND
    created = await store.record_ping(PingRequest(kind=PingKind.START, ping_key=key, slug="new", create=True), start)
    assert created.outcome is PingOutcome.CREATED
    again = await store.record_ping(PingRequest(kind=PingKind.SUCCESS, ping_key=key, slug="new", create=True),
                                    Ping(kind=PingKind.SUCCESS, at=T0 + timedelta(minutes=1)))
    assert again.outcome is PingOutcome.RECORDED
    check = await store.check("new")
    assert check is not None and check.source == "ping"
    [run] = await store.runs(check.id)
    assert (run.state, run.duration) == (RunState.OK, timedelta(minutes=1))


# --- retention ------------------------------------------------------------------------------------------------


async def test_retention_prunes_a_checks_events_to_the_limit(db_location: Path | str) -> None:
    store = new_store(db_location, retention=10)
    await store.open()
    try:
        check = await add_check(store, "busy")
        other = await add_check(store, "quiet")
        await store.record_ping(*ping_of(other, PingKind.LOG, body=b"keep me"))
        n = PRUNE_EVERY * 2 + 5
        # Concurrent, so they share commits; the writer applies them in the order they were submitted.
        await asyncio.gather(*(store.record_ping(*ping_of(check, PingKind.LOG, T0 + timedelta(seconds=i),
                                                          body=f"{i}".encode())) for i in range(n)))
        kept = await store.events(check.id, limit=1000)
        # Pruned at every PRUNE_EVERY-th event down to the limit, then 5 more arrived.
        assert len(kept) == 10 + 5
        assert [int(e["body"]) for e in kept] == list(range(n - 1, n - 16, -1))  # the newest, newest first
        assert [e["body"] for e in await store.events(other.id)] == [b"keep me"]  # per check
    finally:
        await store.close()


async def test_events_under_the_limit_are_never_pruned(db_location: Path | str) -> None:
    store = new_store(db_location, retention=PRUNE_EVERY * 3)
    await store.open()
    try:
        check = await add_check(store)
        await asyncio.gather(*(store.record_ping(*ping_of(check, PingKind.LOG)) for _ in range(PRUNE_EVERY * 2)))
        assert await count(store, "events", check) == PRUNE_EVERY * 2
    finally:
        await store.close()


# --- config sync -------------------------------------------------------------------------------------------------


async def test_sync_config_upserts_by_slug_and_archives_removed_checks(store: Store) -> None:
    a1 = CheckSpec(slug="a", schedule="0 2 * * *")
    b = CheckSpec(slug="b", period=timedelta(hours=1))
    report = await store.sync_config({"a": a1, "b": b}, T0)
    assert (sorted(report.created), report.updated, report.archived) == (["a", "b"], [], [])
    a_before, b_before = await store.check("a"), await store.check("b")
    assert a_before is not None and b_before is not None
    assert (a_before.source, a_before.archived) == ("config", False)
    await store.record_ping(*ping_of(b_before, PingKind.START))  # history that must survive archiving

    unchanged = await store.sync_config({"a": a1, "b": b}, T0)
    assert (unchanged.created, unchanged.updated, unchanged.archived) == ([], [], [])

    a2 = CheckSpec(slug="a", schedule="30 3 * * *", steps=(StepSpec("dump"),))
    c = CheckSpec(slug="c")
    report = await store.sync_config({"a": a2, "c": c}, T0 + timedelta(hours=1))
    assert (report.created, report.updated, report.archived) == (["c"], ["a"], ["b"])

    a_after = await store.check("a")
    assert a_after is not None
    assert (a_after.id, a_after.uuid, a_after.spec) == (a_before.id, a_before.uuid, a2)
    assert [ch.slug for ch in await store.checks()] == ["a", "c"]
    archived = await store.check("b")
    assert archived is not None and archived.archived
    assert [ch.slug for ch in await store.checks(include_archived=True)] == ["a", "b", "c"]
    assert await count(store, "runs", archived) == 1 and await count(store, "events", archived) == 1
    # A ping to an archived check's UUID still resolves: history keeps growing, alerts are another matter.
    assert store.resolve(PingRequest(kind=PingKind.START, uuid=b_before.uuid)) is not None

    back = await store.sync_config({"a": a2, "b": b, "c": c}, T0 + timedelta(hours=2))
    assert (back.created, back.updated, back.archived) == ([], ["b"], [])
    b_back = await store.check("b")
    assert b_back is not None and not b_back.archived and b_back.uuid == b_before.uuid


async def test_sync_config_leaves_checks_created_by_ping_alone(store: Store) -> None:
    await store.record_ping(PingRequest(kind=PingKind.START, ping_key=store.ping_key, slug="adhoc", create=True),
                            Ping(kind=PingKind.START, at=T0))
    report = await store.sync_config({}, T0)
    assert report.archived == []
    adhoc = await store.check("adhoc")
    assert adhoc is not None and not adhoc.archived


async def test_config_sync_and_history_survive_reopening(db_location: Path | str) -> None:
    store = new_store(db_location)
    await store.open()
    check = await add_check(store, "a")
    await store.record_ping(*ping_of(check, PingKind.START))
    await store.close()

    store = new_store(db_location)
    await store.open()
    try:
        again = await store.check("a")
        assert again is not None and again.uuid == check.uuid
        assert store.resolve(PingRequest(kind=PingKind.SUCCESS, uuid=check.uuid)) is not None
        result = await store.record_ping(*ping_of(check, PingKind.SUCCESS, T0 + timedelta(minutes=3)))
        assert result.applied is not None and result.applied.run is not None
        assert result.applied.run.state is RunState.OK  # the run opened before the restart was closed
        assert await count(store, "runs", check) == 1
        report = await store.sync_config({"a": check.spec}, T0)
        assert (report.created, report.updated) == ([], [])
    finally:
        await store.close()


async def test_reopening_reads_only_the_open_runs_through_their_index_oldest_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "hw.db")
    await store.open()
    check = await add_check(store, "a")
    for i in range(3):
        await store.record_ping(*ping_of(check, PingKind.START, T0 + timedelta(minutes=i), rid=f"r{i}"))
    await store.record_ping(*ping_of(check, PingKind.SUCCESS, T0 + timedelta(minutes=5), rid="r1"))
    await store.close()
    with sqlite3.connect(tmp_path / "hw.db") as conn:
        # A walk of the whole runs table (ORDER BY id did that) filled the writer's page cache at every start.
        plan = " ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {OPEN_RUNS}"))
    conn.close()
    assert "runs_open" in plan, plan

    store = Store(tmp_path / "hw.db")
    await store.open()
    try:
        assert [r.rid for r in store.open_runs(check.id)] == ["r0", "r2"]
    finally:
        await store.close()


async def test_a_spec_stored_before_a_setting_existed_is_respelled_once_not_updated(tmp_path: Path) -> None:
    spec = CheckSpec(slug="old", schedule="0 2 * * *")
    store = Store(tmp_path / "hw.db")
    await store.open(specs={"old": spec})
    await store.sync_config({"old": spec}, T0)
    await store.close()
    with sqlite3.connect(tmp_path / "hw.db") as conn:  # as a version without `description` wrote it
        text = json.loads(conn.execute("SELECT spec FROM checks").fetchone()[0])
        del text["description"]
        conn.execute("UPDATE checks SET spec = ?", (json.dumps(text, separators=(",", ":")),))
    conn.close()

    store = Store(tmp_path / "hw.db")
    await store.open(specs={"old": spec})
    try:
        report = await store.sync_config({"old": spec}, T0)
        assert (report.created, report.updated) == ([], [])  # the same settings: no change, no new expectation
        rows = await store.reader.execute_fetchall("SELECT spec FROM checks")
        assert [r[0] for r in rows] == [codec.spec_to_json(spec)]
    finally:
        await store.close()


# --- ping key ----------------------------------------------------------------------------------------------------


async def test_ping_key_is_generated_once_and_kept_across_reopen(new_db: Callable[[], Path | str]) -> None:
    path = new_db()
    store = new_store(path)
    await store.open()
    key = store.ping_key
    await store.close()
    assert len(key) >= 16

    store = new_store(path)
    await store.open()
    assert store.ping_key == key
    await store.close()

    other = new_store(new_db())
    await other.open()
    assert other.ping_key != key  # unguessable: not a constant
    await other.close()


async def test_configured_ping_key_wins_and_is_remembered(db_location: Path | str) -> None:
    path = db_location
    store = new_store(path)
    await store.open()
    await store.close()

    store = new_store(path)
    await store.open("configured-key")
    assert store.ping_key == "configured-key"
    await store.close()

    store = new_store(path)
    await store.open()
    assert store.ping_key == "configured-key"
    await store.close()


# --- start-up at scale: bulk creation, specs shared with the config ------------------------------------------------


def test_new_uuids_are_random_version_4_uuids_in_the_usual_text_form() -> None:
    made = new_uuids(2000)
    assert len(set(made)) == 2000 and new_uuids(0) == []
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text


async def test_a_sync_creating_many_checks_indexes_each_in_config_order(store: Store) -> None:
    first = (await store.record_ping(PingRequest(kind=PingKind.START, slug="by-ping", ping_key=store.ping_key,
                                                 create=True), Ping(kind=PingKind.START, at=T0))).check
    assert first is not None
    specs = {f"c{i:04d}": CheckSpec(slug=f"c{i:04d}", period=timedelta(minutes=i + 1)) for i in range(1500)}
    seen: list[list[int]] = []
    on_changed = store.book.on_checks_changed

    def observed(conn: Any, checks: list[Any], now: datetime, expect: bool = True) -> None:
        seen.append([c.id for c in checks])
        on_changed(conn, checks, now, expect)

    store.book.on_checks_changed = observed  # type: ignore[method-assign]
    report = await store.sync_config(dict(reversed(specs.items())), T0)
    assert report.created == list(reversed(specs))
    rows = await query(store, "SELECT id, slug, uuid FROM checks ORDER BY id")
    assert [r[1] for r in rows] == ["by-ping", *reversed(specs)]
    assert [r[0] for r in rows] == list(range(first.id, first.id + 1501))
    assert seen == [[r[0] for r in rows[1:]]]  # the watch book is told once for the whole creation
    for check_id, slug, text in rows:
        assert store.resolve(PingRequest(kind=PingKind.START, uuid=text)) == store.check_by_id(check_id)
        assert (await store.check(slug)) == store.check_by_id(check_id)


async def test_reopening_with_the_config_shares_its_specs_and_still_sees_a_change(
        db_location: Path | str) -> None:
    old = {"same": CheckSpec(slug="same", schedule="0 2 * * *", tags=("a",)),
           "edited": CheckSpec(slug="edited", period=timedelta(hours=1))}
    store = new_store(db_location)
    await store.open(None, old)
    await store.sync_config(old, T0)
    await store.close()

    new = {"same": CheckSpec(slug="same", schedule="0 2 * * *", tags=("a",)),
           "edited": CheckSpec(slug="edited", period=timedelta(hours=2))}
    store = new_store(db_location)
    await store.open(None, new)
    try:
        same, edited = (await store.check("same")), (await store.check("edited"))
        assert same is not None and edited is not None
        assert store.check_by_id(same.id).spec is new["same"]  # type: ignore[union-attr]
        assert store.check_by_id(edited.id).spec == old["edited"]  # type: ignore[union-attr]  # what is stored
        report = await store.sync_config(new, T0)
        assert (report.created, report.updated) == ([], ["edited"])
        assert (await store.check("edited")).spec == new["edited"]  # type: ignore[union-attr]
    finally:
        await store.close()


@pytest.mark.parametrize("spec", [
    CheckSpec(slug="plain"),
    CheckSpec(slug="cron", name='Nightly "backup" ü \\ \n\x01 \u2028', schedule="30 2 * * 1-5",
              timezone="Europe/Berlin", start_grace=timedelta(seconds=90), max_runtime=timedelta(hours=2),
              min_runtime=timedelta(seconds=30), steps=(StepSpec("dump"), StepSpec("up:load", timedelta(minutes=45))),
              strict_steps=True, alert_after=3, alerts=("ntfy://x/y", "json://a?b=c"), tags=("db", "prod", ""),
              recover_after=2, remind_every=timedelta(hours=6), methods=("POST",), fail_keywords=("ERROR",),
              resume_on_ping=True, maintenance=("Sat 02:00-04:00",), description="pg_dump, then S3",
              depends_on=("router", "nas")),
    CheckSpec(slug="after", after="nightly-backup"),
    CheckSpec(slug="period", period=timedelta(days=1, microseconds=500), start_grace=timedelta(0)),
])
def test_a_spec_is_stored_as_json_dumps_writes_it_and_read_back_equal(spec: CheckSpec) -> None:
    secs = lambda d: None if d is None else d.total_seconds()  # noqa: E731
    expected = json.dumps({
        "name": spec.name, "schedule": spec.schedule, "period": secs(spec.period), "timezone": spec.timezone,
        "start_grace": secs(spec.start_grace), "max_runtime": secs(spec.max_runtime),
        "min_runtime": secs(spec.min_runtime), "steps": [{"name": s.name, "max": secs(s.max)} for s in spec.steps],
        "strict_steps": spec.strict_steps, "alert_after": spec.alert_after, "alerts": list(spec.alerts),
        "tags": list(spec.tags), "recover_after": spec.recover_after, "remind_every": secs(spec.remind_every),
        "methods": list(spec.methods), "fail_keywords": list(spec.fail_keywords),
        "resume_on_ping": spec.resume_on_ping, "maintenance": list(spec.maintenance),
        "description": spec.description, "depends_on": list(spec.depends_on), "after": spec.after},
        separators=(",", ":"))
    assert codec.spec_to_json(spec) == expected
    assert codec.spec_from_json(spec.slug, expected) == spec


_AT = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC)


@pytest.mark.parametrize("marks", [
    [],
    [StepMark("dump", _AT)],
    [StepMark("dump", _AT), StepMark('up:lo"ad\\ü', _AT + timedelta(seconds=1.5),
                                    (RunFlag.OUT_OF_ORDER, RunFlag.UNDECLARED_STEP))],
])
def test_steps_are_stored_as_json_dumps_writes_them_and_read_back_equal(marks: list[StepMark]) -> None:
    expected = json.dumps([{"name": m.name, "at": m.at.timestamp(), "flags": list(m.flags)} for m in marks],
                          separators=(",", ":"))
    assert codec.steps_to_json(marks) == expected
    assert codec.steps_from_json(expected) == marks


@pytest.mark.parametrize("watch", [
    Watch(good_streak=3, since=Since(good=3)),
    Watch(expected_at=_AT, down_since=_AT, bad_streak=2, trouble=Trouble("failed", 3, 'up"load'),
          told=Trouble("timed_out", None, None), recent=(_AT, _AT + timedelta(minutes=1.25)),
          since=Since(bad=1, missed=4, good=0, late=2, held=5, last=Trouble("missed"), last_at=_AT)),
    Watch(released_at=_AT, parent_run=42, parent_failed=True),
])
def test_a_watch_memory_is_stored_as_json_dumps_writes_it_and_read_back_equal(watch: Watch) -> None:
    s = watch.since
    key = lambda t: t.key if t else None  # noqa: E731
    expected = json.dumps({"g": watch.good_streak, "t": key(watch.trouble), "o": key(watch.told), "s": {
        "bad": s.bad, "missed": s.missed, "good": s.good, "late": s.late, "held": s.held, "last": key(s.last),
        "last_at": s.last_at.timestamp() if s.last_at else None}, "r": [t.timestamp() for t in watch.recent],
        "u": watch.released_at.timestamp() if watch.released_at else None, "pr": watch.parent_run,
        "pf": watch.parent_failed or None}, separators=(",", ":"))
    values = codec.watch_values(watch)
    assert values[-1] == expected
    assert codec.watch_from_row(values) == watch
