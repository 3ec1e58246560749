"""The words of an alert: a short title that says what broke, and a body with what a person needs next.

Every alert names the check by its display name and slug, gives local times with the zone's abbreviation
and how long ago, which limit was passed, whether the job is still running, signal names for exit
statuses 128+n, and (reminders, catch-ups) why the check is down and what happened since the last alert.

Also the words of a digest: many alerts for one target sent as one message (see heartwatch.engine.sender), which
counts them by kind, lists the first titles and points to the status page for the rest.
"""

from __future__ import annotations

import functools
import signal
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from heartwatch.core import schedule
from heartwatch.core.durations import format_duration
from heartwatch.core.model import CheckSpec, Run, RunFlag, Since, Trouble
from heartwatch.core.runs import fail_keyword_line, strict_step_problem
from heartwatch.core.watching import AlertIntent, AlertKind, TimeoutLimit

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
    """A time as the check's people read it: local, with the zone's abbreviation (02:30 CET vs 02:30 CEST)."""
    # In UTC before the cache: two local times that differ only in `fold` (02:30 CEST and 02:30 CET) are equal
    # as keys, and would share their words.
    return _local(spec.timezone, at.astimezone(UTC))


@functools.lru_cache(maxsize=1024)  # alerts of one burst share their times and zones
def _local(timezone: str, at: datetime) -> str:
    t = at.astimezone(ZoneInfo(timezone))
    abbreviation = t.strftime("%Z")
    if not abbreviation or abbreviation[0] in "+-":  # zones without letters ("+03"): the offset says it all
        return t.strftime("%Y-%m-%d %H:%M:%S UTC%z")
    return t.strftime(f"%Y-%m-%d %H:%M:%S {abbreviation}")


def _ago(at: datetime, now: datetime) -> str:
    return "just now" if (now - at) < timedelta(seconds=1) else f"{_took(now - at)} ago"


def exit_words(code: int) -> str:
    """An exit status with the signal's name for 128+n, as shells report a killed command."""
    if 128 < code < 128 + 65:
        try:
            return f"{code} (killed by {signal.Signals(code - 128).name})"
        except ValueError:
            return f"{code} (killed by signal {code - 128})"
    return str(code)


def who(spec: CheckSpec) -> str:
    """The check as an alert names it: its display name, and the slug when the name differs."""
    return f"{spec.name} ({spec.slug})" if spec.name and spec.name != spec.slug else spec.slug


def _where(run: Run | None) -> str:
    step = run.last_step if run else None
    return f' at step "{step.name}"' if step else " before any step"


def trouble_words(trouble: Trouble | None) -> str:
    """What is wrong, in a few words: for reminders and catch-ups, which have no run at hand."""
    if trouble is None:
        return "down"
    at = f' at step "{trouble.step}"' if trouble.step else ""
    match trouble.kind:
        case AlertKind.MISSED.value:
            return "did not start"
        case AlertKind.TIMED_OUT.value:
            return f"timed out{at}"
        case AlertKind.FAILED.value:
            code = f" with exit status {exit_words(trouble.exit_code)}" if trouble.exit_code is not None else ""
            return f"failed{code}{at}"
        case AlertKind.INTERRUPTED.value:
            return f"interrupted{at}"
    return trouble.kind.replace("_", " ")


def title(spec: CheckSpec, intent: AlertIntent) -> str:
    words = _title(spec, intent)
    if intent.dependents:
        n = len(intent.dependents)
        words += f" ({n} check{'s depend' if n != 1 else ' depends'} on it)"
    return words


def _title(spec: CheckSpec, intent: AlertIntent) -> str:
    run, name = intent.run, who(spec)
    match intent.kind:
        case AlertKind.MISSED if spec.after is not None:
            return f"DOWN {name}: did not start after {spec.after}"
        case AlertKind.MISSED:
            return f"DOWN {name}: did not start"
        case AlertKind.TIMED_OUT if run is not None:
            still = ", still running" if run.ended_at is None else ""
            if RunFlag.NEXT_RUN_DUE in run.flags:
                return f"DOWN {name}: still running{_where(run)} when the next run was due"
            return f"DOWN {name}: timed out{_where(run)}{still}"
        case AlertKind.FAILED if run is not None:
            problem = strict_step_problem(spec, run) if spec.strict_steps else None
            if problem is not None:
                return f"DOWN {name}: failed, {problem}"
            if RunFlag.FAIL_KEYWORD in run.flags:
                return f"DOWN {name}: failed, its output holds a fail keyword"
            status = f" with exit status {exit_words(run.exit_code)}" if run.exit_code is not None else ""
            return f"DOWN {name}: failed{status}{_where(run) if run.steps else ''}"
        case AlertKind.INTERRUPTED if run is not None:
            return f"DOWN {name}: interrupted{_where(run)} by a new start"
        case AlertKind.TOO_FAST:
            took = _took(run.duration) if run and run.duration else "0s"
            return f"WARN {name}: finished suspiciously fast ({took})"
        case AlertKind.RECOVERED:
            down = ""
            if intent.down_since is not None and intent.at > intent.down_since:
                down = f" after {_took(intent.at - intent.down_since)} down"
            return f"UP {name}: recovered{down}"
        case AlertKind.REMINDER:
            return f"STILL DOWN {name}: {trouble_words(intent.trouble)}"
    return f"DOWN {name}: {trouble_words(intent.trouble)}"  # a catch-up after a hold: no run at hand


