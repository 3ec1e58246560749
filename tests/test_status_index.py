"""The overview's status index (store/status_index.py): the statuses and counts a page shows are what
check_status works out from each check's snapshot, whatever way the check got there (pings, deadlines, pause and
resume, archive, a config reload, a rollback), on both stores; and its pages are the slices of that order."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from heartwatch.core.model import Check, CheckSpec, CheckStatus, Ping, PingKind, RunState
from heartwatch.core.pings import PingRequest
from heartwatch.core.status import SEVERITY, check_status
from heartwatch.store.base import StatusLines
from heartwatch.store.choose import new_store
from heartwatch.store.sqlite import Store
from heartwatch.store.status_index import Filter, StatusIndex, page_of_lines

T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def specs(*extra: str, renamed: str = "") -> dict[str, CheckSpec]:
    base = {
        "backup": CheckSpec(slug="backup", name="Backup", period=HOUR, start_grace=timedelta(minutes=10),
                            tags=("db",)),
        "report": CheckSpec(slug="report", period=HOUR, start_grace=timedelta(minutes=10), tags=("web", "db")),
        "sync": CheckSpec(slug="sync", name=renamed or "Zeta sync", period=HOUR, start_grace=timedelta(minutes=5)),
        "nightly": CheckSpec(slug="nightly", schedule="0 3 * * *"),
        "idle": CheckSpec(slug="idle"),
        "flaky": CheckSpec(slug="flaky", recover_after=2),
    }
    base.update({s: CheckSpec(slug=s, period=HOUR) for s in extra})
    return base


async def ping(store: Store, slug: str, kind: PingKind, at: datetime) -> None:
    check = await store.check(slug)
    assert check is not None
    await store.record_ping(PingRequest(kind=kind, uuid=check.uuid), Ping(kind=kind, at=at))


async def run(store: Store, slug: str, at: datetime, end: PingKind = PingKind.SUCCESS) -> None:
    await ping(store, slug, PingKind.START, at)
    await ping(store, slug, end, at + timedelta(minutes=1))


async def due(store: Store, now: datetime) -> None:
    """What the scheduler does when deadlines pass: evaluate the checks whose deadline is due."""
    ids = await store.due_checks(now)
    if ids:
        await store.evaluate(ids, now)


async def agrees(store: Store, now: datetime) -> dict[str, CheckStatus]:
    """The overview's statuses, counts and order are check_status's over every live check's snapshot."""
    snaps = await store.snapshots()
    expected = {s.check.id: check_status(s.check, s.last_run, now, s.watch) for s in snaps}
    page = await store.status_page(now, None, 1, 1000)
    assert {cid: status for status, cid in page.rows} == expected
    assert page.counts == {s: Counter(expected.values())[s] for s in SEVERITY}
    assert page.total == page.matched == len(expected)
    names = {s.check.id: s.check.spec.display_name.lower() for s in snaps}
    assert [cid for _, cid in page.rows] == sorted(expected, key=lambda c: (SEVERITY[expected[c]], names[c], c))
    assert page.tags == sorted({t for s in snaps for t in s.check.spec.tags})
    # The same page as a store without a writer works it out, from every check's line.
    lines = page_of_lines(await store.status_lines(now), now, None, 1, 1000, Filter())
    assert lines == page
    return {s.check.slug: expected[s.check.id] for s in snaps}


async def test_the_overview_follows_pings_deadlines_pauses_archives_and_reloads(store: Store) -> None:
    await store.sync_config(specs(), T0)
    assert set((await agrees(store, T0)).values()) == {CheckStatus.NEW}  # builds the index
    await run(store, "backup", T0)
    await run(store, "report", T0, PingKind.FAIL)
    await run(store, "sync", T0)
    await ping(store, "nightly", PingKind.START, T0 + timedelta(minutes=5))
    now = T0 + timedelta(minutes=10)
    assert await agrees(store, now) == {"backup": CheckStatus.UP, "report": CheckStatus.DOWN, "sync": CheckStatus.UP,
                                        "nightly": CheckStatus.RUNNING, "idle": CheckStatus.NEW,
                                        "flaky": CheckStatus.NEW}
    # An hour on: backup and sync are expected, inside their grace: late (read with the clock, not written).
    now = T0 + HOUR + timedelta(minutes=3)
    await due(store, now)
    statuses = await agrees(store, now)
    assert statuses["backup"] is statuses["sync"] is CheckStatus.LATE
    # Past sync's grace the scheduler records a missed run: down.
    now = T0 + HOUR + timedelta(minutes=7)
    await due(store, now)
    statuses = await agrees(store, now)
    assert (statuses["backup"], statuses["sync"]) == (CheckStatus.LATE, CheckStatus.DOWN)
    # A good run after a failure: still down while the watch waits for a second one (recover_after = 2).
    await run(store, "flaky", now, PingKind.FAIL)
    await run(store, "flaky", now + timedelta(minutes=1))
    assert (await agrees(store, now))["flaky"] is CheckStatus.DOWN
    await run(store, "flaky", now + timedelta(minutes=2))
    assert (await agrees(store, now))["flaky"] is CheckStatus.UP
    # Pause and resume.
    assert await store.set_paused("backup", True, now) is not None
    assert (await agrees(store, now))["backup"] is CheckStatus.PAUSED
    assert await store.set_paused("backup", False, now) is not None
    await agrees(store, now)
    # A good run brings the failed check back up; a config reload renames one, drops one and adds one.
    await run(store, "report", now)
    now += timedelta(minutes=2)
    await store.sync_config({k: v for k, v in specs("fresh", renamed="Alpha sync").items() if k != "idle"}, now)
    statuses = await agrees(store, now)
    assert "idle" not in statuses and statuses["fresh"] is CheckStatus.NEW and statuses["report"] is CheckStatus.UP
    # An archived check comes back with its history: its status with it.
    await store.sync_config(specs(), now)
    assert (await agrees(store, now))["idle"] is CheckStatus.NEW
    # A late finish of an older run does not change what the newest run says.
    await ping(store, "nightly", PingKind.START, now)
    await agrees(store, now)


