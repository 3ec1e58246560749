"""Settings: heartwatch.toml, environment variables and command-line flags, parsed strictly.

Precedence is flag > environment > file > default. Every bad value raises ConfigError naming the key
and the value, so `heartwatch serve` can stop with one clear line (exit status 2) instead of a traceback.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import rtoml

from heartwatch.core.durations import parse_duration
from heartwatch.core.model import CheckSpec, StepSpec
from heartwatch.core.schedule import validate_schedule

SLUG_RE = re.compile(r"^[a-z0-9_-]{1,64}\Z")  # \Z: `$` would let a trailing newline in
#: Step names share the rid alphabet so they are safe in URLs, logs and HTML attributes.
NAME_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")
#: Step names that mean something else in `?step=`.
RESERVED_STEPS = frozenset({"start", "finish", "fail", "success", "log"})


#: Settings that hold secrets (Apprise URLs carry tokens): a bad value is named but never repeated.
SECRET_KEY_RE = re.compile(r"(^|\.)(urls|alerts|tokens|password)\Z|\AHEARTWATCH_(ALERT_URLS|API_TOKEN|WEB_PASSWORD)\Z")


class ConfigError(Exception):
    """A bad setting: `str()` is the one line shown to the user (a secret's value is left out of it)."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key, self.value, self.reason = key, value, reason
        #: The value as messages may show it: repr'd, or hidden for a secret.
        self.shown = shown = "(hidden: it may hold a secret)" if SECRET_KEY_RE.search(key) else repr(value)
        # A quoted TOML key may hold a line break; escaped, the message stays one line.
        one_line = key if key.isprintable() else key.encode("unicode_escape").decode()
        super().__init__(f"{one_line} = {shown}: {reason}")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    db: Path = Path("heartwatch.db")
    base_url: str | None = None
    ping_key: str | None = None
    timezone: str = "UTC"
    body_limit: int = 10_000
    retention: int = 1_000  # events kept per check
    rate_limit: int = 0  # pings per minute per check; 0 = off
    synchronous: str = "normal"  # SQLite in WAL: "normal" survives a process crash, "full" a power cut too
    alert_urls: tuple[str, ...] = ()
    remind_every: timedelta = timedelta(0)  # 0 = never
    retry_first: timedelta = timedelta(seconds=10)  # first wait before re-sending a failed alert
    api_tokens: tuple[str, ...] = ()
    web_password: str | None = None
    checks: dict[str, CheckSpec] = field(default_factory=dict)
    config_path: Path | None = None

    @property
    def public_url(self) -> str:
        """Where users reach this server: base_url, or the address it listens on."""
        if self.base_url:
            return self.base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


# --- value parsers: each raises ValueError with a reason; the caller adds key and value --------------


def _str(v: object) -> str:
    if not isinstance(v, str):
        raise ValueError("expected a string")
    return v


def _bool(v: object) -> bool:
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _int(lo: int, hi: int) -> Callable[[object], int]:
    def parse(v: object) -> int:
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError(f"expected a whole number from {lo} to {hi}")
        return v

    return parse


def _choice(*options: str) -> Callable[[object], str]:
    def parse(v: object) -> str:
        if v not in options:
            raise ValueError(f"expected one of: {', '.join(options)}")
        return str(v)

    return parse


def _duration(v: object) -> timedelta:
    if not isinstance(v, str):
        raise ValueError("expected a duration string like 90s, 15m, 2h, 1d or 1h30m")
    return parse_duration(v)


def _positive_duration(v: object) -> timedelta:
    d = _duration(v)
    if d <= timedelta(0):
        raise ValueError("must be longer than 0")
    return d


def _str_list(v: object) -> tuple[str, ...]:
    if isinstance(v, str):
        return tuple(s for s in re.split(r"[\s,]+", v) if s)
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ValueError("expected a list of strings")
    return tuple(v)


def _timezone(v: object) -> str:
    name = _str(v)
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError) as e:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError("unknown time zone; use an IANA name like Europe/Berlin or UTC") from e
    return name


def _cron(v: object) -> str:
    return _valid_schedule(_str(v))


# Its check costs 0.1-1 ms (6 ms for one that never fires); a config of 100,000 checks repeats its
# schedules a lot. A refused one raises each time, with the same message: exceptions are not cached.
_valid_schedule = functools.lru_cache(maxsize=4096)(validate_schedule)