def _since_words(spec: CheckSpec, since: Since, now: datetime) -> list[str]:
    """What a reminder or catch-up sums up: what happened since the previous alert."""
    parts = []
    if since.bad:
        last = f", the last {trouble_words(since.last)}" if since.last and since.last.kind != "missed" else ""
        parts.append(f"{since.bad} more bad run{'s' if since.bad != 1 else ''}{last}")
    if since.missed:
        parts.append(f"{since.missed} missed start{'s' if since.missed != 1 else ''}")
    if since.late:
        parts.append(f"{since.late} timed-out run{'s' if since.late != 1 else ''} finished late")
    if since.good:
        parts.append(f"{since.good} good run{'s' if since.good != 1 else ''}, "
                     f"not yet the {spec.recover_after} in a row that count as recovered")
    if since.held:
        parts.append(f"{since.held} alert{'s' if since.held != 1 else ''} held back")
    if not parts:
        return ["Nothing new since the previous alert."]
    when = f" (latest {_ago(since.last_at, now)})" if since.last_at else ""
    return [f"Since the previous alert: {'; '.join(parts)}{when}."]


def body(spec: CheckSpec, intent: AlertIntent, link: str | None, output: bytes = b"") -> str:
    run = intent.run
    lines: list[str] = [f"Check: {who(spec)}"]
    if intent.kind is AlertKind.MISSED and intent.expected_at is not None and spec.after is not None:
        run_of = f"run #{intent.waited_on}" if intent.waited_on is not None else "run"
        lines.append(f"Expected a start within {format_duration(spec.start_grace)} after {spec.after}'s {run_of} "
                     f"finished well at {local(spec, intent.expected_at)} ({_ago(intent.expected_at, intent.at)}); "
                     "none came.")
    elif intent.kind is AlertKind.MISSED and intent.expected_at is not None:
        lines.append(f"Expected a start at {local(spec, intent.expected_at)} ({_ago(intent.expected_at, intent.at)}, "
                     f"grace {format_duration(spec.start_grace)}); none came.")
        if intent.missed > 1:
            lines.append(f"{intent.missed - 1} more expected starts passed while heartwatch was not running.")
    if run is not None and intent.kind not in (AlertKind.MISSED, AlertKind.RECOVERED):
        lines.append(f"Run started {local(spec, run.started_at)} ({_ago(run.started_at, intent.at)})"
                     + (f" (rid {run.rid})" if run.rid else ""))
        step = run.last_step
        if step:
            lines.append(f'Last step: "{step.name}" at {local(spec, step.at)} ({_ago(step.at, intent.at)})')
        if intent.kind is AlertKind.TIMED_OUT:
            lines.append(_limit_words(spec, intent, run))
            if run.ended_at is None:
                lines.append("It is still running: no finish or fail has come.")
        if intent.kind is AlertKind.FAILED and spec.strict_steps:
            problem = strict_step_problem(spec, run)
            if problem:
                lines.append(f"strict_steps: {problem}")
        if run.ended_at is not None and run.duration is not None:
            lines.append(f"Ended {local(spec, run.ended_at)} after {_took(run.duration)}")
        if run.exit_code is not None:
            lines.append(f"Exit status: {exit_words(run.exit_code)}")
        if RunFlag.FAIL_KEYWORD in run.flags:
            line = fail_keyword_line(spec, output)
            lines.append(f"Fail keyword found: {line}" if line else "Fail keyword found in the output.")
        if intent.kind is AlertKind.TOO_FAST and spec.min_runtime:
            lines.append(f"Expected to take at least {format_duration(spec.min_runtime)}.")
    if intent.kind is AlertKind.REMINDER or (run is None and intent.kind is not AlertKind.RECOVERED):
        lines.append(f"Why: {trouble_words(intent.trouble)}.")
    if intent.dependents:
        n = len(intent.dependents)
        lines.append(f"{n} check{'s depend' if n != 1 else ' depends'} on it: {', '.join(intent.dependents)} "
                     f"(their alerts are held until it recovers).")
    if intent.previous is not None and intent.kind not in (AlertKind.RECOVERED, AlertKind.REMINDER):
        lines.append(f"Was: {trouble_words(intent.previous)}.")
    if intent.down_since is not None and intent.kind in (AlertKind.RECOVERED, AlertKind.REMINDER):
        down_for = _took(intent.at - intent.down_since)
        lines.append(f"Down for {down_for}, since {local(spec, intent.down_since)}.")
    if intent.since is not None and intent.kind is not AlertKind.RECOVERED:
        lines += _since_words(spec, intent.since, intent.at)
    if intent.kind is AlertKind.REMINDER and spec.remind_every is not None:
        lines.append(f"A reminder every {format_duration(spec.remind_every)} while it stays down.")
    lines.append(f"When: {local(spec, intent.at)}")
    text = output.decode("utf-8", "replace").strip()
    if text and intent.kind in (AlertKind.FAILED, AlertKind.TIMED_OUT, AlertKind.INTERRUPTED) and run is not None:
        lines += ["", "Output (tail):", text[-OUTPUT_TAIL:]]
    if link:
        lines += ["", link]
    return "\n".join(lines)


def _limit_words(spec: CheckSpec, intent: AlertIntent, run: Run) -> str:
    """Which limit a timed-out run passed."""
    if intent.limit is TimeoutLimit.NEXT_RUN_DUE or RunFlag.NEXT_RUN_DUE in run.flags:
        return ("Limit passed: the next run was due and its start grace "
                f"({format_duration(spec.start_grace)}) ended while this one was still open (no max_runtime).")
    if intent.limit is TimeoutLimit.STEP_MAX:
        nxt = schedule.step_deadline(spec, run)
        for s in spec.steps:
            if s.max and (nxt is None or s.name == nxt[1]):
                return f'Limit passed: step "{s.name}" max {format_duration(s.max)} since the step before it.'
    if spec.max_runtime:
        return f"Limit passed: max_runtime {format_duration(spec.max_runtime)}."
    return "Limit passed: a step's max."


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
