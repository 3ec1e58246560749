"""Retention: each check keeps its newest `[server] retention` events and its newest `retention` finished runs;
older ones are deleted, a run with its alerts, their deliveries and the deliveries' attempts. An alert whose
delivery is still pending is kept, with its run, until it is delivered or given up.

Pruning runs on the writer, inside the transaction of a ping (every PRUNE_EVERY events of a check), and never
deletes more than BATCH rows of a kind at a time: a lowered retention, or a check that was flooded, is worked
down over the following pings instead of in one long delete that would hold every other ping up.
`python bench/retention.py` measures a backlog worked down; `python bench/abuse.py` the floods.

A run leaves its count in `uptime_hours` before it goes, so uptime over 30 days (store/uptime.py) does not
change when its runs are pruned.
"""

from __future__ import annotations

import sqlite3

from heartwatch.core.model import RunState

#: Rows of one kind deleted at most per prune. `python bench/retention.py` (50,000 runs and 100,000 events worked
#: down to 1,000): a ping that prunes takes 0.5 ms median, 1.8 ms p99, against 0.03 ms for the others; with
#: 500 a pruning ping took 3.4 ms median.
BATCH = 200

_ADD_TO_HOURS = f"""
    INSERT INTO uptime_hours (check_id, hour, runs, failures)
    SELECT check_id, CAST(started_at / 3600 AS INTEGER), SUM(missed), SUM((state != '{RunState.OK.value}') * missed)
    FROM runs WHERE id IN (SELECT value FROM json_each(?)) GROUP BY 1, 2
    ON CONFLICT (check_id, hour) DO UPDATE SET runs = runs + excluded.runs, failures = failures + excluded.failures
"""

#: Alerts of the check that still have a delivery to make: they stay, and so do their runs.
_PENDING = ("SELECT a.id FROM alerts a JOIN deliveries d ON d.alert_id = a.id"
            " WHERE a.check_id = ? AND d.next_attempt_at IS NOT NULL")


def prune_events(conn: sqlite3.Connection, check_id: int, keep: int) -> int:
    """Delete up to BATCH of the check's events older than its newest `keep`; returns how many went."""
    return conn.execute(
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE check_id = ? AND id < (SELECT id FROM events"
        " WHERE check_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?) ORDER BY id LIMIT ?)",
        (check_id, check_id, keep - 1, BATCH)).rowcount


def prune_runs(conn: sqlite3.Connection, check_id: int, keep: int) -> int:
    """Delete up to BATCH of the check's finished runs older than its newest `keep` finished ones, with their
    alerts and deliveries (save those still to be delivered); returns how many runs went."""
    pending = [alert_id for (alert_id,) in conn.execute(_PENDING, (check_id,))]
    run_ids = [run_id for (run_id,) in conn.execute(
        "SELECT id FROM runs WHERE check_id = ? AND ended_at IS NOT NULL AND id < (SELECT id FROM runs"
        " WHERE check_id = ? AND ended_at IS NOT NULL ORDER BY id DESC LIMIT 1 OFFSET ?)"
        " AND id NOT IN (SELECT run_id FROM alerts WHERE id IN (SELECT value FROM json_each(?)) AND run_id IS NOT NULL)"
        " ORDER BY id LIMIT ?", (check_id, check_id, keep - 1, _json(pending), BATCH))]
    if not run_ids:
        return 0
    ids = _json(run_ids)
    conn.execute(_ADD_TO_HOURS, (ids,))
    alert_ids = _json([a for (a,) in conn.execute(
        "SELECT id FROM alerts WHERE run_id IN (SELECT value FROM json_each(?))", (ids,))])
    _delete_alerts(conn, alert_ids)
    # Events kept by their own retention may still name a pruned run (a late finish of an old run): they stay,
    # without it (foreign keys are on).
    conn.execute("UPDATE events SET run_id = NULL WHERE run_id IN (SELECT value FROM json_each(?))", (ids,))
    conn.execute("DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?))", (ids,))
    return len(run_ids)


def prune_alerts(conn: sqlite3.Connection, check_id: int, keep: int) -> int:
    """Delete up to BATCH of the check's delivered (or given up) alerts older than its newest `keep`: alerts
    without a run (reminders, recoveries) are bounded too."""
    pending = _json([alert_id for (alert_id,) in conn.execute(_PENDING, (check_id,))])
    alert_ids = [a for (a,) in conn.execute(
        "SELECT id FROM alerts WHERE check_id = ? AND id < (SELECT id FROM alerts WHERE check_id = ?"
        " ORDER BY id DESC LIMIT 1 OFFSET ?) AND id NOT IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?",
        (check_id, check_id, keep - 1, pending, BATCH))]
    if alert_ids:
        _delete_alerts(conn, _json(alert_ids))
    return len(alert_ids)


def prune_hours(conn: sqlite3.Connection, check_id: int, before_hour: int) -> None:
    """Uptime hours older than the longest window (30 days) are no longer read."""
    conn.execute("DELETE FROM uptime_hours WHERE check_id = ? AND hour < ?", (check_id, before_hour))


_UPSERT = " ON CONFLICT (what) DO UPDATE SET n = n + excluded.n"
_COUNT_PRUNED_ALERTS = ("INSERT INTO pruned_counts (what, n) SELECT 'alerts:' || kind, count(*) FROM alerts"
                        " WHERE id IN (SELECT value FROM json_each(?)) GROUP BY kind" + _UPSERT)
_COUNT_PRUNED_DELIVERIES = ("INSERT INTO pruned_counts (what, n) SELECT 'deliveries:delivered', count(delivered_at)"
                            " FROM deliveries WHERE alert_id IN (SELECT value FROM json_each(?1))"
                            " UNION ALL SELECT 'deliveries:gave_up', count(gave_up_at) FROM deliveries"
                            " WHERE alert_id IN (SELECT value FROM json_each(?1))" + _UPSERT)


def _delete_alerts(conn: sqlite3.Connection, alert_ids: str) -> None:
    # /metrics counts alerts and deliveries as counters: what goes is added to pruned_counts first.
    conn.execute(_COUNT_PRUNED_ALERTS, (alert_ids,))
    conn.execute(_COUNT_PRUNED_DELIVERIES, (alert_ids,))
    conn.execute("DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE alert_id IN"
                 " (SELECT value FROM json_each(?)))", (alert_ids,))
    conn.execute("DELETE FROM deliveries WHERE alert_id IN (SELECT value FROM json_each(?))", (alert_ids,))
    conn.execute("DELETE FROM alerts WHERE id IN (SELECT value FROM json_each(?))", (alert_ids,))


def _json(ids: list[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"
