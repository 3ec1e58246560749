"""`/metrics`: heartwatch's state in the Prometheus text exposition format (version 0.0.4).

Per check (archived ones left out): its status, whether it is up, the last run's duration and state, the
time since its last good run, and its runs by state. Process-wide: pings received, counted in memory
since the process started (events are pruned, so no table can count them), and alerts and deliveries,
counted from the outbox tables (so they survive a restart). Everything is read at scrape time through the
store's reads (snapshots and metrics_rows); nothing is cached between scrapes.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from heartwatch.clock import Clock
from heartwatch.core.model import CheckStatus, RunState
from heartwatch.core.status import check_status
from heartwatch.store.base import CheckSnapshot, MetricsRows, Reads
from heartwatch.store.sqlite import PingResult
from heartwatch.web.hub import hub_of

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Checks handled between two turns of the event loop (about a millisecond of work): 30,000 checks took 4.6 s
#: to build in one go, holding every ping up that long (issue 14); sliced, a ping waits one slice at most.
SLICE = 20


class PingCounter:
    """A Hub ping listener: pings stored since this process started, by outcome (recorded, created)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, result: PingResult) -> None:
        self.counts[result.outcome.value] += 1


def escape_label(value: str) -> str:
    """A label value as the format wants it inside double quotes."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 2**53):
        return str(int(value))
    return repr(float(value))


@dataclass
class Family:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, value))

    def render(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in self.samples:
            text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            yield f"{self.name}{{{text}}} {_number(value)}" if text else f"{self.name} {_number(value)}"


async def collect(store: Reads, clock: Clock, pings: PingCounter) -> list[Family]:
    """Every metric family with its samples, read from the store now."""
    now = clock()
    snapshots = await store.snapshots()
    rows = await store.metrics_rows()
    return await families(snapshots, rows, now, pings)


async def families(snapshots: list[CheckSnapshot], rows: MetricsRows, now: datetime, pings: PingCounter
                   ) -> list[Family]:
    durations, last_ok, run_counts = rows.last_duration, rows.last_ok_at, rows.runs_by_state

    status = Family("heartwatch_check_status", "gauge", "1 for the check's current status, 0 for the others.")
    up = Family("heartwatch_check_up", "gauge", "0 while the check is down (its newest run went bad), else 1.")
    duration = Family("heartwatch_last_run_duration_seconds", "gauge",
                      "Duration of the check's newest run that ended (missed runs left out).")
    last_state = Family("heartwatch_last_run_state", "gauge", "1 for the state of the check's newest run, 0 else.")
    since_ok = Family("heartwatch_seconds_since_last_ok", "gauge",
                      "Seconds since the check's newest successful run ended.")
    # Kept runs by their current state: a run leaves "running" when it ends and old runs are pruned, so this
    # goes down as well as up: a gauge (a counter must only grow), named without _total.
    runs_total = Family("heartwatch_runs", "gauge", "Runs of the check kept in the database, by current state.")
    for n, snap in enumerate(snapshots, 1):
        if n % SLICE == 0:
            await asyncio.sleep(0)  # let pings in (see SLICE)
        check, last = snap.check, snap.last_run
        slug = check.slug
        current = check_status(check, last, now, snap.watch)
        for s in CheckStatus:
            status.add(int(s is current), slug=slug, status=s.value)
        up.add(int(current is not CheckStatus.DOWN), slug=slug)
        if check.id in durations:
            duration.add(round(durations[check.id], 3), slug=slug)
        if last is not None:
            for state in RunState:
                last_state.add(int(state is last.state), slug=slug, state=state.value)
        if check.id in last_ok:
            since_ok.add(round(max(0.0, now.timestamp() - last_ok[check.id]), 3), slug=slug)
        for state in RunState:
            runs_total.add(run_counts.get((check.id, state), 0), slug=slug, state=state.value)

    ping_family = Family("heartwatch_pings_total", "counter",
                         "Pings stored since this process started, by outcome (recorded, or created a check).")
    for outcome in ("recorded", "created"):
        ping_family.add(pings.counts[outcome], outcome=outcome)
    alerts = Family("heartwatch_alerts_total", "counter", "Alerts written to the outbox, by kind.")
    for kind, n in rows.alerts_by_kind:
        alerts.add(n, kind=kind)
    deliveries = Family("heartwatch_alert_deliveries_total", "counter",
                        "Alert deliveries (one per alert and target) that ended, by outcome.")
    deliveries.add(rows.delivered, outcome="delivered")
    deliveries.add(rows.gave_up, outcome="gave_up")
    # Pending goes down as well as up, so it is a gauge of its own, not a third outcome of the counter.
    waiting = Family("heartwatch_alert_deliveries_pending", "gauge", "Alert deliveries still to be attempted.")
    waiting.add(rows.pending)
    return [status, up, duration, last_state, since_ok, runs_total, ping_family, alerts, deliveries, waiting]


def render(families: list[Family]) -> str:
    return "".join(line + "\n" for family in families for line in family.render())


async def render_in_slices(families: list[Family]) -> str:
    """`render`, giving the event loop a turn every SLICE * 10 lines."""
    lines: list[str] = []
    for family in families:
        for line in family.render():
            lines.append(line)
            if len(lines) % (SLICE * 10) == 0:
                await asyncio.sleep(0)
    return "".join(line + "\n" for line in lines)


async def metrics(request: Request) -> Response:
    hub = hub_of(request)
    counter: PingCounter = request.app.state.ping_counter
    async with hub.whole_list:
        text = await render_in_slices(await collect(hub.store, hub.clock, counter))
    return Response(text, media_type=CONTENT_TYPE)


routes = [Route("/metrics", metrics, methods=["GET"])]