async def test_the_index_is_built_again_after_a_rollback(store: Store) -> None:
    await store.sync_config(specs(), T0)
    await agrees(store, T0)

    def fails(conn: object) -> None:
        raise RuntimeError("rolled back")

    await run(store, "backup", T0)
    with pytest.raises(RuntimeError):
        await store.writer.submit(fails)
    assert (await agrees(store, T0 + timedelta(minutes=5)))["backup"] is CheckStatus.UP
    await run(store, "sync", T0 + timedelta(minutes=5), PingKind.FAIL)
    assert (await agrees(store, T0 + timedelta(minutes=10)))["sync"] is CheckStatus.DOWN


def check(cid: int, name: str, paused: bool = False) -> Check:
    return Check(id=cid, uuid=f"u{cid}", spec=CheckSpec(slug=f"c{cid}", name=name), paused=paused, created_at=T0)


def test_a_page_is_a_slice_of_the_order_with_late_checks_moved_ahead() -> None:
    index = StatusIndex()
    checks = [check(i, f"Job {i:03}") for i in range(1, 201)]
    # Odd checks ran well (up); 7 is running, 9 failed; the rest never ran (new).
    newest = [(i, 1000 + i, RunState.OK.value) for i in range(1, 201, 2)]
    newest[3] = (7, 1007, RunState.RUNNING.value)
    newest[4] = (9, 1009, RunState.FAILED.value)
    index.build(checks, newest, down=[])
    late = [3, 4, 11, 150, 7]  # 7 is running: lateness does not show
    everything = index.page(late, None, 1, 1000)
    order = [cid for _, cid in everything.rows]
    assert order[:5] == [9, 3, 4, 11, 150] and order[5] == 7
    assert everything.counts[CheckStatus.LATE] == 4 and everything.counts[CheckStatus.UP] == 100 - 2 - 2
    for size in (1, 7, 50, 64):
        pages = -(-everything.matched // size)
        sliced = [row for p in range(1, pages + 1) for row in index.page(late, None, p, size).rows]
        assert sliced == everything.rows, size
    # A page past the end is the last one; a status filter is that status's part of the order.
    assert index.page(late, None, 99, 50).page == 4
    ups = index.page(late, CheckStatus.UP, 2, 10)
    assert [cid for _, cid in ups.rows] == [cid for s, cid in everything.rows if s is CheckStatus.UP][10:20]
    assert ups.matched == 96
    # Changes the writer tells it move a check between statuses.
    index.put_run(4, 2000, RunState.RUNNING)
    index.put_run(9, 900, RunState.OK)  # older than its newest run: no change
    index.put_down(1, True)
    index.put_check(check(2, "Aardvark", paused=True))
    index.put_check(Check(id=5, uuid="u5", spec=CheckSpec(slug="c5"), archived=True, created_at=T0))
    after = index.page([], None, 1, 1000)
    status = {cid: s for s, cid in after.rows}
    assert (status[4], status[9], status[1], status[2]) == (CheckStatus.RUNNING, CheckStatus.DOWN, CheckStatus.DOWN,
                                                            CheckStatus.PAUSED)
    assert 5 not in status and after.total == 199
    # A filter looks at the checks of the statuses shown.
    found = index.page([], None, 1, 50, keep=lambda cid: cid % 10 == 0)
    assert found.matched == 20 and all(cid % 10 == 0 for _, cid in found.rows)
    # Emptied (the writer reads its state again): no page until it is built again, never an empty one.
    index.forget()
    assert index.page([], None, 1, 50) is None
    index.put_run(4, 3000, RunState.OK)  # ignored until built
    assert not index.built


def test_a_store_without_a_writer_pages_from_the_lines() -> None:
    lines = StatusLines([(1, "b", ("x",), False, RunState.OK, "b"), (2, "A", (), False, None, "a"),
                         (3, "c", ("x", "y"), True, RunState.FAILED, "c")],
                        {1: (T0 - HOUR, T0 + HOUR)})
    page = page_of_lines(lines, T0, None, 1, 50, Filter())
    assert page.rows == [(CheckStatus.LATE, 1), (CheckStatus.NEW, 2), (CheckStatus.PAUSED, 3)]
    assert page.tags == ["x", "y"]
    tagged = page_of_lines(lines, T0, None, 1, 50, Filter(tag="x"))
    assert tagged.rows == [(CheckStatus.LATE, 1), (CheckStatus.PAUSED, 3)] and tagged.counts == page.counts


async def test_two_processes_on_postgresql_see_each_others_changes(db_location: Path | str) -> None:
    if isinstance(db_location, Path):
        pytest.skip("two processes share a database on PostgreSQL only")
    first, second = new_store(db_location), new_store(db_location)
    await first.open()
    await second.open()
    try:
        await first.sync_config(specs(), T0)
        await second.sync_config(specs(), T0)
        assert (await agrees(first, T0))["backup"] is CheckStatus.NEW  # the first builds its index
        await run(second, "backup", T0, PingKind.FAIL)  # the second writes
        assert (await agrees(first, T0 + timedelta(minutes=5)))["backup"] is CheckStatus.DOWN
    finally:
        await second.close()
        await first.close()
