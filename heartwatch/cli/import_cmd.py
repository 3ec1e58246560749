"""`heartwatch import healthchecks|kuma`: bring checks over from Healthchecks or Uptime Kuma, keeping their ping URLs.

Both read the other tool's checks (Healthchecks: its management API v3, or that API's answer saved to a file;
Uptime Kuma: a backup export), turn each into Healthchecks' create body, and send it to the target heartwatch's
own Healthchecks-compatible API (`/api/v3/`, web/hc_api.py) with the check's UUID (`uuid`) or push token
(`aliases`): a new check keeps the UUID, an existing one (same slug) gets it as an alias, so `/ping/<uuid>` and
`/api/push/<token>` URLs keep working once the host name points at heartwatch. Going through the server (not its
database) lets the running scheduler hear of every change.

Running it twice changes nothing: checks are matched by UUID and slug, and an unchanged check is not written.
`--dry-run` prints what it would do and sends nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

from heartwatch.cli.ping_client import DEFAULT_SERVER
from heartwatch.core.healthchecks import MAX_SECONDS, MIN_SECONDS, slugify

EXIT_FAILED = 1
TIMEOUT = 30.0
#: Healthchecks fields carried over, as its API names them.
FIELDS = ("name", "slug", "tags", "desc", "timeout", "grace", "schedule", "tz", "manual_resume", "methods")


class ImportProblem(Exception):
    """What stops the import, as the one line to show."""


@dataclass
class Planned:
    """One check to create or update on the target: Healthchecks' create body, plus whether it is paused."""

    body: dict[str, Any]
    paused: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return str(self.body.get("slug") or slugify(str(self.body.get("name", ""))))


# --- reading the other tool (pure) ---------------------------------------------------------------------------


def healthchecks_plan(doc: Any) -> list[Planned]:
    """The checks of a Healthchecks API answer (`{"checks": [...]}`, or the list itself) as create bodies."""
    checks = doc.get("checks") if isinstance(doc, dict) else doc
    if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
        raise ImportProblem('expected Healthchecks\' list of checks: {"checks": [...]} as GET /api/v3/checks/ answers')
    plan = []
    for c in checks:
        if not c.get("uuid"):
            raise ImportProblem(f"check {c.get('name') or c.get('slug')!r} has no uuid: read-only API keys hide "
                                "UUIDs; use a read-write key")
        body = {k: c[k] for k in FIELDS if c.get(k) is not None and c.get(k) != ""}
        if "schedule" in body:
            body.pop("timeout", None)
        else:
            body.pop("tz", None)
        if c.get("failure_kw") and (c.get("filter_body") or c.get("filter_http_body")):
            body["failure_kw"] = c["failure_kw"]
        body["uuid"] = c["uuid"]
        if body.get("slug"):
            body["unique"] = ["slug"]  # a check of the same slug already here is updated and answers to the UUID
        plan.append(Planned(body, paused=c.get("status") == "paused"))
    return plan


def _seconds(value: Any, least: int = MIN_SECONDS) -> tuple[int, str | None]:
    """Seconds within Healthchecks' limits, and a note when they had to move."""
    n = int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
    if n < least:
        return least, f"{n}s raised to {least}s (the shortest heartwatch's /api/v3/ takes)"
    if n > MAX_SECONDS:
        return MAX_SECONDS, f"{n}s lowered to {MAX_SECONDS}s"
    return n, None


