"""The watch book: each check's watch (expectation, alert memory, next deadline), kept on the writer thread.

The store calls it inside the transaction of every change: a ping (`on_ping`, after `runs.apply_ping`), a
check created or changed (`on_checks_changed`), deadlines that fell due (`evaluate`). Each asks the pure
decision in heartwatch.core.watching what the change means, then writes the runs it timed out or folded,
the alerts (heartwatch.store.outbox) and the watch row with its `next_deadline`, all in that transaction.

The cache: check id -> (watch, its stored next_deadline), or None for a check without a row; so a ping
reads no row and writes one only when something moved. Rows are read as their checks are first touched
(a restart with 100,000 checks reads none up front) and forgotten after a rollback.

Dependencies (heartwatch.core.dependencies): a check's context holds its alerts back while a `depends_on`
parent is down, paused or in maintenance, and names the checks depending on it for its down alerts. When a
check recovers, is resumed or changes, its children's rows are written again in the same transaction (their
held alerts fall due at the end of their grace); when one of its runs ends, each `after` child's expectation
is set from it, also in that transaction. Nothing polls.

One check whose decision raises (a time zone gone from tzdata, a corrupt row) is logged once with its slug
and set aside (no deadline) until its next change; the others go on.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from heartwatch.core import dependencies, maintenance, schedule, watching
from heartwatch.core.dependencies import ParentState
from heartwatch.core.model import Check, Ping, Run, RunState, Watch
from heartwatch.core.runs import Applied
from heartwatch.core.watching import Context, Decision, Hold
from heartwatch.store import codec, outbox
from heartwatch.store.outbox import AlertPolicy

log = logging.getLogger("heartwatch.store.watches")

#: Alerts logged one line each per evaluation pass: a burst of thousands (after an outage) would flood the
#: log and slow the writer; the outbox and the status page have every one.
LOGGED_PER_PASS = 20
_UNREAD = object()  # not in the cache: not read yet
#: An upsert rather than INSERT OR REPLACE: an existing row is updated in place instead of deleted and
#: inserted again (with its index entries), a third less work per write.
_COLUMNS = [*codec.WATCH_COLUMNS.split(", "), "next_deadline"]
_SAVE_WATCH = (f"INSERT INTO watches (check_id, {', '.join(_COLUMNS)}) VALUES ({', '.join('?' * (len(_COLUMNS) + 1))})"
               f" ON CONFLICT (check_id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _COLUMNS)}")


class WatchBook:
    def __init__(self, open_runs: Callable[[int], list[Run]], save_run: Callable[[sqlite3.Connection, Run], None],
                 policy: AlertPolicy, check_by_slug: Callable[[str], Check | None] = lambda _: None,
                 children_of: Callable[[str], list[Check]] = lambda _: [],
                 on_down: Callable[[int, bool], None] = lambda _, __: None) -> None:
        self._open_runs, self._save_run = open_runs, save_run
        self._on_down = on_down  # told whether each watch written holds its check down (the status index)
        self._check_by_slug, self._children_of = check_by_slug, children_of
        self.policy = policy
        self._watches: dict[int, tuple[Watch, float | None] | None] = {}
        # A check id above this that is not in the cache has no row, so a check created now costs no read: the
        # largest id with a row when the cache was (re)started, moved up past rows written but not cached.
        self._stored_max: int | None = None
        self._set_aside: set[int] = set()
        # Read on the loop after a commit: hints, so a stale read only costs a wake-up.
        self.earliest_written: float | None = None
        self.alerts_written = 0
        self._logged = 0

    def forget(self) -> None:
        """After a rollback the cache may hold what was rolled back: read again from disk as needed."""
        self._watches = {}
        self._stored_max = None

    # --- the cache -----------------------------------------------------------------------------------------

    def _stored_max_id(self, conn: sqlite3.Connection) -> int:
        if self._stored_max is None:
            self._stored_max = int(conn.execute("SELECT COALESCE(MAX(check_id), 0) FROM watches").fetchone()[0])
        return self._stored_max

    def read(self, conn: sqlite3.Connection, check_ids: list[int]) -> None:
        """Bring the watches of `check_ids` into the cache (those not there yet), a few hundred per query."""
        stored_max = self._stored_max_id(conn)
        unread = [i for i in check_ids if i not in self._watches]
        for check_id in unread:
            self._watches[check_id] = None  # until a row below says otherwise
        unread = [i for i in unread if i <= stored_max]
        n = len(_COLUMNS)
        for k in range(0, len(unread), 500):
            chunk = unread[k:k + 500]
            rows = conn.execute(f"SELECT check_id, {', '.join(_COLUMNS)} FROM watches"
                                f" WHERE check_id IN ({', '.join('?' * len(chunk))})", chunk)
            for r in rows:
                try:
                    self._watches[r[0]] = (codec.watch_from_row(r[1:n]), r[n])
                except Exception:  # a corrupt row: that check is set aside, the others are read
                    self._watches.pop(r[0], None)
                    self._set_aside_once(r[0], None, "its watch row could not be read")

    def get(self, conn: sqlite3.Connection, check_id: int) -> Watch | None:
        try:
            entry = self._watches[check_id]
        except KeyError:
            if self._stored_max is not None and check_id > self._stored_max:
                entry = self._watches[check_id] = None  # a check created since: no row
            else:
                self.read(conn, [check_id])
                entry = self._watches.get(check_id)
        return entry[0] if entry else None

    def context(self, conn: sqlite3.Connection, check: Check, now: datetime) -> Context:
        """What holds the check's alerts back, how often it reminds, and who depends on it."""
        remind = watching.resolve_remind_every(check.spec, self.policy.remind_every)
        children = self._children_of(check.slug)
        dependents = tuple(c.spec.display_name for c in children if check.slug in c.spec.depends_on) if children else ()
        if check.paused or check.archived:
            return Context(remind, Hold.PAUSED, muted=check.muted, dependents=dependents)
        end = _maintenance_end(check, now)
        if end is not None:
            return Context(remind, Hold.MAINTENANCE, end, muted=check.muted, dependents=dependents)
        if check.spec.depends_on:
            waiting, until = dependencies.waiting_on(check.spec, self.parent_states(conn, check, now), now)
            if waiting:
                return Context(remind, Hold.PARENT, until, muted=check.muted, waiting_on=waiting,
                               dependents=dependents)
        return Context(remind, muted=check.muted, dependents=dependents)

    def parent_states(self, conn: sqlite3.Connection, check: Check, now: datetime) -> dict[str, ParentState]:
        """What the check's depends_on parents are at `now` (live ones only)."""
        states: dict[str, ParentState] = {}
        for slug in check.spec.depends_on:
            parent = self._check_by_slug(slug)
            if parent is None or parent.archived:
                continue
            states[slug] = dependencies.parent_state(parent, self.get(conn, parent.id), now)
        return states

    def _tell_children(self, conn: sqlite3.Connection, check: Check, ended: list[Run], now: datetime) -> None:
        """After `check` changed in this transaction: each `after` child expects its start from the runs that
        ended (the last of them), and every child's row is written again with what now holds it back."""
        for child in self._children_of(check.slug):
            try:
                watch = self.get(conn, child.id)
                if child.spec.after == check.slug and ended:
                    watch = watching.after_parent_run(child.spec, watch or watching.fresh_watch(child.spec, now),
                                                      ended[-1])
                if watch is not None:  # what is still true goes out now if nothing holds it any more
                    ctx = self.context(conn, child, now)
                    decision = watching.on_change(child.spec, watch, now, ctx, expect=False)
                    self._write(conn, child, decision, b"")
                    self.save(conn, child, decision.watch, ctx)
            except Exception:  # the parent's change stands; this child waits for its own next change
                self._set_aside_once(child.id, child.slug, "its parent's change could not be evaluated")

    def _row(self, check: Check, watch: Watch, ctx: Context) -> tuple[Any, ...] | None:
        """The watches row to write (the cache updated), or None when nothing moved."""
        if check.paused or check.archived:
            deadline = None
        else:
            runs = self._open_runs(check.id)
            deadline = codec.to_ts(watching.next_deadline(watch, [r.deadline for r in runs], ctx))
        if self._watches.get(check.id) == (watch, deadline):
            return None  # most pings move nothing: skip the write
        self._watches[check.id] = (watch, deadline)
        self._on_down(check.id, watch.down_since is not None)
        return self._new_row(check.id, watch, deadline)

    def _new_row(self, check_id: int, watch: Watch, deadline: float | None) -> tuple[Any, ...]:
        if deadline is not None and (self.earliest_written is None or deadline < self.earliest_written):
            self.earliest_written = deadline
        return (check_id, *codec.watch_values(watch), deadline)

    def save(self, conn: sqlite3.Connection, check: Check, watch: Watch, ctx: Context) -> None:
        row = self._row(check, watch, ctx)
        if row is not None:
            conn.execute(_SAVE_WATCH, row)

    @staticmethod
    def place_deadlines(check: Check, runs: list[Run]) -> bool:
        """Before a ping's runs are written: give each its deadline, so the run's one write carries it (a second
        UPDATE per start and finish was a fifth of the ping's statements). Returns whether any moved."""
        moved = False
        for run in runs:
            deadline = schedule.run_deadline(check.spec, run) if run.ended_at is None else None
            if deadline != run.deadline:
                run.deadline = deadline
                moved = True
        return moved

    def set_deadline(self, conn: sqlite3.Connection, check: Check, run: Run) -> bool:
        """Keep a run's stored deadline in step with its steps; written only when it moved (returns whether)."""
        deadline = schedule.run_deadline(check.spec, run) if run.ended_at is None else None
        if deadline == run.deadline:
            return False
        run.deadline = deadline
        conn.execute("UPDATE runs SET deadline = ? WHERE id = ?", (codec.to_ts(deadline), run.id))
        return True

    # --- the three ways a check changes ------------------------------------------------------------------------

    def on_checks_changed(self, conn: sqlite3.Connection, checks: list[Check], now: datetime,
                          expect: bool = True) -> None:
        """Created, changed, paused, resumed, muted or archived checks: expect the next start from `now`
        (unless `expect` is False: a pause, a mute), and say once what is still true if nothing holds it."""
        rows: list[tuple[Any, ...]] = []
        stored_max = newest = self._stored_max_id(conn)
        new_rows: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # a new check's row but its id, by what decides it
        for check in checks:
            self._set_aside.discard(check.id)
            cached = self._watches.get(check.id, _UNREAD)
            if ((cached is None or (cached is _UNREAD and check.id > stored_max))
                    and not (check.paused or check.archived) and not self._open_runs(check.id)):
                # Known to have no row (a first start creates 100,000 such checks): the row is written but not
                # kept here; _stored_max moves past it below, so its first ping reads the row back.
                self._watches.pop(check.id, None)
                spec = check.spec
                key = (spec.schedule, spec.period, spec.timezone, spec.start_grace)
                tail = new_rows.get(key)
                if tail is None:
                    try:
                        watch = watching.fresh_watch(spec, now)
                    except Exception:  # a zone gone from tzdata: this check waits, the others are created
                        self._set_aside_once(check.id, check.slug, "its schedule could not be evaluated")
                        continue
                    tail = new_rows[key] = self._new_row(0, watch, codec.to_ts(watching.next_deadline(watch, [])))[1:]
                rows.append((check.id, *tail))
                newest = max(newest, check.id)
                continue
            try:
                ctx = self.context(conn, check, now)
                previous = self.get(conn, check.id)
                decision = watching.on_change(check.spec, previous or Watch(), now, ctx,
                                              expect=expect or previous is None)
            except Exception:
                self._set_aside_once(check.id, check.slug, "a change of the check could not be evaluated")
                continue
            for run in self._open_runs(check.id):
                self.set_deadline(conn, check, run)
            self._write(conn, check, decision, b"")
            row = self._row(check, decision.watch, ctx)
            if row is not None:
                rows.append(row)
        conn.executemany(_SAVE_WATCH, rows)  # one statement for all
        self._stored_max = newest
        for check in checks:  # a parent paused, resumed, changed or archived: its children see it now
            if self._children_of(check.slug):
                self._tell_children(conn, check, [], now)

    def on_ping(self, conn: sqlite3.Connection, check: Check, ping: Ping, applied: Applied, moved: bool) -> None:
        """What a ping's changes mean for the check's alerts: decided by watching.after_ping, written here.

        `moved`: whether the ping moved a run's deadline (place_deadlines, before the runs were written)."""
        if not moved and applied.opened is None and not applied.closed and not applied.late:
            return  # a step that moved no deadline (most pings): nothing for the watch to decide
        now = ping.at
        try:
            ctx = self.context(conn, check, now)
            watch = self.get(conn, check.id) or watching.fresh_watch(check.spec, now)
            decision = watching.after_ping(check.spec, watch, applied.opened, applied.closed, now, ctx)
        except Exception:  # the ping is stored all the same; this check's alerts wait for its next change
            self._set_aside_once(check.id, check.slug, "a ping could not be evaluated")
            return
        self._set_aside.discard(check.id)
        if applied.late:
            w = decision.watch
            w.since = replace(w.since, late=w.since.late + len(applied.late))
        self._write(conn, check, decision, ping.body)
        self.save(conn, check, decision.watch, ctx)
        if decision.recovered or applied.closed:
            self._tell_children(conn, check, [r for r in applied.closed if r.ended_at is not None], now)

    def evaluate(self, conn: sqlite3.Connection, checks: list[Check], now: datetime) -> int:
        """Everything due by `now` for `checks` (one transaction); returns the number of alerts written."""
        alerts = 0
        self._logged = 0
        self.read(conn, [c.id for c in checks])
        for check in checks:
            try:
                watch = self.get(conn, check.id)
                if watch is None:
                    continue
                ctx = self.context(conn, check, now)
                newest = None
                if watch.down_since is not None and watch.start_deadline is not None and watch.start_deadline <= now:
                    newest = self._newest_run(conn, check.id)  # a further missed start may fold into it
                decision = watching.on_due(check.id, check.spec, watch, list(self._open_runs(check.id)), now, ctx,
                                           newest)
            except Exception:
                self._set_aside_once(check.id, check.slug, "its deadline could not be evaluated")
                self._drop_deadline(conn, check.id)
                continue
            for run in decision.runs:
                run.deadline = schedule.run_deadline(check.spec, run) if run.ended_at is None else None
                self._save_run(conn, run)
            timed_out = [r.id for r in decision.runs if r.id is not None and r.state.value == "timed_out"]
            self._write(conn, check, decision, outbox.last_output(conn, timed_out[0]) if timed_out else b"")
            self.save(conn, check, decision.watch, ctx)
            ended = [r for r in decision.runs if r.state is not RunState.RUNNING]
            if decision.recovered or ended:
                self._tell_children(conn, check, ended, now)
            alerts += len(decision.alerts)
        return alerts

    def rebase(self, conn: sqlite3.Connection, checks: list[Check], now: datetime) -> None:
        """The clock stepped back: every check's next expectation from the new `now` (its alert memory kept),
        and a down_since or reminder ahead of `now` brought back to it."""
        self.read(conn, [c.id for c in checks])
        for check in checks:
            watch = self.get(conn, check.id)
            if watch is None or check.archived:
                continue
            w = watching.fresh_watch(check.spec, now, watch)
            if w.down_since is not None and w.down_since > now:
                w.down_since = now
            ctx = self.context(conn, check, now)
            if w.next_reminder is not None and w.next_reminder > now + ctx.remind_every:
                w.next_reminder = now + ctx.remind_every
            w.recent = tuple(t for t in w.recent if t <= now)
            for run in self._open_runs(check.id):
                self.set_deadline(conn, check, run)
            self.save(conn, check, w, ctx)

    # --- helpers -----------------------------------------------------------------------------------------------

    def _write(self, conn: sqlite3.Connection, check: Check, decision: Decision, output: bytes) -> None:
        if decision.recovered and check.muted:  # a mute lasts until the check recovers
            conn.execute("UPDATE checks SET muted = 0 WHERE id = ?", (check.id,))
            check.muted = False
        if not decision.alerts:
            return
        for title in outbox.write_alerts(conn, self.policy, check, decision.alerts, output):
            self.alerts_written += 1
            self._logged += 1
            if self._logged <= LOGGED_PER_PASS:
                log.info("alert: %s", title)
            elif self._logged == LOGGED_PER_PASS + 1:
                log.info("more alerts in this pass are not logged one by one: see the status page or the API")

    def _newest_run(self, conn: sqlite3.Connection, check_id: int) -> Run | None:
        row = conn.execute(f"SELECT {codec.RUN_COLUMNS} FROM runs WHERE check_id = ? ORDER BY id DESC LIMIT 1",
                           (check_id,)).fetchone()
        return codec.run_from_row(row) if row else None

    def _drop_deadline(self, conn: sqlite3.Connection, check_id: int) -> None:
        conn.execute("UPDATE watches SET next_deadline = NULL WHERE check_id = ?", (check_id,))
        entry = self._watches.get(check_id)
        if entry:
            self._watches[check_id] = (entry[0], None)

    def _set_aside_once(self, check_id: int, slug: str | None, what: str) -> None:
        if check_id in self._set_aside:
            return
        self._set_aside.add(check_id)
        log.exception("check %s set aside until its next change: %s; the other checks go on",
                      slug or f"#{check_id}", what)


def _maintenance_end(check: Check, now: datetime) -> datetime | None:
    """The end of the maintenance hold open at `now` (one-off or a recurring window), or None."""
    ends = [t for t in (check.maintenance_until,
                        maintenance.window_end(check.spec.maintenance, check.spec.timezone, now)) if t and t > now]
    return max(ends) if ends else None
