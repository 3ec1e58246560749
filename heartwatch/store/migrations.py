"""The database schema as numbered migrations, applied in order, each in its own transaction.

A migration is never edited once released; change the schema by appending a new one.
"""

from __future__ import annotations

import sqlite3
import time

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial", """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE checks (
            id INTEGER PRIMARY KEY,
            uuid TEXT NOT NULL UNIQUE,
            slug TEXT NOT NULL UNIQUE,
            spec TEXT NOT NULL,              -- CheckSpec as JSON
            source TEXT NOT NULL,            -- config | api | ping
            paused INTEGER NOT NULL DEFAULT 0,
            archived_at REAL,                -- removed from the config: history kept, not alerted
            created_at REAL NOT NULL
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            check_id INTEGER NOT NULL REFERENCES checks(id),
            rid TEXT,
            state TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            exit_code INTEGER,
            steps TEXT NOT NULL DEFAULT '[]',   -- [{name, at, flags}] in arrival order
            flags TEXT NOT NULL DEFAULT '[]',
            last_step TEXT,                     -- where it stopped, for list views
            last_step_at REAL
        );
        CREATE INDEX runs_by_check ON runs (check_id, id);
        CREATE INDEX runs_open ON runs (check_id) WHERE ended_at IS NULL;
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            check_id INTEGER NOT NULL REFERENCES checks(id),
            run_id INTEGER REFERENCES runs(id),
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            step TEXT,
            rid TEXT,
            exit_code INTEGER,
            body BLOB,
            remote_addr TEXT,
            user_agent TEXT,
            method TEXT
        );
        CREATE INDEX events_by_check ON events (check_id, id);
        CREATE INDEX events_by_run ON events (run_id);
    """),
    (2, "deadlines and alerts", """
        -- What the scheduler knows about each check; next_deadline is when it must look at it again.
        CREATE TABLE watches (
            check_id INTEGER PRIMARY KEY REFERENCES checks(id),
            expected_at REAL,           -- next expected start (UTC)
            start_deadline REAL,        -- expected_at + start_grace: missed after this
            down_since REAL,            -- set once a bad run alerted; cleared by a good run
            bad_streak INTEGER NOT NULL DEFAULT 0,
            next_reminder REAL,
            next_deadline REAL          -- earliest of the above and the open runs' deadlines
        );
        CREATE INDEX watches_due ON watches (next_deadline) WHERE next_deadline IS NOT NULL;
        ALTER TABLE runs ADD COLUMN deadline REAL;   -- finish or step deadline of an open run
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            check_id INTEGER NOT NULL REFERENCES checks(id),
            run_id INTEGER REFERENCES runs(id),
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX alerts_by_check ON alerts (check_id, id);
        -- The outbox: one row per alert and target, claimed and retried by the sender.
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            alert_id INTEGER NOT NULL REFERENCES alerts(id),
            target TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL,       -- NULL once delivered or given up
            delivered_at REAL,
            gave_up_at REAL,
            last_error TEXT
        );
        CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
        CREATE TABLE delivery_attempts (
            id INTEGER PRIMARY KEY,
            delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
            at REAL NOT NULL,
            ok INTEGER NOT NULL,
            error TEXT
        );
    """),
    (3, "newest run state from the index", """
        -- The status page reads every check's newest run state: with the state in the index that is an index
        -- seek per check, without visiting the runs table (whose rows carry the steps' JSON). The index
        -- serves every query the old (check_id, id) one did.
        DROP INDEX IF EXISTS runs_by_check;
        CREATE INDEX runs_by_check ON runs (check_id, id, state);
    """),
    (5, "alert rules: what alerts said, folded missed runs", """
        -- JSON: good_streak, trouble (what is wrong now), told (what the last alert said), since (what happened
        -- since it), recent (the last alerts' times, for the hourly limit). NULL for a check with nothing to say.
        ALTER TABLE watches ADD COLUMN memory TEXT;
        -- A missed run stands for this many expected starts (folded while the check was down).
        ALTER TABLE runs ADD COLUMN missed INTEGER NOT NULL DEFAULT 1;
    """),
    (6, "holds: mute and one-off maintenance", """
        ALTER TABLE checks ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;   -- no reminders until it recovers
        ALTER TABLE checks ADD COLUMN maintenance_until REAL;             -- alerts held until then
    """),
    (7, "retention of runs: uptime by the hour, deliveries by alert", """
        -- Runs past [server] retention are pruned (store/retention.py); before they go, each is added to its
        -- check's hour here, so uptime over 30 days (store/uptime.py) still counts them.
        CREATE TABLE uptime_hours (
            check_id INTEGER NOT NULL REFERENCES checks(id),
            hour INTEGER NOT NULL,             -- started_at // 3600
            runs INTEGER NOT NULL,             -- ended runs (a folded missed run counts as `missed`)
            failures INTEGER NOT NULL,         -- of which not ok
            PRIMARY KEY (check_id, hour)
        ) WITHOUT ROWID;
        -- A pruned run's alerts take their deliveries and attempts with them: found by these, not by a scan.
        CREATE INDEX alerts_by_run ON alerts (run_id) WHERE run_id IS NOT NULL;
        CREATE INDEX deliveries_by_alert ON deliveries (alert_id);
        CREATE INDEX attempts_by_delivery ON delivery_attempts (delivery_id);
        -- What pruning deleted, counted (alerts:<kind>, deliveries:delivered, deliveries:gave_up): /metrics'
        -- counters stay counters when their rows go.
        CREATE TABLE pruned_counts (what TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
    """),
    (8, "runs by start time", """
        -- Uptime over the last 24 hours, 7 days and 30 days counts a check's runs by when they started: with
        -- the state and the folded-missed count in the index the count is read from the index alone, for every
        -- check on a page at once.
        CREATE INDEX runs_by_start ON runs (check_id, started_at, state, missed);
    """),
    (9, "compatibility: ping URL aliases, a sender's response time", """
        -- Another name a check answers pings to: a Healthchecks UUID imported onto an existing check, an Uptime
        -- Kuma push token, an upti.my heartbeat token. Old ping URLs keep working after a move.
        CREATE TABLE check_aliases (
            alias TEXT PRIMARY KEY,
            check_id INTEGER NOT NULL REFERENCES checks(id),
            created_at REAL NOT NULL
        );
        CREATE INDEX check_aliases_by_check ON check_aliases (check_id);
        -- Uptime Kuma's `ping` (milliseconds), kept with the event it came with.
        ALTER TABLE events ADD COLUMN ping_ms REAL;
    """),
    (11, "watches by expected start", """
        -- The overview keeps every check's status in memory (store/status_index.py) but lateness, which comes
        -- with the clock: the few checks whose expected start has passed are found here, not by a scan.
        CREATE INDEX watches_by_expected ON watches (expected_at);
    """),
]


def migrate(conn: sqlite3.Connection, migrations: list[tuple[int, str, str]] | None = None) -> list[int]:
    """Apply the migrations not yet applied; returns their versions. Safe to call any number of times.

    `migrations`: MIGRATIONS by default; PostgreSQL's store adds its own few (store/postgres.py)."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations"
                 " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")
    done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
    applied = []
    for version, name, sql in MIGRATIONS if migrations is None else migrations:
        if version in done:
            continue
        # executescript would commit on its own; run statement by statement inside one transaction so a
        # migration and its record land together or not at all.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied


def _statements(sql: str) -> list[str]:
    lines = [line.split("--")[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
