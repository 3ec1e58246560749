"""The outbox: alerts written in the transaction of the change that caused them, and their deliveries.

`write_alerts` runs on the writer thread inside that transaction (a ping, a deadline). The sender claims
due deliveries with `claim_due`, and records each attempt with `record_attempts`. Only SQL lives here; the
words of an alert come from heartwatch.core.alert_text, the decision to send one from core.watching.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import aiosqlite

from heartwatch.core import alert_text
from heartwatch.core.model import Check
from heartwatch.core.watching import AlertIntent


@dataclass(frozen=True)
class AlertPolicy:
    """Where alerts go and how often they remind: the server's `[alerts]` and the links' base URL."""

    remind_every: timedelta = timedelta(days=1)
    targets: tuple[str, ...] = ()
    public_url: str = ""


class DueDelivery(NamedTuple):
    id: int
    target: str
    attempts: int
    kind: str
    title: str
    body: str
    alert_id: str  # stable across attempts and restarts: the check's uuid and the alert's row id


class Attempt(NamedTuple):
    """What one attempt did to one delivery."""

    delivery_id: int
    attempts: int
    next_attempt_at: float | None
    delivered_at: float | None
    gave_up_at: float | None
    error: str | None


def write_alerts(conn: sqlite3.Connection, policy: AlertPolicy, check: Check, alerts: Sequence[AlertIntent],
                 output: bytes) -> list[str]:
    """Write each alert and one delivery per target; returns their titles (for the log)."""
    targets = list(dict.fromkeys([*policy.targets, *check.spec.alerts]))
    titles = []
    for intent in alerts:
        run = intent.run
        link = f"{policy.public_url}/checks/{check.slug}" + (f"/runs/{run.id}" if run and run.id else "")
        title = alert_text.title(check.spec, intent)
        body = alert_text.body(check.spec, intent, link, output)
        cur = conn.execute(
            "INSERT INTO alerts (check_id, run_id, kind, title, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (check.id, run.id if run else None, intent.kind.value, title, body, intent.at.timestamp()))
        conn.executemany("INSERT INTO deliveries (alert_id, target, next_attempt_at) VALUES (?, ?, ?)",
                         [(cur.lastrowid, t, intent.at.timestamp()) for t in targets])
        titles.append(title)
    return titles


def last_output(conn: sqlite3.Connection, run_id: int) -> bytes:
    """The newest body a run's pings carried: the output tail a timeout alert shows."""
    row = conn.execute("SELECT body FROM events WHERE run_id = ? AND body IS NOT NULL ORDER BY id DESC LIMIT 1",
                       (run_id,)).fetchone()
    return bytes(row[0]) if row else b""


async def claim_due(reader: aiosqlite.Connection, now: datetime, horizon: datetime, limit: int) -> list[DueDelivery]:
    """Deliveries due by `now`, and any planned beyond `horizon` (planned before the clock stepped back)."""
    async with reader.execute(
            "SELECT d.id, d.target, d.attempts, a.kind, a.title, a.body, c.uuid || '.' || a.id FROM deliveries d"
            " JOIN alerts a ON a.id = d.alert_id JOIN checks c ON c.id = a.check_id"
            " WHERE d.next_attempt_at <= ? OR d.next_attempt_at > ?"
            " ORDER BY d.next_attempt_at LIMIT ?", (now.timestamp(), horizon.timestamp(), limit)) as cur:
        return [DueDelivery(*row) for row in await cur.fetchall()]


async def next_attempt_after(reader: aiosqlite.Connection, after: float) -> float | None:
    async with reader.execute("SELECT MIN(next_attempt_at) FROM deliveries WHERE next_attempt_at > ?",
                              (after,)) as cur:
        row = await cur.fetchone()
    return row[0] if row else None


async def count_due_before(reader: aiosqlite.Connection, before: float) -> int:
    """Deliveries that have been due since before `before` and are still waiting: the sender's backlog."""
    async with reader.execute("SELECT count(*) FROM deliveries WHERE next_attempt_at < ?", (before,)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def record_attempts(conn: sqlite3.Connection, attempts: Sequence[Attempt], at: float, ok: bool,
                    error: str | None, back_target: str | None) -> int:
    """Record one attempt per delivery; when `back_target` is given (a retry got through), its other
    deliveries waiting out a backoff are due now. Returns how many were moved so."""
    conn.executemany("UPDATE deliveries SET attempts = ?, next_attempt_at = ?, delivered_at = ?,"
                     " gave_up_at = ?, last_error = ? WHERE id = ?",
                     [(a.attempts, a.next_attempt_at, a.delivered_at, a.gave_up_at, a.error, a.delivery_id)
                      for a in attempts])
    conn.executemany("INSERT INTO delivery_attempts (delivery_id, at, ok, error) VALUES (?, ?, ?, ?)",
                     [(a.delivery_id, at, int(ok), error) for a in attempts])
    if back_target is None:
        return 0
    return int(conn.execute("UPDATE deliveries SET next_attempt_at = ? WHERE next_attempt_at > ? AND target = ?",
                            (at, at, back_target)).rowcount)