def _url(v: object) -> str:
    url = _str(v).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError("expected an http:// or https:// URL")
    return url


def step_name(v: object) -> str:
    name = _str(v)
    if not NAME_RE.match(name):
        raise ValueError("a step name is 1-64 characters of letters, digits and . _ : -")
    if name in RESERVED_STEPS:
        raise ValueError(f"{name!r} is reserved; choose another step name")
    return name


def _steps(v: object) -> tuple[StepSpec, ...]:
    if not isinstance(v, list):
        raise ValueError('expected a list like ["dump", {name = "upload", max = "45m"}]')
    steps: list[StepSpec] = []
    for item in v:
        if isinstance(item, str):
            steps.append(StepSpec(step_name(item)))
        elif isinstance(item, dict) and set(item) <= {"name", "max"} and "name" in item:
            limit = _positive_duration(item["max"]) if "max" in item else None
            steps.append(StepSpec(step_name(item["name"]), limit))
        else:
            raise ValueError('each step is a name or a table {name = "...", max = "45m"}')
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError("step names must be unique")
    return tuple(steps)


def _memo(parser: Callable[[object], Any], key: Callable[[object], object] = lambda v: v if type(v) is str else None,
          limit: int = 16_384) -> Callable[[object], Any]:
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


def _steps_key(v: object) -> object:
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


_CHECK_KEYS: dict[str, Callable[[object], Any]] = {
    "name": _str,
    "schedule": _memo(_cron),
    "period": _memo(_positive_duration),
    "timezone": _memo(_timezone),
    "start_grace": _memo(_duration),
    "max_runtime": _memo(_positive_duration),
    "min_runtime": _memo(_positive_duration),
    "steps": _memo(_steps, _steps_key),
    "strict_steps": _bool,
    "alert_after": _int(1, 1000),
    "alerts": _str_list,
    "tags": _str_list,
}

_SECTIONS: dict[str, dict[str, tuple[str, Callable[[object], Any]]]] = {
    # section -> toml key -> (Settings field, parser)
    "server": {
        "host": ("host", _str),
        "port": ("port", _int(1, 65535)),
        "db": ("db", lambda v: Path(_str(v))),
        "base_url": ("base_url", _url),
        "ping_key": ("ping_key", lambda v: _slug_like(v, "ping_key")),
        "timezone": ("timezone", _timezone),
        "body_limit": ("body_limit", _int(0, 1_000_000)),
        "retention": ("retention", _int(10, 10_000_000)),
        "rate_limit": ("rate_limit", _int(0, 1_000_000)),
        "synchronous": ("synchronous", _choice("normal", "full")),
    },
    "alerts": {
        "urls": ("alert_urls", _str_list),
        "remind_every": ("remind_every", _duration),
        "retry_first": ("retry_first", _positive_duration),
    },
    "api": {"tokens": ("api_tokens", _str_list)},
    "web": {"password": ("web_password", _str)},
}

#: Environment variables, each naming a `section.key` above. `<NAME>_FILE` reads the value from a file.
ENV_VARS: dict[str, str] = {
    "HEARTWATCH_HOST": "server.host",
    "HEARTWATCH_PORT": "server.port",
    "HEARTWATCH_DB": "server.db",
    "HEARTWATCH_BASE_URL": "server.base_url",
    "HEARTWATCH_PING_KEY": "server.ping_key",
    "HEARTWATCH_TIMEZONE": "server.timezone",
    "HEARTWATCH_ALERT_URLS": "alerts.urls",
    "HEARTWATCH_API_TOKEN": "api.tokens",
    "HEARTWATCH_WEB_PASSWORD": "web.password",
}


def _slug_like(v: object, what: str) -> str:
    s = _str(v)
    if not NAME_RE.match(s):
        raise ValueError(f"a {what} is 1-64 characters of letters, digits and . _ : -")
    return s


def _parse(key: str, value: object, parser: Callable[[object], Any]) -> Any:
    try:
        return parser(value)
    except ValueError as e:
        raise ConfigError(key, value, str(e)) from None


