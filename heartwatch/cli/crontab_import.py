"""Turning an existing crontab into heartwatch checks: parse the lines, propose a check per job, and
rewrite each job line to run under `heartwatch run`.

Pure functions of text in, text out; `heartwatch import-crontab` only reads the file and prints.
Lines this module does not understand are kept exactly as they were, with a note, never dropped.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from heartwatch.core.schedule import CRON_MACROS, validate_schedule

#: cron's @-macros and the five-field schedules they stand for. @reboot has no schedule to watch.
MACROS = CRON_MACROS
_ENV_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_FIELDS_RE = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.*?)\s*$")
_MACRO_RE = re.compile(r"^\s*(@\S+)\s+(.*?)\s*$")
#: Trailing redirections (`>/dev/null 2>&1`, `>> log`) stay outside `heartwatch run`, so it still sees the
#: output (for the tail it sends) and the file still receives it.
_REDIRECTS_RE = re.compile(r"(?:\s+(?:\d?>>?|&>>?)\s*(?:&\d|[^\s;&|<>()'\"`$]+))+$")
#: Characters that make a command more than one simple command; such a command is wrapped in `sh -c`.
_SHELL_META = set(";&|<>()$`\\\"'*?[]{}~#\n")
_ASSIGNMENTS_RE = re.compile(r"^((?:[A-Za-z_][A-Za-z0-9_]*=\S*(?:\s+|$))+)")
#: A comment right above a job that names its check: `# heartwatch: nightly-backup`.
_SLUG_COMMENT_RE = re.compile(r"^#\s*heartwatch\s*:\s*([a-z0-9_-]{1,64})\s*$")
#: A comment describing the job gives its slug when it is short; longer ones only name the check.
_SLUG_COMMENT_MAX_WORDS = 5
_SKIP_PROGRAMS = {"cd", "export", "source", ".", "set", "umask", "sleep", "test", "[", "true", ":"}
#: Programs that run another program; the slug comes from what they run.
#: Value: (positional arguments before the program, options that take a value).
_WRAPPERS: dict[str, tuple[int, frozenset[str]]] = {
    "nice": (0, frozenset({"-n"})),
    "ionice": (0, frozenset({"-c", "-n", "-p"})),
    "nohup": (0, frozenset()),
    "time": (0, frozenset()),
    "chronic": (0, frozenset()),
    "env": (0, frozenset({"-u", "-C"})),
    "sudo": (0, frozenset({"-u", "-g"})),
    "flock": (1, frozenset({"-w", "-E"})),
    "timeout": (1, frozenset({"-s", "-k"})),
    "systemd-cat": (0, frozenset({"-t", "-p"})),
    "run-parts": (0, frozenset({"-u", "--arg", "--umask"})),  # the folder it runs names the job
}
_INTERPRETERS = re.compile(r"^(sh|bash|dash|zsh|ksh|python[0-9.]*|perl|ruby|php[0-9.]*|node|Rscript)$")


@dataclass(frozen=True)
class CronJob:
    """One job line of a crontab."""

    line_no: int
    schedule: str  # five fields, macros expanded
    command: str  # the command as cron gives it to the shell
    timezone: str | None = None  # from CRON_TZ / TZ above it
    user: str | None = None  # the user column of /etc/crontab and /etc/cron.d files
    macro: str | None = None


@dataclass
class Proposal:
    """A check proposed for a job, and the job line rewritten to report to it."""

    slug: str
    job: CronJob
    rewritten: str
    name: str | None = None  # from a comment right above the job line


@dataclass
class ImportResult:
    proposals: list[Proposal] = field(default_factory=list)
    crontab: list[str] = field(default_factory=list)  # the rewritten crontab, line by line
    notes: list[str] = field(default_factory=list)  # what was left alone, and why


def expand_schedule(text: str) -> str | None:
    return MACROS.get(text)  # cron compares macros case-sensitively; so do we, to expect what cron runs


def slug_for(command: str) -> str:
    """A readable slug from a command: the program or script it runs, without path and extension."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True  # keeps paths like /usr/bin/x.sh in one word
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: a rough split still finds the program
        words = command.split()
    segments: list[list[str]] = [[]]
    for word in words:
        if word and set(word) <= set(";&|()<>"):
            segments.append([])
        else:
            segments[-1].append(word)
    for segment in segments:
        name = _program_name(segment)
        if name:
            return _slugify(name)
    return "job"