def kuma_plan(doc: Any) -> tuple[list[Planned], list[str]]:
    """The push monitors of an Uptime Kuma backup export (`{"monitorList": [...]}`), and what was left out.

    A push monitor is down when no push came for `interval` seconds, and alerts after `maxretries` more tries
    `retryInterval` apart: here a check expected every `interval` with that much grace. Its push token becomes
    an alias, so `/api/push/<token>` keeps working. Other monitor types poll something: heartwatch does not.
    """
    monitors = doc.get("monitorList") if isinstance(doc, dict) else None
    if not isinstance(monitors, list):
        raise ImportProblem("expected an Uptime Kuma backup export: a JSON object with \"monitorList\" (Settings > "
                            "Backup > Export in Uptime Kuma 1.x; 2.0 has no JSON export)")
    plan: list[Planned] = []
    skipped: list[str] = []
    taken: set[str] = set()
    for m in monitors:
        if not isinstance(m, dict):
            continue
        name = str(m.get("name") or "")
        if m.get("type") != "push":
            skipped.append(f"{name!r}: a {m.get('type')} monitor (heartwatch only takes pings, it does not poll)")
            continue
        if not m.get("pushToken"):
            skipped.append(f"{name!r}: a push monitor without a push token")
            continue
        slug = base = slugify(name) or f"kuma-{m.get('id')}"
        n = 2
        while slug in taken:
            slug, n = f"{base[:60]}-{n}", n + 1
        taken.add(slug)
        notes = []
        timeout, note = _seconds(m.get("interval"))
        if note:
            notes.append(f"interval {note}")
        retries = m.get("maxretries") or 0
        grace, note = _seconds((m.get("retryInterval") or 0) * retries)
        if note and retries:
            notes.append(f"grace {note}")
        if m.get("upsideDown"):
            notes.append("upside down mode has no equivalent: a push is a success here")
        tags = [str(t.get("name", "")).replace(" ", "-") for t in m.get("tags") or [] if isinstance(t, dict)]
        body: dict[str, Any] = {"name": name, "slug": slug, "timeout": timeout, "grace": grace,
                                "aliases": [m["pushToken"]], "unique": ["slug"]}
        if m.get("description"):
            body["desc"] = str(m["description"])
        if any(tags):
            body["tags"] = " ".join(t for t in tags if t)
        plan.append(Planned(body, paused=m.get("active") in (False, 0), notes=notes))
    return plan, skipped