def parse_check(slug: str, table: object, default_tz: str = "UTC", prefix: str = "checks.") -> CheckSpec:
    """One `[checks.<slug>]` table (also the body of an API create) -> CheckSpec."""
    if not SLUG_RE.match(slug):
        raise ConfigError(f"{prefix}{slug}", slug, "a slug is 1-64 characters of a-z, 0-9, - and _")
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}{slug}", table, "expected a table of settings")
    values: dict[str, Any] = {}
    for key, value in table.items():
        parser = _CHECK_KEYS.get(key)
        if parser is None:
            raise ConfigError(f"{prefix}{slug}.{key}", value, f"unknown key; known: {', '.join(_CHECK_KEYS)}")
        try:  # `_parse` spelled out: the key's name is only built for a message (100,000 checks, 4 keys each)
            values[key] = parser(value)
        except ValueError as e:
            raise ConfigError(f"{prefix}{slug}.{key}", value, str(e)) from None
    if "schedule" in values and "period" in values:
        raise ConfigError(f"{prefix}{slug}.period", table["period"], "give either schedule or period, not both")
    values.setdefault("timezone", default_tz)
    return CheckSpec(slug=slug, **values)


def _read_file(path: Path) -> str:
    try:
        return path.read_bytes().decode()
    except FileNotFoundError:
        raise ConfigError("--config", str(path), "no such file") from None
    except OSError as e:
        raise ConfigError("--config", str(path), e.strerror or str(e)) from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "...", "not valid UTF-8") from None


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    """tomllib's verdict: the document, or its error with line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), "...", f"not valid TOML: {e}") from None


def _parse_toml_fast(text: str) -> dict[str, Any] | None:
    """rtoml (Rust) where it is sure to read the file as tomllib does; None where tomllib must decide.

    Why: tomllib takes about 5 s for a file of 100,000 checks, rtoml half a second. tomllib stays the
    reference: a file rtoml refuses, and any file with a bad setting, is read again by tomllib, so every
    message (a syntax error's line and column, a bad value's repr) is tomllib's. Carriage returns and a
    byte-order mark go to tomllib straight away: rtoml keeps CRLF inside multi-line strings (tomllib
    turns it into LF) and accepts a BOM (tomllib does not).
    """
    if "\r" in text or text.startswith("\ufeff"):
        return None
    try:
        doc: dict[str, Any] = rtoml.loads(text)
    except Exception:  # TomlParsingError, or ValueError for values tomllib reads (1e400)
        return None
    return doc


def _env_value(environ: Mapping[str, str], name: str) -> str | None:
    if name in environ:
        return environ[name]
    file_name = environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as e:
            raise ConfigError(f"{name}_FILE", file_name, e.strerror or str(e)) from None
    return None


def load_settings(
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
) -> Settings:
    """Build Settings from the file, the environment and flags (Settings field -> value; None = unset)."""
    if not config_path:
        return _settings({}, None, environ, flags)
    text = _read_file(config_path)
    doc = _parse_toml_fast(text)
    if doc is not None:
        try:
            return _settings(doc, config_path, environ, flags)
        except ConfigError:
            pass  # said again from tomllib's reading below, so the message shows tomllib's values
    return _settings(_parse_toml(config_path, text), config_path, environ, flags)


def _settings(doc: dict[str, Any], config_path: Path | None, environ: Mapping[str, str] | None,
              flags: Mapping[str, object] | None) -> Settings:
    values: dict[str, Any] = {}
    for section, table in doc.items():
        if section == "checks":
            continue
        known = _SECTIONS.get(section)
        if known is None:
            raise ConfigError(section, "...", f"unknown section; known: {', '.join([*_SECTIONS, 'checks'])}")
        if not isinstance(table, dict):
            raise ConfigError(section, table, "expected a table")
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"{section}.{key}", value, f"unknown key; known: {', '.join(known)}")
            attr, parser = known[key]
            values[attr] = _parse(f"{section}.{key}", value, parser)

    if config_path and "db" in values and not values["db"].is_absolute():
        # The file's db path is relative to the file, so a config works from any working directory.
        values["db"] = config_path.parent / values["db"]

    for name, dotted in ENV_VARS.items():
        raw = _env_value(environ or {}, name)
        if raw is not None and raw != "":
            section, key = dotted.split(".")
            attr, parser = _SECTIONS[section][key]
            values[attr] = _parse(name, raw, parser)

    for attr, value in (flags or {}).items():
        if value is not None:
            values[attr] = value

    checks_table = doc.get("checks", {})
    if not isinstance(checks_table, dict):
        raise ConfigError("checks", checks_table, "expected [checks.<slug>] tables")
    default_tz = values.get("timezone", "UTC")
    checks = {slug: parse_check(slug, table, default_tz) for slug, table in checks_table.items()}
    return Settings(**values, checks=checks, config_path=config_path)