def _program_name(words: list[str]) -> str | None:
    i = 0
    while i < len(words):
        word = words[i]
        prog = os.path.basename(word)
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word) or word.startswith("-"):
            i += 1  # VAR=value prefixes, and options of a wrapper or interpreter
        elif prog in _SKIP_PROGRAMS:
            return None
        elif _INTERPRETERS.match(prog):
            i += 1
            while i < len(words) and words[i].startswith("-"):
                if words[i] in ("-c", "-m") and i + 1 < len(words):
                    # `sh -c 'backup.sh --full'`, `python3 -m reports.weekly`: the argument names the job
                    return slug_for(words[i + 1]) if words[i] == "-c" else words[i + 1].rsplit(".", 1)[-1]
                i += 1
        elif prog in _WRAPPERS:
            positional, with_value = _WRAPPERS[prog]
            i += 1
            while i < len(words) and (words[i].startswith("-") or positional):
                if words[i] in with_value:
                    i += 1
                elif not words[i].startswith("-"):
                    positional -= 1
                i += 1
        else:
            return re.sub(r"\.(sh|bash|py|pl|rb|php|js)$", "", prog) or None
    return None


def _slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")
    return slug[:64].rstrip("-_") or "job"


def _split_redirects(command: str) -> tuple[str, str]:
    m = _REDIRECTS_RE.search(command)
    if not m or m.start() == 0:
        return command, ""
    return command[: m.start()], command[m.start():]


def _has_unescaped_percent(text: str) -> bool:
    return re.search(r"(?<!\\)%", text) is not None


def _split_assignments(core: str) -> tuple[str, str]:
    """`FOO=bar BAZ=1 cmd args` -> ("FOO=bar BAZ=1 ", "cmd args"): the variables the shell sets for the command."""
    m = _ASSIGNMENTS_RE.match(core)
    return (m.group(1), core[m.end(1):]) if m else ("", core)


def wrap_command(slug: str, command: str, heartwatch_bin: str = "heartwatch") -> str | None:
    """`command` rewritten to run under `heartwatch run`, or None when that cannot be done safely.

    Variables set in front of the command (`PGPASSWORD=x pg_dump`) go in front of `heartwatch run`, which
    passes its environment on to the job: the job sees them as before, and `heartwatch run` is what the
    shell runs.
    """
    core, redirects = _split_redirects(command)
    core = core.strip()
    if _has_unescaped_percent(core):
        # cron turns an unescaped % into a newline before any shell quoting applies; `sh -c '...'` would
        # be cut in two, so such a line is left for the user to wrap by hand.
        return None
    run = f"{heartwatch_bin} run {slug} --"
    if not (set(core) & _SHELL_META):
        assignments, program = _split_assignments(core)
        if not program:
            return None  # only variables: nothing to run
        return f"{assignments}{run} {program}{redirects}"
    return f"{run} sh -c {shlex.quote(core)}{redirects}"


def _is_monitored(command: str) -> bool:
    return bool(re.search(r"\bheartwatch\s+(run|ping)\b|/ping/|hc-ping\.com", command))


def _valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return False
    return True


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_and_rewrite(text: str, *, system: bool = False, heartwatch_bin: str = "heartwatch") -> ImportResult:
    """Read a crontab; propose one check per job and rewrite its line. `system`: lines have a user column."""
    result = ImportResult()
    timezone: str | None = None
    used: set[str] = set()
    comment: str | None = None  # the comment line right above the current line, if any
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        above, comment = comment, (line if line.startswith("#") else None)
        if not line or line.startswith("#"):
            result.crontab.append(raw)
            continue
        env = _ENV_RE.match(raw)
        if env and not line.startswith("@") and not re.match(r"^\S+\s+\S+\s+\S+\s+\S+\s+\S+\s", line):
            name, value = env.group(1), _unquote(env.group(2))
            if name in ("CRON_TZ", "TZ"):
                if _valid_zone(value):
                    timezone = value
                else:
                    timezone = None
                    result.notes.append(f"line {line_no}: {name}={value!r} is not a known time zone; "
                                        "the checks below it use the server's default")
            result.crontab.append(raw)
            continue
        job = _parse_job(line_no, line, timezone, system)
        if isinstance(job, str):
            result.notes.append(f"line {line_no}: {job}; left as is")
            result.crontab.append(raw)
            continue
        if _is_monitored(job.command):
            result.notes.append(f"line {line_no}: already reports to heartwatch; left as is")
            result.crontab.append(raw)
            continue
        from_comment, name = _slug_from_comment(above, system)
        slug = _unique(from_comment or slug_for(job.command), used)
        wrapped = wrap_command(slug, job.command, heartwatch_bin)
        if wrapped is None:
            # Left as it was, so no check is proposed for it either: one would miss every run.
            used.discard(slug)
            why = ("the command contains an unescaped %, which cron treats as a newline"
                   if _has_unescaped_percent(job.command) else "there is no command to run")
            result.notes.append(f"line {line_no}: {why}; left as is and no check proposed; wrap it by hand as "
                                f"`{heartwatch_bin} run {slug} -- ...` and add a [checks.{slug}]")
            result.crontab.append(raw)
            continue
        when = job.macro or job.schedule
        prefix = f"{when}\t{job.user}\t" if job.user else f"{when}\t"
        rewritten = prefix + wrapped
        result.proposals.append(Proposal(slug, job, rewritten, name))
        result.crontab.append(rewritten)
    return result


