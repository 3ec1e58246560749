"""Reading one setting's value from TOML or JSON: parsers that raise ValueError with a reason a user can act
on, and ConfigError, which adds the key and the value to that reason.

Pure (no I/O besides zoneinfo's look-up of a zone). The check settings (core/settings.py) and the server
settings (config.py) are both built from these parsers, so the file, the environment, the API and
`?create=1` accept exactly the same values with the same messages.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from heartwatch.core.durations import parse_duration
from heartwatch.core.model import StepSpec
from heartwatch.core.schedule import validate_schedule

SLUG_RE = re.compile(r"^[a-z0-9_-]{1,64}\Z")  # \Z: `$` would let a trailing newline in
#: Step names share the rid alphabet so they are safe in URLs, logs and HTML attributes.
NAME_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")
#: Step names that mean something else in `?step=`.
RESERVED_STEPS = frozenset({"start", "finish", "fail", "success", "log"})

#: Settings that hold secrets (Apprise URLs carry tokens): a bad value is named but never repeated.
SECRET_KEY_RE = re.compile(r"(^|\.)(urls|alerts|tokens|read_tokens|password)\Z"
                           r"|\AHEARTWATCH_(ALERT_URLS|API_TOKEN|API_READ_TOKEN|WEB_PASSWORD)\Z")


class ConfigError(Exception):
    """A bad setting: `str()` is the one line shown to the user (a secret's value is left out of it)."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key, self.value, self.reason = key, value, reason
        #: The value as messages may show it: repr'd, or hidden for a secret.
        self.shown = shown = "(hidden: it may hold a secret)" if SECRET_KEY_RE.search(key) else repr(value)
        # A quoted TOML key may hold a line break; escaped, the message stays one line.
        one_line = key if key.isprintable() else key.encode("unicode_escape").decode()
        super().__init__(f"{one_line} = {shown}: {reason}")


#: A parser: a value as TOML or JSON gives it -> the typed value; raises ValueError with a reason.
Parser = Callable[[object], Any]


def text(v: object) -> str:
    if not isinstance(v, str):
        raise ValueError("expected a string")
    return v


def boolean(v: object) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def whole_number(lo: int, hi: int) -> Callable[[object], int]:
    def parse(v: object) -> int:
        if isinstance(v, str) and v.strip().isascii() and v.strip().isdigit() and len(v.strip()) <= 19:
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError(f"expected a whole number from {lo} to {hi}")
        return v

    return parse


def choice(*options: str) -> Callable[[object], str]:
    def parse(v: object) -> str:
        if v not in options:
            raise ValueError(f"expected one of: {', '.join(options)}")
        return str(v)

    return parse


def duration(v: object) -> timedelta:
    if not isinstance(v, str):
        raise ValueError("expected a duration string like 90s, 15m, 2h, 1d or 1h30m")
    return parse_duration(v)


def positive_duration(v: object) -> timedelta:
    d = duration(v)
    if d <= timedelta(0):
        raise ValueError("must be longer than 0")
    return d


def str_list(v: object) -> tuple[str, ...]:
    if isinstance(v, str):
        return tuple(s for s in re.split(r"[\s,]+", v) if s)
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ValueError("expected a list of strings")
    return tuple(v)


#: The shortest API token accepted: a short one can be guessed (and "horse" must never open what
#: "correct horse battery staple" guards, so tokens are never split on spaces either).
MIN_TOKEN = 16


def api_tokens(v: object) -> tuple[str, ...]:
    """[api] tokens: each TOML list entry is one whole token. From the environment (a string), one token per
    line: a line break is the only separator, so a token with spaces or commas stays whole."""
    if isinstance(v, str):
        tokens = tuple(line.strip() for line in v.splitlines() if line.strip())
    elif isinstance(v, list) and all(isinstance(s, str) for s in v):
        tokens = tuple(v)
    else:
        raise ValueError("expected a list of strings, each one whole token")
    for n, token in enumerate(tokens, 1):
        if len(token) < MIN_TOKEN:
            raise ValueError(f"token {n} is {len(token)} characters long; use at least {MIN_TOKEN} "
                             "(e.g. from `openssl rand -hex 24`)")
    return tokens


def addresses(v: object) -> tuple[str, ...]:
    """IP addresses or networks (`10.0.0.0/8`), as a TOML list or (from the environment) separated by commas."""
    items = [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise ValueError("expected a list of IP addresses")
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(items)


def timezone(v: object) -> str:
    name = text(v)
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError) as e:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError("unknown time zone; use an IANA name like Europe/Berlin or UTC") from e
    return name


def cron(v: object) -> str:
    return _valid_schedule(text(v))


# Its check costs 0.1-1 ms (6 ms for one that never fires); a config of 100,000 checks repeats its
# schedules a lot. A refused one raises each time, with the same message: exceptions are not cached.
_valid_schedule = functools.lru_cache(maxsize=4096)(validate_schedule)


def url(v: object) -> str:
    u = text(v).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", u):
        raise ValueError("expected an http:// or https:// URL")
    return u


def slug_like(what: str) -> Callable[[object], str]:
    """A name of the rid alphabet (1-64 of letters, digits and . _ : -); `what` names it in the message."""

    def parse(v: object) -> str:
        s = text(v)
        if not NAME_RE.match(s):
            raise ValueError(f"a {what} is 1-64 characters of letters, digits and . _ : -")
        return s

    return parse


def step_name(v: object) -> str:
    name = text(v)
    if not NAME_RE.match(name):
        raise ValueError("a step name is 1-64 characters of letters, digits and . _ : -")
    if name in RESERVED_STEPS:
        raise ValueError(f"{name!r} is reserved; choose another step name")
    return name


def steps(v: object) -> tuple[StepSpec, ...]:
    if not isinstance(v, list):
        raise ValueError('expected a list like ["dump", {name = "upload", max = "45m"}]')
    out: list[StepSpec] = []
    for item in v:
        if isinstance(item, str):
            out.append(StepSpec(step_name(item)))
        elif isinstance(item, dict) and set(item) <= {"name", "max"} and "name" in item:
            limit = positive_duration(item["max"]) if "max" in item else None
            out.append(StepSpec(step_name(item["name"]), limit))
        else:
            raise ValueError('each step is a name or a table {name = "...", max = "45m"}')
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError("step names must be unique")
    return tuple(out)


def _str_key(v: object) -> object:
    return v if type(v) is str else None


def memo(parser: Parser, key: Callable[[object], object] = _str_key, limit: int = 16_384) -> Parser:
    """`parser` remembering what it made of values seen before (a config of 100,000 checks repeats its
    schedules, zones, durations and step lists a lot). `key` gives a hashable stand-in for a value, or None to
    parse it without remembering; results are immutable, so sharing them is safe. A bad value raises each
    time, with the same message, as it is never remembered."""
    seen: dict[object, Any] = {}

    def parse(v: object) -> Any:
        k = key(v)
        if k is None:
            return parser(v)
        try:
            return seen[k]
        except KeyError:
            pass
        result = parser(v)
        if len(seen) < limit:
            seen[k] = result
        return result

    return parse


def steps_key(v: object) -> object:
    """A hashable stand-in for a steps list of names and {name, max} tables of strings; None for anything else."""
    if type(v) is not list:
        return None
    parts: list[object] = []
    for item in v:
        if type(item) is str:
            parts.append(item)
        elif type(item) is dict and all(type(x) is str for x in item.values()):
            parts.append(tuple(item.items()))
        else:
            return None
    return tuple(parts)
