"""/metrics: parsed by a strict reader of the text exposition format, and true to the pings and runs behind it."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from support.server import Server

from heartwatch.config import Settings
from heartwatch.store.sqlite import Store
from heartwatch.web.app import create_app
from heartwatch.web.hub import Hub
from heartwatch.web.metrics import Family, escape_label, render

T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """A strict parser for what /metrics may emit: fails on anything the format does not allow."""
    assert text.endswith("\n"), "the exposition must end with a line feed"
    samples: Samples = {}
    types: dict[str, str] = {}
    helps: set[str] = set()
    finished: set[str] = set()  # families whose lines are over: all lines of a family are together
    current: str | None = None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in helps and name not in finished, f"HELP for {name} twice"
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge"), line
            assert name not in types, f"TYPE for {name} twice"
            if current is not None and current != name:
                finished.add(current)
            types[name], current = kind, name
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, label_text, value = match.groups()
            assert name == current and name in types, f"{name}: sample outside its family's block"
            labels: list[tuple[str, str]] = []
            rest = label_text or ""
            while rest:
                m = _LABEL.match(rest)
                assert m, f"bad labels in {line!r}"
                raw = m.group(2)
                labels.append((m.group(1), re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), raw)))
                rest = rest[m.end():]
            key = (name, frozenset(labels))
            assert key not in samples, f"duplicate sample {line!r}"
            samples[key] = float(value)
    return samples, types


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_label_values_are_escaped_and_read_back() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    family = Family("x_total", "counter", "Help with a \\ and\na new line.")
    family.add(3, job='we"ird\\slug\n')
    family.add(1.5, job="plain")
    samples, types = parse(render([family]))
    assert types == {"x_total": "counter"}
    assert get(samples, "x_total", job='we"ird\\slug\n') == 3
    assert get(samples, "x_total", job="plain") == 1.5


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, list[datetime], Store]]:
    store = Store(tmp_path / "hw.db")
    await store.open("key")
    now = [T0]
    hub = Hub(settings=Settings(), store=store, clock=lambda: now[0])
    transport = httpx.ASGITransport(app=create_app(hub))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, now, store
    finally:
        await store.close()


async def scrape(client: httpx.AsyncClient) -> Samples:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(r.text)[0]


async def test_metrics_follow_pings_and_runs(app: tuple[httpx.AsyncClient, list[datetime], Store]) -> None:
    client, now, store = app
    samples = await scrape(client)
    assert get(samples, "heartwatch_pings_total", outcome="recorded") == 0
    assert not [k for k in samples if k[0] == "heartwatch_check_up"]  # no checks yet

    assert (await client.get("/ping/key/backup/start?create=1")).status_code == 201
    now[0] = T0 + timedelta(seconds=90)
    assert (await client.get("/ping/key/backup?step=dump")).status_code == 200
    assert (await client.get("/ping/key/backup/0")).status_code == 200
    now[0] = T0 + timedelta(minutes=10)
    assert (await client.get("/ping/key/sync/start?create=1")).status_code == 201
    assert (await client.get("/ping/key/sync/3")).status_code == 200
    assert (await client.get("/ping/key/missing")).status_code == 404  # not stored: not counted
    now[0] = T0 + timedelta(hours=1)

    samples = await scrape(client)
    assert get(samples, "heartwatch_pings_total", outcome="recorded") == 3
    assert get(samples, "heartwatch_pings_total", outcome="created") == 2
    assert get(samples, "heartwatch_check_status", slug="backup", status="up") == 1
    assert get(samples, "heartwatch_check_status", slug="backup", status="down") == 0
    assert get(samples, "heartwatch_check_status", slug="sync", status="down") == 1
    assert get(samples, "heartwatch_check_up", slug="backup") == 1
    assert get(samples, "heartwatch_check_up", slug="sync") == 0
    assert get(samples, "heartwatch_last_run_duration_seconds", slug="backup") == 90
    assert get(samples, "heartwatch_last_run_duration_seconds", slug="sync") == 0
    assert get(samples, "heartwatch_last_run_state", slug="backup", state="ok") == 1
    assert get(samples, "heartwatch_last_run_state", slug="sync", state="failed") == 1
    assert get(samples, "heartwatch_last_run_state", slug="sync", state="ok") == 0
    assert get(samples, "heartwatch_seconds_since_last_ok", slug="backup") == 3600 - 90
    assert get(samples, "heartwatch_seconds_since_last_ok", slug="sync") is None  # never ok: no sample
    assert get(samples, "heartwatch_runs_total", slug="backup", state="ok") == 1
    assert get(samples, "heartwatch_runs_total", slug="sync", state="failed") == 1
    assert get(samples, "heartwatch_runs_total", slug="sync", state="ok") == 0
    # Exactly one status is 1 per check.
    for slug in ("backup", "sync"):
        assert sum(v for (n, labels), v in samples.items()
                   if n == "heartwatch_check_status" and ("slug", slug) in labels) == 1

    await store.set_paused("sync", True, now[0])
    samples = await scrape(client)
    assert get(samples, "heartwatch_check_status", slug="sync", status="paused") == 1


async def test_alerts_and_deliveries_are_counted_from_the_outbox(
        app: tuple[httpx.AsyncClient, list[datetime], Store]) -> None:
    client, _, store = app
    assert (await client.get("/ping/key/job/fail?create=1")).status_code == 201

    def outbox(conn: sqlite3.Connection) -> None:
        for kind in ("failed", "failed", "recovered"):
            cur = conn.execute(
                "INSERT INTO alerts (check_id, kind, title, body, created_at) VALUES (1, ?, 't', 'b', 0)", (kind,))
            conn.execute("INSERT INTO deliveries (alert_id, target, next_attempt_at) VALUES (?, 'json://x', 0)",
                         (cur.lastrowid,))
        conn.execute("UPDATE deliveries SET next_attempt_at = NULL, delivered_at = 1 WHERE id = 1")
        conn.execute("UPDATE deliveries SET next_attempt_at = NULL, gave_up_at = 1 WHERE id = 2")

    await store.writer.submit(outbox)
    samples, types = parse((await client.get("/metrics")).text)
    # The fail ping's own alert (written by the store in the ping's transaction; no targets, so no delivery)
    # and the two written here.
    assert get(samples, "heartwatch_alerts_total", kind="failed") == 3
    assert get(samples, "heartwatch_alerts_total", kind="recovered") == 1
    assert get(samples, "heartwatch_alert_deliveries_total", outcome="delivered") == 1
    assert get(samples, "heartwatch_alert_deliveries_total", outcome="gave_up") == 1
    assert get(samples, "heartwatch_alert_deliveries_pending") == 1
    assert types["heartwatch_alerts_total"] == "counter" and types["heartwatch_alert_deliveries_pending"] == "gauge"


async def test_archived_checks_are_left_out(app: tuple[httpx.AsyncClient, list[datetime], Store]) -> None:
    client, now, store = app
    await client.get("/ping/key/gone?create=1")
    await store.api_archive("gone", now[0])
    samples = await scrape(client)
    assert not [k for k in samples if ("slug", "gone") in k[1]]


def test_the_real_server_serves_metrics(server: Server) -> None:
    assert httpx.get(server.slug_url("job", "?create=1"), timeout=10).status_code == 201
    r = server.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples, _ = parse(r.text)
    assert get(samples, "heartwatch_pings_total", outcome="created") == 1
    assert get(samples, "heartwatch_runs_total", slug="job", state="ok") == 1