def _slug_from_comment(comment: str | None, system: bool) -> tuple[str | None, str | None]:
    """(slug, name) from the comment right above a job: `# heartwatch: SLUG` names the slug; a short
    description (up to five words) gives both, a longer one only the check's name. A commented-out job or
    variable line, or the `m h dom mon dow command` header, says nothing."""
    if comment is None:
        return None, None
    explicit = _SLUG_COMMENT_RE.match(comment)
    if explicit:
        return explicit.group(1), None
    text = comment.lstrip("#").strip()
    if not text or _ENV_RE.match(text) or not isinstance(_parse_job(0, text, None, system), str) \
            or text.split()[:5] == ["m", "h", "dom", "mon", "dow"]:
        return None, None
    slug = _slugify(text) if len(text.split()) <= _SLUG_COMMENT_MAX_WORDS else None
    return (slug if slug != "job" else None), text[:100]


def _parse_job(line_no: int, line: str, timezone: str | None, system: bool) -> CronJob | str:
    """A job line -> CronJob, or the reason it is not one heartwatch can watch."""
    macro_match = _MACRO_RE.match(line)
    if line.startswith("@"):
        if not macro_match:
            return "an @-macro without a command"
        macro, rest = macro_match.group(1), macro_match.group(2)
        if macro == "@reboot":
            return "@reboot runs at boot, not on a schedule heartwatch can expect"
        schedule = expand_schedule(macro)
        if schedule is None:
            return f"unknown macro {macro} (cron knows {', '.join(MACROS)} and @reboot, in lower case)"
    else:
        fields = _FIELDS_RE.match(line)
        if not fields:
            return "not a crontab job line (five schedule fields and a command)"
        schedule, rest, macro = " ".join(fields.group(*range(1, 6))), fields.group(6), None
        try:
            validate_schedule(schedule)
        except ValueError as e:  # what the server would refuse too, e.g. `0 0 31 2 *` (never fires)
            return f"schedule {schedule!r} cannot be watched: {e}"
    user = None
    if system:
        parts = rest.split(None, 1)
        if len(parts) < 2:
            return "a system crontab line needs a user and a command"
        user, rest = parts
    return CronJob(line_no, schedule, rest, timezone, user, macro)


def _unique(slug: str, used: set[str]) -> str:
    candidate, n = slug, 2
    while candidate in used:
        suffix = f"-{n}"
        candidate, n = slug[: 64 - len(suffix)] + suffix, n + 1
    used.add(candidate)
    return candidate


def toml_string(value: str) -> str:
    """A TOML basic string; JSON's escapes are a subset of TOML's."""
    return json.dumps(value, ensure_ascii=False)


def checks_toml(proposals: list[Proposal]) -> str:
    """The `[checks.<slug>]` tables to add to heartwatch.toml, one per proposal."""
    blocks = []
    for p in proposals:
        lines = [
            f"# crontab line {p.job.line_no}: {' '.join(p.job.command.split())[:100]}",
            f"[checks.{p.slug}]",
        ]
        if p.name:
            lines.append(f"name = {toml_string(p.name)}")
        lines.append(f"schedule = {toml_string(p.job.schedule)}")
        if p.job.timezone:
            lines.append(f"timezone = {toml_string(p.job.timezone)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def render(result: ImportResult, *, server: str | None = None, ping_key: str | None = None) -> str:
    """What `heartwatch import-crontab` prints: the TOML to add, then the rewritten crontab."""
    out = ["# ---- add to heartwatch.toml " + "-" * 40, ""]
    out.append(checks_toml(result.proposals) if result.proposals else "# (no jobs found to monitor)\n")
    out += ["# ---- rewritten crontab (install with `crontab FILE`) " + "-" * 14]
    for note in result.notes:
        out.append(f"# note: {note}")
    # Environment lines in a crontab apply to every job below them: one place for the server settings.
    out.append(f"HEARTWATCH_URL={server}" if server else "# HEARTWATCH_URL=http://your-heartwatch-server:8000")
    out.append(f"HEARTWATCH_PING_KEY={ping_key}" if ping_key
               else "# HEARTWATCH_PING_KEY=<the server's ping key> (needed for slug ping URLs)")
    out += result.crontab
    return "\n".join(out) + "\n"