def same(body: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether the target's check already says what `body` would set."""
    return all(current.get(k) == body[k] for k in FIELDS if k in body and not (k == "tz" and "schedule" not in body))


# --- talking to the servers ------------------------------------------------------------------------------


def _get(client: httpx.Client, url: str, what: str) -> Any:
    try:
        r = client.get(url)
    except httpx.HTTPError as e:
        raise ImportProblem(f"cannot reach {what} at {url}: {e}") from None
    if r.status_code in (401, 403):
        raise ImportProblem(f"{what} refused the API key ({r.status_code}): {r.text.strip()[:200]}")
    if r.status_code != 200:
        raise ImportProblem(f"{what} answered {r.status_code} to GET {url}: {r.text.strip()[:200]}")
    try:
        return r.json()
    except ValueError:
        raise ImportProblem(f"{what} did not answer JSON at {url}") from None


def fetch_healthchecks(url: str, api_key: str) -> Any:
    with httpx.Client(headers={"X-Api-Key": api_key}, timeout=TIMEOUT) as client:
        return _get(client, f"{url.rstrip('/')}/api/v3/checks/", "Healthchecks")


def load_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ImportProblem(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ImportProblem(f"{path} is not JSON: {e}") from None


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0


def apply(plan: list[Planned], server: str, token: str, dry_run: bool, echo: Callable[[str], None]) -> Tally:
    """Create or update each planned check on the target heartwatch; one line each says what happened."""
    tally = Tally()
    api = f"{server.rstrip('/')}/api/v3"
    with httpx.Client(headers={"X-Api-Key": token}, timeout=TIMEOUT) as client:
        current = _get(client, f"{api}/checks/", "the heartwatch server").get("checks", [])
        by_uuid = {c.get("uuid"): c for c in current}
        by_slug = {c.get("slug"): c for c in current}
        for item in plan:
            body = item.body
            there = by_uuid.get(body.get("uuid")) or by_slug.get(item.slug)
            verb = "create" if there is None else "keep" if same(body, there) else "update"
            alias = there is not None and body.get("uuid") not in (None, there.get("uuid"))
            extra = "".join(f"; {n}" for n in item.notes)
            line = f"{item.slug}: {verb}" + (" (its UUID becomes an alias)" if alias else "") + extra
            if dry_run:
                pausing = item.paused and (there or {}).get("status") != "paused"
                echo(f"would {line}" + ("; paused" if pausing else ""))
                _count(tally, verb)
                continue
            r = client.post(f"{api}/checks/", json=body)
            if r.status_code not in (200, 201):
                tally.failed += 1
                echo(f"{item.slug}: not imported: {r.status_code} {_reason(r)}")
                continue
            made = r.json()
            if item.paused and made.get("status") != "paused":
                client.post(f"{api}/checks/{made['uuid']}/pause")
                line += "; paused"
            _count(tally, verb)
            echo(line)
    return tally


def _reason(r: httpx.Response) -> str:
    try:
        return str(r.json().get("error", r.text))
    except ValueError:
        return r.text.strip()[:200]


def _count(tally: Tally, verb: str) -> None:
    if verb == "create":
        tally.created += 1
    elif verb == "update":
        tally.updated += 1
    else:
        tally.unchanged += 1


def _summary(tally: Tally, dry_run: bool, skipped: Iterable[str]) -> str:
    skipped = list(skipped)
    counts = f"{tally.created} to create, {tally.updated} to update, {tally.unchanged} unchanged" if dry_run else (
        f"{tally.created} created, {tally.updated} updated, {tally.unchanged} unchanged")
    if tally.failed:
        counts += f", {tally.failed} failed"
    if skipped:
        counts += f", {len(skipped)} skipped"
    return f"heartwatch import: {counts}" + (" (dry run: nothing sent)" if dry_run else "")


# --- the commands ----------------------------------------------------------------------------------------


def _target_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")(f)
    f = click.option("--token", envvar="HEARTWATCH_API_TOKEN", required=True,
                     help="An API token of the target heartwatch ([api] tokens)  [env HEARTWATCH_API_TOKEN]")(f)
    return click.option("--server", envvar="HEARTWATCH_URL", default=DEFAULT_SERVER, show_default=True,
                        help="The heartwatch to import into  [env HEARTWATCH_URL]")(f)


def _run(plan_of: Callable[[], tuple[list[Planned], list[str]]], server: str, token: str, dry_run: bool) -> None:
    try:
        plan, skipped = plan_of()
        tally = apply(plan, server, token, dry_run, click.echo)
    except ImportProblem as e:
        click.echo(f"heartwatch import: {e}", err=True)
        sys.exit(EXIT_FAILED)
    for s in skipped:
        click.echo(f"skipped {s}")
    click.echo(_summary(tally, dry_run, skipped))
    sys.exit(EXIT_FAILED if tally.failed else 0)


@click.group("import")
def import_group() -> None:
    """Bring checks over from Healthchecks or Uptime Kuma, keeping their ping URLs working."""


@import_group.command("healthchecks")
@click.option("--url", help="The Healthchecks site, e.g. https://healthchecks.io (its API v3 is read)")
@click.option("--api-key", envvar="HEALTHCHECKS_API_KEY", help="A read-write API key of the Healthchecks project "
              "(read-only keys hide UUIDs)  [env HEALTHCHECKS_API_KEY]")
@click.option("--from-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Healthchecks' answer to GET /api/v3/checks/, saved to a file")
@_target_options
def import_healthchecks(url: str | None, api_key: str | None, from_file: Path | None, server: str, token: str,
                        dry_run: bool) -> None:
    """Every check of a Healthchecks project, with its schedule, time zone, grace, tags, description and UUID."""
    if (url is None) == (from_file is None):
        raise click.UsageError("give --url (with --api-key) or --from-file")
    if url is not None and not api_key:
        raise click.UsageError("--url needs --api-key")

    def plan() -> tuple[list[Planned], list[str]]:
        doc = load_file(from_file) if from_file is not None else fetch_healthchecks(url or "", api_key or "")
        return healthchecks_plan(doc), []

    _run(plan, server, token, dry_run)


@import_group.command("kuma")
@click.option("--from-file", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="An Uptime Kuma backup export (JSON)")
@_target_options
def import_kuma(from_file: Path, server: str, token: str, dry_run: bool) -> None:
    """The push monitors of an Uptime Kuma backup, each answering its old push URL."""
    _run(lambda: kuma_plan(load_file(from_file)), server, token, dry_run)
