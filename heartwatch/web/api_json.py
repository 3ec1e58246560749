"""How the JSON API shows checks, runs and events. Times are ISO 8601 UTC; a check's settings come from the
table of check settings (core/settings.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from heartwatch.core.dependencies import status_note, waiting_of
from heartwatch.core.model import Run
from heartwatch.core.settings import api_settings
from heartwatch.core.status import check_status
from heartwatch.store.base import CheckSnapshot
from heartwatch.store.codec import from_ts, iso
from heartwatch.web.hub import Hub


def run_json(run: Run) -> dict[str, Any]:
    duration = run.duration
    last = run.last_step
    return {
        "id": run.id,
        "rid": run.rid,
        "state": run.state.value,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "duration_s": None if duration is None else round(duration.total_seconds(), 3),
        "exit_code": run.exit_code,
        "last_step": last.name if last else None,
        "last_step_at": iso(last.at) if last else None,
        "steps": [{"name": s.name, "at": iso(s.at), "flags": [f.value for f in s.flags]} for s in run.steps],
        "flags": sorted(f.value for f in run.flags),
    }


async def relatives_for_json(hub: Hub, snap: CheckSnapshot) -> Mapping[str, CheckSnapshot]:
    """What check_json needs to know of other checks: its depends_on parents (none read for most checks)."""
    return await hub.store.relatives(snap.check.slug) if snap.check.spec.depends_on else {}


def check_json(hub: Hub, snap: CheckSnapshot, relatives: Mapping[str, CheckSnapshot] | None = None
               ) -> dict[str, Any]:
    """`relatives`: other checks by slug (at least its depends_on parents), for what holds it back."""
    check, last_run, watch = snap.check, snap.last_run, snap.watch
    spec = check.spec
    now = hub.clock()
    waiting = waiting_of(check, {s: (r.check, r.watch) for s, r in (relatives or {}).items()}, now)
    return {
        "slug": check.slug,
        "name": spec.display_name,
        "uuid": check.uuid,
        "status": check_status(check, last_run, now, watch).value,
        "next_expected_at": iso(watch.expected_at) if watch and not check.paused else None,
        "ping_url": hub.ping_url(check.uuid),
        "slug_ping_url": hub.slug_url(check.slug),
        **api_settings(spec),  # the table of check settings says which and how
        "paused": check.paused,
        "muted": check.muted,
        "maintenance_until": iso(check.maintenance_until),
        "archived": check.archived,
        "source": check.source.value,
        "last_run": run_json(last_run) if last_run else None,
        "waiting_on": list(waiting),
        "status_note": status_note(spec, watch, waiting),
    }


def event_json(event: dict[str, Any]) -> dict[str, Any]:
    body: bytes | None = event["body"]
    return {**event, "at": iso(from_ts(event["at"])),
            # Bodies are whatever the job printed; show them as text without ever failing on bad UTF-8.
            "body": body.decode("utf-8", "replace") if body else ""}
