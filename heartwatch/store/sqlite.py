"""The store: heartwatch's state in SQLite. Writes go through the one Writer; reads use their own connection.

It owns the schema (via migrations), the in-memory index of checks used to resolve pings without a
query, and the write operations that persist what the pure domain functions decide.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import aiosqlite

from heartwatch.core import dependencies
from heartwatch.core.model import Check, CheckSource, CheckSpec, CheckStatus, Ping, Run
from heartwatch.core.pings import PingRequest
from heartwatch.core.runs import Applied, apply_ping, make_room
from heartwatch.core.settings import Synchronous
from heartwatch.store import codec, compat, outbox, retention
from heartwatch.store.base import LeaderLock, Reads, SoleLeader, StatusPage
from heartwatch.store.codec import CHECK_COLUMNS, RUN_COLUMNS, to_ts
from heartwatch.store.migrations import MIGRATIONS, migrate
from heartwatch.store.outbox import AlertPolicy, Attempt, DueDelivery
from heartwatch.store.reads import ReadOnlyStore, SqliteReads
from heartwatch.store.status_index import Filter, StatusIndex
from heartwatch.store.watches import WatchBook
from heartwatch.store.writer import Writer

log = logging.getLogger("heartwatch.store.sqlite")
K = TypeVar("K")

#: Events between two prunes of one check's history: keeps pruning off most pings.
PRUNE_EVERY = 100
#: Hours of pruned runs' uptime kept: the longest window (30 days) and a day to spare.
HOURS_KEPT = 31 * 24
#: Every open run, from the partial index runs_open; sorted by id in Python, not by ORDER BY id, with which SQLite
#: walks the whole runs table in id order instead (at 100,000 checks with 30 runs each: 0.85 s of a restart, and
#: the writer's 64 MB page cache filled, 24 MB of it still in the idle server's RSS).
OPEN_RUNS = f"SELECT {RUN_COLUMNS} FROM runs WHERE ended_at IS NULL"
#: The kind of a stored event whose method the check does not count (`methods`): logged, nothing changed.
IGNORED = "ignored"


class PingOutcome(StrEnum):
    RECORDED = "recorded"
    CREATED = "created"
    NOT_FOUND = "not_found"
    TOO_MANY = "too_many"  # `?create=1` past [server] max_checks: nothing stored


@dataclass
class PingResult:
    outcome: PingOutcome
    check: Check | None = None
    applied: Applied | None = None
    alerts: int = 0  # alerts this ping wrote to the outbox
    earliest_deadline: float | None = None  # the earliest deadline it wrote, if it wrote one


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)


#: Checks evaluated per transaction when many fall due at once: keeps pings flowing in between.
DUE_BATCH = 500


class Store(SqliteReads):
    """Reads (SqliteReads) on a read connection of their own; writes through the one Writer."""

    #: What a write raises when the database refused it (disk full, I/O error) or the store is closing: callers
    #: answer "try again" for these and nothing else, without knowing which database is behind the store.
    WRITE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, RuntimeError)
    #: What any read or write raises while the database server is out of reach: pages and the API answer 503.
    #: None on SQLite, where the database is a file of this process.
    UNAVAILABLE: tuple[type[Exception], ...] = ()

    def __init__(self, path: Path, retention: int = 1000, synchronous: Synchronous = Synchronous.NORMAL,
                 policy: AlertPolicy | None = None, max_checks: int = 10_000) -> None:
        self.path = path
        self.retention = retention
        self.max_checks = max_checks
        self.writer = Writer(path, on_failure=self._load_state, synchronous=synchronous)
        self._reader: aiosqlite.Connection | None = None
        # Writer-thread state: the check index, rebuilt from disk after any rollback.
        self._by_id: dict[int, Check] = {}
        self._by_uuid: dict[str, Check] = {}
        self._by_slug: dict[str, Check] = {}
        self._by_alias: dict[str, int] = {}  # compatibility ping names (store/compat.py) -> check id
        # Parent slug -> ids of the checks naming it in depends_on or after (most checks name none).
        self._children: dict[str, dict[int, None]] = {}
        self._since_prune: dict[int, int] = {}
        # Open runs by check (by run id, oldest first) and by (check, rid): every ping needs them, so they are
        # kept here instead of read and decoded each time; a ping finds its run by rid, never by a scan.
        self._open: dict[int, dict[int, Run]] = {}
        self._open_by_rid: dict[tuple[int, str | None], dict[int, Run]] = {}
        # Every live check's status in the overview's order, kept at each change (store/status_index.py).
        self.status_index = StatusIndex()
        # Each check's watch and the alert decisions' writes, on the writer thread (store/watches.py).
        self.book = WatchBook(self.open_runs, self.save_run, policy or AlertPolicy(),
                              lambda slug: self._by_slug.get(slug), self.children_of, self.status_index.put_down)
        self._ping_key = ""
        # Specs the stored checks are expected to have (the config's): a stored check whose text matches one
        # shares that object instead of decoding its JSON, which is most of a restart with 100,000 checks.
        self._known_specs: Mapping[str, CheckSpec] = {}
        # Config checks stored in an older spelling (a setting added since): rewritten by the next sync_config, so
        # the next start shares the config's specs again instead of decoding every row.
        self._old_text: set[str] = set()
        self._read_ahead: list[Check] | None = None  # the checks, read while quick_check ran

    @property
    def policy(self) -> AlertPolicy:
        return self.book.policy

    @policy.setter
    def policy(self, policy: AlertPolicy) -> None:
        """Alert targets and reminders as the (reloaded) config says; alerts written from now on use them."""
        self.book.policy = policy

    # --- lifecycle ------------------------------------------------------------------------------------

    async def open(self, ping_key: str | None = None, specs: Mapping[str, CheckSpec] | None = None) -> None:
        """Open (or create) the database; raises DamagedDatabase if it fails SQLite's quick_check.

        `specs`, by slug, are what the checks are likely to hold (the config about to be synced): only a hint
        that saves decoding them, never a change.
        """
        self._known_specs = specs or {}
        exists = self.path.exists()  # else there are no checks to read
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self.writer.start()
            # quick_check before migrations write anything into a damaged file. It reads the whole file (1.3 s
            # for 100,000 checks with their history) without the GIL, so the checks are read and decoded beside
            # it; on a connection of its own, so the writer's page cache is not filled with the whole file.
            await asyncio.gather(asyncio.to_thread(quick_check_file, self.path),
                                 asyncio.to_thread(self._read_checks_ahead) if exists else asyncio.sleep(0))
        except (sqlite3.DatabaseError, DamagedDatabase) as e:
            await self.writer.close()
            if isinstance(e, sqlite3.DatabaseError) and e.sqlite_errorcode not in _DAMAGED_CODES:
                raise
            raise DamagedDatabase(str(e)) from e
        await self.writer.call(migrate)
        self._ping_key = await self.writer.call(lambda c: self._ensure_ping_key(c, ping_key))
        await self.writer.call(self._load_state)
        self._reader = await aiosqlite.connect(self.path)
        await self._reader.execute("PRAGMA query_only=1")

    async def close(self) -> None:
        await self.writer.close()
        if self.writer.batches:
            log.info("%d writes in %d commits", self.writer.operations, self.writer.batches)
        if self._reader is not None:
            await self._reader.close()
            self._reader = None

    @property
    def ping_key(self) -> str:
        return self._ping_key

    #: Whether other processes may share this database (and so how often the leader looks for their changes).
    shared = False

    def leader_lock(self, name: str) -> LeaderLock:
        """The lock whose holder runs the scheduler and the sender: on SQLite, this process always."""
        return SoleLeader(name)

    def _ensure_ping_key(self, conn: sqlite3.Connection, configured: str | None) -> str:
        """The configured key wins; otherwise the one generated on first start, kept in the database."""
        if configured:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('ping_key', ?)", (configured,))
            return configured
        row = conn.execute("SELECT value FROM meta WHERE key = 'ping_key'").fetchone()
        if row:
            return str(row[0])
        key = secrets.token_urlsafe(12)
        conn.execute("INSERT INTO meta VALUES ('ping_key', ?)", (key,))
        return key

    async def session_secret(self) -> bytes:
        """The key that signs login sessions: made on first use and kept, so sessions survive a restart."""

        def op(conn: sqlite3.Connection) -> bytes:
            row = conn.execute("SELECT value FROM meta WHERE key = 'session_secret'").fetchone()
            if row:
                return bytes.fromhex(str(row[0]))
            secret = secrets.token_bytes(32)
            conn.execute("INSERT INTO meta VALUES ('session_secret', ?)", (secret.hex(),))
            return secret

        secret: bytes = await self.writer.call(op)
        return secret

    def _read_checks_ahead(self) -> None:
        """For _load_state, on a connection of its own while quick_check runs: the checks, decoded.

        Only from a database at the newest schema, which migrate leaves alone; nothing else writes the checks
        before _load_state takes them. A read that fails is left to quick_check (a damaged file) and to
        _load_state, which reads again and says what is wrong as it did without this.
        """
        self._read_ahead = None
        try:
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                conn.execute("PRAGMA query_only=1")
                [(version,)] = conn.execute("SELECT MAX(version) FROM schema_migrations")
                if version == MIGRATIONS[-1][0]:
                    self._read_ahead = self._checks_from(conn)
            finally:
                conn.close()
        except Exception:  # whatever it is, _load_state meets it again and reports it
            self._read_ahead = None

    def _checks_from(self, conn: sqlite3.Connection) -> list[Check]:
        """Every stored check. A spec the config holds as well, unchanged, is shared rather than decoded."""
        known, encode = self._known_specs, codec.spec_to_json
        checks = []
        for row in conn.execute(f"SELECT {CHECK_COLUMNS} FROM checks"):
            spec = known.get(row[2])
            if spec is not None and encode(spec) != row[3]:
                spec = None  # changed in the config: decoded from the row; sync_config will update it
            check = codec.check_from_row(row, spec)
            if spec is None and known.get(row[2]) == check.spec:
                self._old_text.add(check.slug)
            checks.append(check)
        return checks

    def _load_state(self, conn: sqlite3.Connection) -> None:
        """(Re)build the writer's in-memory state from the database: at start and after a rollback."""
        checks, self._read_ahead = self._read_ahead, None
        if checks is None:
            checks = self._checks_from(conn)
        self._by_id = {c.id: c for c in checks}
        self._by_uuid = {c.uuid: c for c in checks}
        self._by_slug = {c.slug: c for c in checks}
        self._by_alias = compat.load_aliases(conn)
        self._children = {}
        for check in checks:
            self._link(check)
        self._open, self._open_by_rid = {}, {}
        rows = conn.execute(OPEN_RUNS).fetchall()
        for row in sorted(rows, key=lambda r: int(r[0])):
            self._keep_open(codec.run_from_row(row))
        self.book.forget()
        self.status_index.forget()

    def _build_status_index(self, conn: sqlite3.Connection) -> None:
        """The status index from the database, on the writer (so no change slips between the read and the index):
        each check's newest run (two seeks in the runs_by_check index) and the watches holding a check down."""
        if self.status_index.built:
            return
        newest = conn.execute(
            "SELECT id, (SELECT id FROM runs r WHERE r.check_id = c.id ORDER BY r.id DESC LIMIT 1),"
            " (SELECT state FROM runs r WHERE r.check_id = c.id ORDER BY r.id DESC LIMIT 1) FROM checks c")
        down = conn.execute("SELECT check_id FROM watches WHERE down_since IS NOT NULL")
        self.status_index.build(list(self._by_id.values()), [r for r in newest if r[1] is not None],
                                [r[0] for r in down])

    async def status_page(self, now: datetime, wanted: CheckStatus | None, page: int, per_page: int,
                          tag: str | None = None, query: str = "", slugs: frozenset[str] | None = None
                          ) -> StatusPage:
        """From the status index: the counts are lengths, the page a slice; only the late checks are read (and,
        with a tag or a search, every check of the statuses shown is looked at, in memory)."""
        keep = Filter(tag, query, slugs)
        by_id = self._by_id

        def keeps(cid: int) -> bool:
            check = by_id.get(cid)
            return check is not None and keep.keeps(check.slug, check.spec.display_name, check.spec.tags)

        for _ in range(3):  # emptied again meanwhile (a rollback, another process's write): build it again
            if not self.status_index.built:
                await self.writer.submit(self._build_status_index, long=True)
            late = await self.late_checks(now)
            found = self.status_index.page(late, wanted, page, per_page, keeps if keep else None)
            if found is not None:
                return found
        # Emptied at every try (writes failing in a row): read every check's line, as a store without a writer does.
        return await super().status_page(now, wanted, page, per_page, tag, query, slugs)

    def open_runs(self, check_id: int) -> list[Run]:
        """A check's open runs (running, or timed out awaiting a late finish), oldest first. Writer thread only."""
        runs = self._open.get(check_id)
        return list(runs.values()) if runs else []

    def _open_with_rid(self, check_id: int, rid: str | None) -> list[Run]:
        runs = self._open_by_rid.get((check_id, rid))
        return list(runs.values()) if runs else []

    def _keep_open(self, run: Run) -> None:
        assert run.id is not None
        self._open.setdefault(run.check_id, {})[run.id] = run
        self._open_by_rid.setdefault((run.check_id, run.rid), {})[run.id] = run

    def save_run(self, conn: sqlite3.Connection, run: Run) -> None:
        """Write a run and keep the open-run index in step. Writer thread only."""
        stored = self._open.get(run.check_id, {}).get(run.id) if run.id is not None else None
        if stored is not None and _same_indexed(stored, run):
            # A step on an open run: only what a step changes, so SQLite leaves the three indexes of runs alone
            # (the full UPDATE rewrites their entries: 6.0 against 2.4 us per statement, batches of 8).
            last = run.last_step
            conn.execute("UPDATE runs SET steps = ?, flags = ?, last_step = ?, last_step_at = ?, deadline = ?"
                         " WHERE id = ?", (codec.steps_to_json(run.steps), codec.flags_to_json(run.flags),
                                           last.name if last else None, to_ts(last.at) if last else None,
                                           to_ts(run.deadline), run.id))
        else:
            save_run(conn, run)
        assert run.id is not None
        _forget(self._open, run.check_id, run.id)
        _forget(self._open_by_rid, (run.check_id, run.rid), run.id)
        if run.ended_at is None:
            self._keep_open(run)
        self.status_index.put_run(run.check_id, run.id, run.state)

    def _link(self, check: Check, on: bool = True) -> None:
        for _, parent in dependencies.edges(check.spec):
            if on:
                self._children.setdefault(parent, {})[check.id] = None
            else:
                self._children.get(parent, {}).pop(check.id, None)

    def children_of(self, slug: str) -> list[Check]:
        """The live checks that name `slug` in depends_on or after. Writer thread only."""
        ids = self._children.get(slug)
        if not ids:
            return []  # most checks: nothing names them
        found = (self._by_id.get(i) for i in ids)
        return [c for c in found if c is not None and not c.archived and slug in dependencies.parents(c.spec)]

    def _index(self, check: Check) -> None:
        old = self._by_id.get(check.id)
        if old is not None and (old.spec.depends_on or old.spec.after):
            self._link(old, on=False)
        self._link(check)
        self._by_id[check.id] = check
        self._by_uuid[check.uuid] = check
        self._by_slug[check.slug] = check

    # --- writes ---------------------------------------------------------------------------------------

    def _full(self) -> bool:
        """No room for another check made by a ping or the API ([server] max_checks; archived ones do not count).
        Counted only near the cap, so a create costs nothing below it."""
        if len(self._by_id) < self.max_checks:
            return False
        return sum(1 for c in self._by_id.values() if not c.archived) >= self.max_checks

    def _insert_check(self, conn: sqlite3.Connection, spec: CheckSpec, source: CheckSource, now: datetime,
                      uuid: str | None = None) -> Check:
        return self._insert_checks(conn, [spec], source, now, uuid)[0]

    def _insert_checks(self, conn: sqlite3.Connection, specs: list[CheckSpec], source: CheckSource,
                       now: datetime, uuid: str | None = None) -> list[Check]:
        """Create checks in one statement (a first start with 100,000 config checks), then run the hooks.

        Ids are given explicitly, as SQLite would (the largest so far + 1), so they are known without a
        round trip per row.
        """
        first = int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM checks").fetchone()[0])
        ts = now.timestamp()
        # `uuid`: the one check's UUID kept from another tool (an import), else random ones.
        uuids = [uuid] if uuid is not None and len(specs) == 1 else new_uuids(len(specs))
        checks = [Check(id=first + i, uuid=code, spec=spec, source=source, created_at=now)
                  for i, (spec, code) in enumerate(zip(specs, uuids, strict=True))]
        conn.executemany("INSERT INTO checks (id, uuid, slug, spec, source, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                         [(c.id, c.uuid, c.slug, codec.spec_to_json(c.spec), source.value, ts) for c in checks])
        for check in checks:
            self._index(check)
        self._changed(conn, checks, now)
        return checks

    def _changed(self, conn: sqlite3.Connection, checks: list[Check], now: datetime, expect: bool = True) -> None:
        for check in checks:
            self.status_index.put_check(check)
        self.book.on_checks_changed(conn, checks, now, expect)

    def check_by_id(self, check_id: int) -> Check | None:
        """From the writer's index: call on the writer thread (inside an operation)."""
        return self._by_id.get(check_id)

    def _update_check(self, conn: sqlite3.Connection, check: Check, spec: CheckSpec, source: CheckSource,
                      now: datetime) -> Check:
        conn.execute("UPDATE checks SET spec = ?, source = ?, archived_at = NULL WHERE id = ?",
                     (codec.spec_to_json(spec), source.value, check.id))
        updated = Check(id=check.id, uuid=check.uuid, spec=spec, source=source, paused=check.paused,
                        archived=False, created_at=check.created_at)
        self._index(updated)
        self._changed(conn, [updated], now)
        return updated

    async def sync_config(self, specs: Mapping[str, CheckSpec], now: datetime) -> SyncReport:
        """Upsert the config file's checks by slug; archive config checks the file no longer has."""

        def op(conn: sqlite3.Connection) -> SyncReport:
            self.writer.grow_cache(conn)
            self._known_specs = specs  # for a reload after a rollback
            report = SyncReport()
            changed: list[tuple[Check, CheckSpec]] = []
            for slug, spec in specs.items():
                existing = self._by_slug.get(slug)
                if existing is None:
                    report.created.append(slug)
                elif existing.spec != spec or existing.source is not CheckSource.CONFIG or existing.archived:
                    changed.append((existing, spec))
                    report.updated.append(slug)
                elif slug in self._old_text:  # the same settings, stored in an older spelling: not a change
                    conn.execute("UPDATE checks SET spec = ? WHERE id = ?", (codec.spec_to_json(spec), existing.id))
            self._old_text.clear()
            if report.created:
                self._insert_checks(conn, [specs[slug] for slug in report.created], CheckSource.CONFIG, now)
            for existing, spec in changed:
                self._update_check(conn, existing, spec, CheckSource.CONFIG, now)
            for check in list(self._by_id.values()):
                if check.source is CheckSource.CONFIG and not check.archived and check.slug not in specs:
                    conn.execute("UPDATE checks SET archived_at = ? WHERE id = ?", (now.timestamp(), check.id))
                    check.archived = True
                    self._changed(conn, [check], now)
                    report.archived.append(check.slug)
            return report

        report = await self.writer.submit(op, long=True)  # a first start or a reload may hold thousands of checks
        await self.writer.submit(self.writer.settle_cache)
        return report

    async def set_paused(self, slug: str, paused: bool, now: datetime) -> Check | None:
        """Pause or resume a check; None if there is no such check."""

        def op(conn: sqlite3.Connection) -> Check | None:
            check = self._by_slug.get(slug)
            if check is None:
                return None
            if check.paused != paused:
                conn.execute("UPDATE checks SET paused = ? WHERE id = ?", (int(paused), check.id))
                check.paused = paused
                # A pause keeps the expectation and the down state; a resume expects afresh from now.
                self._changed(conn, [check], now, expect=not paused)
            return check

        return await self.writer.submit(op)

    async def set_muted(self, slug: str, muted: bool, now: datetime) -> Check | None:
        """Mute (no reminders until the check recovers) or unmute a check; None if there is no such check."""

        def op(conn: sqlite3.Connection) -> Check | None:
            check = self._by_slug.get(slug)
            if check is None:
                return None
            if check.muted != muted:
                conn.execute("UPDATE checks SET muted = ? WHERE id = ?", (int(muted), check.id))
                check.muted = muted
                self._changed(conn, [check], now, expect=False)
            return check

        return await self.writer.submit(op)

    async def set_maintenance(self, slug: str, until: datetime | None, now: datetime) -> Check | None:
        """Hold a check's alerts until `until` (None: end the hold now); what is still true then goes out once.
        None if there is no such check."""

        def op(conn: sqlite3.Connection) -> Check | None:
            check = self._by_slug.get(slug)
            if check is None:
                return None
            conn.execute("UPDATE checks SET maintenance_until = ? WHERE id = ?", (codec.to_ts(until), check.id))
            check.maintenance_until = until
            self._changed(conn, [check], now, expect=False)
            return check

        return await self.writer.submit(op)

    def _key_matches(self, req: PingRequest) -> bool:
        return req.ping_key is not None and hmac.compare_digest(req.ping_key.encode(), self._ping_key.encode())

    def resolve(self, req: PingRequest) -> Check | None:
        if req.uuid is not None:
            check = self._by_uuid.get(req.uuid)
            if check is None and self._by_alias:
                alias_of = self._by_alias.get(req.uuid)
                check = None if alias_of is None else self._by_id.get(alias_of)
            return check
        return self._by_slug.get(req.slug or "") if self._key_matches(req) else None

    async def record_ping(self, req: PingRequest, ping: Ping) -> PingResult:
        """Apply a ping to its check's runs and store it; returns after the commit."""

        def op(conn: sqlite3.Connection) -> PingResult:
            check = self.resolve(req)
            outcome = PingOutcome.RECORDED
            if check is None:
                if not (req.create and req.slug and self._key_matches(req)):
                    return PingResult(PingOutcome.NOT_FOUND)
                if self._full():
                    return PingResult(PingOutcome.TOO_MANY)
                check = self._insert_check(conn, req.create_spec or CheckSpec(slug=req.slug), CheckSource.PING, ping.at)
                outcome = PingOutcome.CREATED
            elif check.paused and check.spec.resume_on_ping and (not check.spec.methods
                                                                  or ping.method in check.spec.methods):
                conn.execute("UPDATE checks SET paused = 0 WHERE id = ?", (check.id,))
                check.paused = False
                self._changed(conn, [check], ping.at)
            # 1. the runs: what the ping opened, marked or closed (pure)
            applied = apply_ping(check.id, check.spec, self._open_with_rid(check.id, ping.rid), ping)
            if applied.opened is not None:  # at most MAX_OPEN_RUNS per check: the oldest is closed
                open_runs = self._open.get(check.id, {})
                make_room(applied, len(open_runs), next(iter(open_runs.values()), None), ping)
            moved = self.book.place_deadlines(check, applied.changed)
            for run in applied.changed:
                self.save_run(conn, run)
            self._insert_event(conn, check.id, applied.run, ping, ignored=applied.ignored)
            # 2. what that means for alerts (pure: watching.after_ping), written to the outbox and the watch
            book = self.book
            before, book.earliest_written = book.alerts_written, None
            book.on_ping(conn, check, ping, applied, moved)
            return PingResult(outcome, check, applied, book.alerts_written - before, book.earliest_written)

        return await self.writer.submit(op)

    def _insert_event(self, conn: sqlite3.Connection, check_id: int, run: Run | None, ping: Ping,
                      ignored: bool = False) -> None:
        conn.execute(
            "INSERT INTO events (check_id, run_id, at, kind, step, rid, exit_code, body, remote_addr,"
            " user_agent, method, ping_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (check_id, run.id if run else None, ping.at.timestamp(), IGNORED if ignored else ping.kind.value,
             ping.step, ping.rid, ping.exit_code, ping.body or None, ping.remote_addr, ping.user_agent, ping.method,
             ping.ping_ms))
        count = self._since_prune.get(check_id, 0) + 1
        if count >= PRUNE_EVERY:
            more = self._prune(conn, check_id, ping.at)
            count = PRUNE_EVERY - 1 if more else 0  # a full batch: go on at the next ping, not all at once
        self._since_prune[check_id] = count

    def _prune(self, conn: sqlite3.Connection, check_id: int, now: datetime) -> bool:
        """One batch of the check's history past the retention (store/retention.py); True if more is left."""
        keep = self.retention
        deleted = (retention.prune_events(conn, check_id, keep), retention.prune_runs(conn, check_id, keep),
                   retention.prune_alerts(conn, check_id, keep))
        retention.prune_hours(conn, check_id, int(now.timestamp() // 3600) - HOURS_KEPT)
        return max(deleted) >= retention.BATCH

    # --- API writes -----------------------------------------------------------------------------------
    # The write API's operations. Each decides and writes in one writer operation, so two requests for one
    # slug cannot both create it. Config checks (source "config") are read-only here: the next start or
    # SIGHUP would silently overwrite an API change with the file's version. Pausing goes through
    # `set_paused` above, which config checks allow.

    async def api_save_check(self, slug: str, build: Callable[[CheckSpec | None], CheckSpec], now: datetime,
                             create: bool = True, uuid: str | None = None, aliases: tuple[str, ...] = ()) -> ApiWrite:
        """Create (if `create`) or replace a check's spec with `build(current spec, or None if new)`.

        What `build` raises comes back as a REJECTED outcome carrying the error, not as an exception of
        the operation: a failed operation would roll back and re-run the pings sharing its transaction.
        An archived check is brought back by a create (history kept), and is not found by an update.

        `uuid` (an import keeping another tool's UUID) is a new check's UUID; for a check that exists it is
        added to `aliases`, the other names the check answers pings to. A name that already belongs to another
        check is refused (REJECTED with AliasTaken), and nothing is written.
        """

        def op(conn: sqlite3.Connection) -> ApiWrite:
            check = self._by_slug.get(slug)
            taken = self._names_taken(check, uuid, aliases)
            if taken is not None:
                return ApiWrite(ApiOutcome.REJECTED, check, taken)
            result = save(conn, check)
            if result.check is not None and result.outcome in (ApiOutcome.CREATED, ApiOutcome.UPDATED):
                names = [a for a in (*aliases, *([uuid] if uuid else [])) if a != result.check.uuid]
                new = [a for a in dict.fromkeys(names) if a not in self._by_alias]
                if new:
                    compat.add_aliases(conn, result.check.id, new, now.timestamp())
                    self._by_alias.update(dict.fromkeys(new, result.check.id))
            return result

        def save(conn: sqlite3.Connection, check: Check | None) -> ApiWrite:
            if check is not None and check.source is CheckSource.CONFIG and not check.archived:
                return ApiWrite(ApiOutcome.READ_ONLY, check)
            if check is None or (check.archived and not create):
                if not create:
                    return ApiWrite(ApiOutcome.NOT_FOUND, check)
                if self._full():
                    return ApiWrite(ApiOutcome.TOO_MANY)
                try:
                    spec = build(None)
                    dependencies.check_change(spec, self._live_spec)
                except Exception as e:
                    return ApiWrite(ApiOutcome.REJECTED, None, e)
                return ApiWrite(ApiOutcome.CREATED, self._insert_check(conn, spec, CheckSource.API, now, uuid))
            if check.archived and self._full():  # bringing it back would make one too many
                return ApiWrite(ApiOutcome.TOO_MANY, check)
            try:
                spec = build(None if check.archived else check.spec)
                dependencies.check_change(spec, self._live_spec)
            except Exception as e:
                return ApiWrite(ApiOutcome.REJECTED, check, e)
            if spec == check.spec and check.source is CheckSource.API and not check.archived:
                return ApiWrite(ApiOutcome.UPDATED, check)  # unchanged: keep the scheduler's expectation
            return ApiWrite(ApiOutcome.UPDATED, self._update_check(conn, check, spec, CheckSource.API, now))

        return await self.writer.submit(op)

    def _names_taken(self, check: Check | None, uuid: str | None, aliases: tuple[str, ...]) -> Exception | None:
        """Why `uuid` and `aliases` cannot name `check` (None for a new one), or None when they can."""
        for name in (*([uuid] if uuid else []), *aliases):
            owner = self._by_uuid.get(name)
            if owner is None:
                alias_of = self._by_alias.get(name)
                owner = None if alias_of is None else self._by_id.get(alias_of)
            if owner is not None and (check is None or owner.id != check.id):
                return compat.AliasTaken(f"{name} already names the check {owner.slug!r}")
        return None
    def _live_spec(self, slug: str) -> CheckSpec | None:
        check = self._by_slug.get(slug)
        return None if check is None or check.archived else check.spec

    async def api_archive(self, slug: str, now: datetime) -> ApiWrite:
        """Archive a check as the config does for a removed table: no longer listed or alerted, history kept."""

        def op(conn: sqlite3.Connection) -> ApiWrite:
            check = self._by_slug.get(slug)
            if check is None:
                return ApiWrite(ApiOutcome.NOT_FOUND)
            if check.source is CheckSource.CONFIG and not check.archived:
                return ApiWrite(ApiOutcome.READ_ONLY, check)
            if not check.archived:
                conn.execute("UPDATE checks SET archived_at = ? WHERE id = ?", (now.timestamp(), check.id))
                check.archived = True
                self._changed(conn, [check], now)
            return ApiWrite(ApiOutcome.ARCHIVED, check)

        return await self.writer.submit(op)

    # --- deadlines: what the scheduler asks --------------------------------------------------------------

    async def prepare_watches(self, now: datetime) -> None:
        """Give every check without a watch (created before deadlines existed) a fresh expectation."""

        def op(conn: sqlite3.Connection) -> None:
            missing = [r[0] for r in conn.execute(
                "SELECT id FROM checks WHERE NOT EXISTS (SELECT 1 FROM watches WHERE check_id = checks.id)")]
            checks = [c for c in map(self._by_id.get, missing) if c is not None]
            self.book.read(conn, [c.id for c in checks])  # known: no row
            self._changed(conn, checks, now)

        await self.writer.submit(op, long=True)  # every check, at start-up

    async def due_checks(self, now: datetime, limit: int = DUE_BATCH) -> list[int]:
        """Ids of checks with a deadline at or before `now`, the earliest first."""
        rows = await self._all(
            "SELECT check_id FROM watches WHERE next_deadline <= ? ORDER BY next_deadline LIMIT ?",
            (now.timestamp(), limit))
        return [r[0] for r in rows]

    async def evaluate(self, check_ids: list[int], now: datetime) -> int:
        """Evaluate what fell due for these checks in one transaction; returns the alerts written."""

        def op(conn: sqlite3.Connection) -> int:
            checks = [c for c in map(self._by_id.get, check_ids) if c is not None]
            # Parents first: a parent found down in this pass holds back its children's alerts of the same pass.
            checks.sort(key=lambda c: bool(c.spec.depends_on))
            return self.book.evaluate(conn, checks, now)

        # long: up to DUE_BATCH checks evaluated in one transaction, off the event loop
        written: int = await self.writer.submit(op, long=True)
        return written

    async def earliest_deadline(self) -> float | None:
        """When the next deadline of any check falls due (Unix time), if any."""
        rows = await self._all("SELECT MIN(next_deadline) FROM watches")
        return rows[0][0] if rows else None

    async def rebase_expectations(self, now: datetime) -> None:
        """The clock stepped back: recompute every check's next expectation from the new `now`."""

        def op(conn: sqlite3.Connection) -> None:
            self.book.rebase(conn, [c for c in self._by_id.values() if not c.paused], now)

        await self.writer.submit(op, long=True)

    # --- the outbox: what the sender asks ----------------------------------------------------------------

    async def claim_deliveries(self, now: datetime, horizon: datetime, limit: int) -> list[DueDelivery]:
        return await outbox.claim_due(self.reader, now, horizon, limit)

    async def next_delivery_after(self, after: float) -> float | None:
        return await outbox.next_attempt_after(self.reader, after)

    async def deliveries_due_before(self, before: float) -> int:
        """How many deliveries have waited since before `before` (Unix time): a backlog the heartbeat reports."""
        return await outbox.count_due_before(self.reader, before)

    async def record_attempts(self, attempts: list[Attempt], at: float, ok: bool, error: str | None,
                              back_target: str | None) -> int:
        """Record one send's attempts in one transaction; returns how many waiting deliveries were made due."""
        moved: int = await self.writer.submit(
            lambda conn: outbox.record_attempts(conn, attempts, at, ok, error, back_target), long=len(attempts) > 50)
        return moved

    # --- reads ----------------------------------------------------------------------------------------
    # --- reads: the methods of SqliteReads (store/reads.py), on this connection --------------------------

    # --- reads for the compatibility layer (store/compat.py) ------------------------------------------------

    async def slug_of(self, code: str) -> str | None:
        """The live check whose UUID or alias is `code`."""
        return await compat.slug_of(self.reader, code)

    async def aliases_of(self, check_ids: list[int]) -> dict[int, list[str]]:
        return await compat.aliases_of(self.reader, check_ids)

    async def ping_stats(self, check_ids: list[int]) -> dict[int, compat.PingStats]:
        return await compat.ping_stats(self.reader, check_ids)

    async def logged_pings(self, check_id: int, limit: int) -> list[compat.LoggedPing]:
        return await compat.logged_pings(self.reader, check_id, limit)

    async def alert_kinds(self, check_id: int) -> list[tuple[str, float]]:
        return await compat.alert_kinds(self.reader, check_id)

    @property
    def reader(self) -> aiosqlite.Connection:
        assert self._reader is not None, "store not open"
        return self._reader


class DamagedDatabase(Exception):
    """The database file is not a SQLite database, or fails `PRAGMA quick_check`: heartwatch will not run on it."""


#: SQLITE_CORRUPT and SQLITE_NOTADB: what SQLite raises on a damaged file before quick_check can say more.
_DAMAGED_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def quick_check_file(path: Path) -> None:
    conn = sqlite3.connect(path, timeout=30)
    try:
        quick_check(conn)
    finally:
        conn.close()


def quick_check(conn: sqlite3.Connection) -> None:
    """Raise DamagedDatabase unless `PRAGMA quick_check` says "ok".

    quick_check rather than integrity_check: it reads every page and checks each b-tree and record, but
    skips matching index entries to table rows, so it is linear in the file size: 0.5 s instead of 1.7 s
    on a 300 MB database of a million events (warm cache). A start-up check has to be cheap enough to keep.
    """
    problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(2)")]
    if problems != ["ok"]:
        lines = [line.strip() for p in problems for line in p.splitlines() if line.strip()[:3] not in ("", "***")]
        raise DamagedDatabase("quick_check: " + "; ".join(lines[:2]))


def new_uuids(n: int) -> list[str]:
    """n random (version 4) UUIDs as text, like `str(uuid.uuid4())`, from one read of the OS's randomness:
    uuid4 reads it once per UUID, which was a tenth of a first start with 100,000 checks."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes(b & 0x0F | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])  # RFC 4122 variant
    h = raw.hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-{h[i + 20:i + 32]}"
            for i in range(0, 32 * n, 32)]


def _forget(index: dict[K, dict[int, Run]], key: K, run_id: int) -> None:
    runs = index.get(key)
    if runs is not None:
        runs.pop(run_id, None)
        if not runs:
            del index[key]


def _same_indexed(a: Run, b: Run) -> bool:
    """Do two versions of a run agree on every column but those a step changes (steps, flags, deadline)?"""
    return (a.state is b.state and a.ended_at == b.ended_at and a.started_at == b.started_at and a.rid == b.rid
            and a.exit_code == b.exit_code and a.missed == b.missed and a.check_id == b.check_id)


def save_run(conn: sqlite3.Connection, run: Run) -> None:
    """Insert a new run (setting its id) or update an existing one."""
    values = codec.run_values(run)
    if run.id is None:
        cur = conn.execute(
            "INSERT INTO runs (check_id, rid, state, started_at, ended_at, exit_code, steps, flags, last_step,"
            " last_step_at, deadline, missed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        run.id = cur.lastrowid
    else:
        conn.execute(
            "UPDATE runs SET check_id = ?, rid = ?, state = ?, started_at = ?, ended_at = ?, exit_code = ?,"
            " steps = ?, flags = ?, last_step = ?, last_step_at = ?, deadline = ?, missed = ? WHERE id = ?",
            (*values, run.id))


# --- API writes: what the operations above return ----------------------------------------------------------


class ApiOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    ARCHIVED = "archived"
    NOT_FOUND = "not_found"
    READ_ONLY = "read_only"  # a config check: change it in the file
    REJECTED = "rejected"  # the new settings were refused; `error` says why
    TOO_MANY = "too_many"  # a new check past [server] max_checks


@dataclass
class ApiWrite:
    outcome: ApiOutcome
    check: Check | None = None
    error: Exception | None = None


def _offers_every_read(store: Store, read_only: ReadOnlyStore) -> tuple[Reads, Reads]:
    """Never called: mypy checks here that both stores implement the Reads interface (store/base.py)."""
    return store, read_only
