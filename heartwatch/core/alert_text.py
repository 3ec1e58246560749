"""The words of an alert: a short title that says what broke, and a body with what a person needs next.

Also the words of a digest: many alerts for one target sent as one message (see heartwatch.engine.sender), which
counts them by kind, lists the first titles and points to the status page for the rest.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from heartwatch.core.durations import format_duration
from heartwatch.core.model import CheckSpec, Run
from heartwatch.core.watching import AlertIntent, AlertKind

#: How much of a job's output goes into an alert: chat targets truncate long messages anyway.
OUTPUT_TAIL = 1000

#: Alert titles a digest lists, one a line; the rest are counted. Twenty titles are about 1.5 KB, within
#: what chat services show in one message (Telegram and Discord cut at 4096 and 2000 characters).
DIGEST_LISTED = 20

# How a digest's title counts each kind, the worst first.
_DIGEST_WORDS = {AlertKind.FAILED: "failed", AlertKind.TIMED_OUT: "timed out", AlertKind.INTERRUPTED: "interrupted",
                 AlertKind.MISSED: "missed", AlertKind.REMINDER: "still down", AlertKind.TOO_FAST: "too fast",
                 AlertKind.RECOVERED: "recovered"}


def local(spec: CheckSpec, at: datetime) -> str:
    return _local(spec.timezone, at)


@functools.lru_cache(maxsize=1024)  # alerts of one burst share their times and zones
def _local(timezone: str, at: datetime) -> str:
    return at.astimezone(ZoneInfo(timezone)).strftime(f"%Y-%m-%d %H:%M:%S {timezone}")


def _where(run: Run | None) -> str:
    step = run.last_step if run else None
    return f' at step "{step.name}"' if step else " before any step"


def title(slug: str, intent: AlertIntent) -> str:
    run = intent.run
    match intent.kind:
        case AlertKind.MISSED:
            return f"DOWN {slug}: did not start"
        case AlertKind.TIMED_OUT:
            return f"DOWN {slug}: timed out{_where(run)}"
        case AlertKind.FAILED:
            status = f" with exit status {run.exit_code}" if run and run.exit_code is not None else ""
            return f"DOWN {slug}: failed{status}{_where(run) if run and run.steps else ''}"
        case AlertKind.INTERRUPTED:
            return f"DOWN {slug}: interrupted{_where(run)} by a new start"
        case AlertKind.TOO_FAST:
            took = _took(run.duration) if run and run.duration else "0s"
            return f"WARN {slug}: finished suspiciously fast ({took})"
        case AlertKind.RECOVERED:
            down = f" after {_took(intent.at - intent.down_since)} down" if intent.down_since else ""
            return f"UP {slug}: recovered{down}"
        case AlertKind.REMINDER:
            return f"STILL DOWN {slug}"
    raise ValueError(intent.kind)


def body(spec: CheckSpec, intent: AlertIntent, link: str | None, output: bytes = b"") -> str:
    run = intent.run
    lines: list[str] = []
    if intent.kind is AlertKind.MISSED and intent.expected_at is not None:
        lines.append(f"Expected a start at {local(spec, intent.expected_at)} "
                     f"(grace {format_duration(spec.start_grace)}); none came.")
        if intent.missed > 1:
            lines.append(f"{intent.missed - 1} more expected starts passed while heartwatch was not running.")
    if run is not None and intent.kind is not AlertKind.MISSED:
        lines.append(f"Run started {local(spec, run.started_at)}" + (f" (rid {run.rid})" if run.rid else ""))
        step = run.last_step
        if step:
            lines.append(f'Last step: "{step.name}" at {local(spec, step.at)}')
        if intent.kind is AlertKind.TIMED_OUT and spec.max_runtime:
            lines.append(f"Allowed: {format_duration(spec.max_runtime)} in all"
                         + "".join(f'; "{s.name}" {format_duration(s.max)}' for s in spec.steps if s.max))
        if run.ended_at is not None and run.duration is not None:
            lines.append(f"Ended {local(spec, run.ended_at)} after {_took(run.duration)}")
        if run.exit_code is not None:
            lines.append(f"Exit status: {run.exit_code}")
        if intent.kind is AlertKind.TOO_FAST and spec.min_runtime:
            lines.append(f"Expected to take at least {format_duration(spec.min_runtime)}.")
    if intent.down_since is not None and intent.kind in (AlertKind.RECOVERED, AlertKind.REMINDER):
        down_for = _took(intent.at - intent.down_since)
        lines.append(f"Down for {down_for}, since {local(spec, intent.down_since)}.")
    lines.append(f"When: {local(spec, intent.at)}")
    text = output.decode("utf-8", "replace").strip()
    if text and intent.kind in (AlertKind.FAILED, AlertKind.TIMED_OUT, AlertKind.INTERRUPTED):
        lines += ["", "Output (tail):", text[-OUTPUT_TAIL:]]
    if link:
        lines += ["", link]
    return "\n".join(lines)


def _took(delta: timedelta) -> str:
    """A duration for people: whole seconds, and "0s" rather than "0"."""
    seconds = max(0, round(delta.total_seconds()))  # never negative, even across a clock stepped back
    return format_duration(timedelta(seconds=seconds)) if seconds else "0s"


def digest_title(kinds: Sequence[str]) -> str:
    """How many alerts, and how many of each kind (`kinds`: AlertKind values, one per alert), the worst first:
    "heartwatch: 37 alerts (5 failed, 30 missed, 2 recovered)"."""
    counts = Counter(kinds)
    words = [(word, counts.pop(kind.value, 0)) for kind, word in _DIGEST_WORDS.items()]
    words += [(kind.replace("_", " "), n) for kind, n in sorted(counts.items())]  # a kind added later
    return f"heartwatch: {len(kinds)} alerts ({', '.join(f'{n} {word}' for word, n in words if n)})"


def digest_body(titles: Sequence[str], status_url: str | None) -> str:
    """The first DIGEST_LISTED titles, one a line, how many more there are, and where to see them all."""
    lines = list(titles[:DIGEST_LISTED])
    if len(titles) > DIGEST_LISTED:
        lines.append(f"... and {len(titles) - DIGEST_LISTED} more")
    if status_url:
        lines += ["", f"Status page: {status_url}"]
    return "\n".join(lines)
