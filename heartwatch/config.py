"""Settings: heartwatch.toml, environment variables and command-line flags, parsed strictly.

Precedence is flag > environment > file > default. Every bad value raises ConfigError naming the key
and the value, so `heartwatch serve` can stop with one clear line (exit status 2) instead of a traceback.

SERVER_SETTINGS below is the one list of the [server], [alerts], [api] and [web] settings: the parser, the
environment variables and docs/configuration.md all follow it. A check's settings (`[checks.<slug>]`) are
in heartwatch/core/settings.py (CHECK_SETTINGS), because the store and the API read them too.

Adding a server setting: add the field to Settings (its type and default: the default lives there only),
then one ServerSetting(section, key, field, parser, meaning[, env]) to SERVER_SETTINGS; use the field where
it matters, and document it in docs/configuration.md (a test holds the docs to this list).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import rtoml

from heartwatch.core import values as v
from heartwatch.core.dependencies import check_graph
from heartwatch.core.model import CheckSpec
from heartwatch.core.settings import Synchronous, describe, parse_check
from heartwatch.core.values import NAME_RE, RESERVED_STEPS, SECRET_KEY_RE, SLUG_RE, ConfigError, step_name

# Re-exported: what callers of this module have always found here (their home is heartwatch/core/).
__all__ = ["NAME_RE", "RESERVED_STEPS", "SECRET_KEY_RE", "SERVER_SETTINGS", "SLUG_RE", "ConfigError",
           "ServerSetting", "Settings", "load_settings", "parse_check", "step_name"]


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    db: Path | str = Path("heartwatch.db")  # a SQLite file, or a postgresql:// URL (str)
    base_url: str | None = None
    ping_key: str | None = None
    timezone: str = "UTC"
    body_limit: int = 10_000
    retention: int = 1_000  # events, and finished runs, kept per check
    max_checks: int = 10_000  # checks that pings (?create=1) and the API may create; config checks do not count
    trusted_proxies: tuple[str, ...] = ()  # addresses whose X-Forwarded-For/-Proto are believed
    rate_limit: int = 0  # pings per minute per check; 0 = off
    synchronous: Synchronous = Synchronous.NORMAL
    heartbeat_url: str | None = None  # pinged every minute by the process running the scheduler
    alert_urls: tuple[str, ...] = ()
    remind_every: timedelta = timedelta(days=1)  # while a check stays down; 0 = never
    retry_first: timedelta = timedelta(seconds=10)  # first wait before re-sending a failed alert
    api_tokens: tuple[str, ...] = ()
    api_read_tokens: tuple[str, ...] = ()  # read-only keys of the Healthchecks-compatible API (/api/v3/)
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


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}


@dataclass(frozen=True)
class ServerSetting:
    """One key of the [server], [alerts], [api] or [web] table, and the Settings field it sets."""

    section: str
    key: str
    field: str  # the Settings field
    parse: Callable[[object], Any]  # raises ValueError with the reason
    kind: str  # for people: the docs' type column
    meaning: str  # one or two sentences for docs/configuration.md
    env: str | None = None  # the environment variable that sets it too (`<NAME>_FILE` reads it from a file)
    secret: bool = False  # a bad value is named but never repeated (SECRET_KEY_RE)

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def default(self) -> Any:
        return _DEFAULTS[self.field]

    def describe_default(self) -> str:
        return describe(self.default)


def is_database_url(db: object) -> bool:
    """A PostgreSQL URL rather than a SQLite file name."""
    return isinstance(db, str) and db.split("://", 1)[0] in ("postgresql", "postgres")


def parse_db(text: str) -> Path | str:
    """A SQLite file (Path) or a postgresql:// (or postgres://) URL, kept as text."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        if not text:
            raise ValueError("expected a file name or a postgresql:// URL")
        return Path(text)
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"{scheme}:// is not a database heartwatch knows: give a SQLite file name or a"
                         " postgresql:// URL")
    if not rest.split("?", 1)[0].strip("/"):
        raise ValueError("expected postgresql://[user[:password]@]host[:port]/database")
    return text


def redact_db(db: Path | str) -> str:
    """The database as the log and the start-up lines show it: a URL's password left out."""
    if "://" not in str(db):
        return str(db)
    scheme, _, rest = str(db).partition("://")
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}://{userinfo}{at}{host}"


def _synchronous(value: object) -> Synchronous:
    return Synchronous(v.choice(*Synchronous)(value))


SERVER_SETTINGS: tuple[ServerSetting, ...] = (
    ServerSetting("server", "host", "host", v.text, "string", "The address to listen on.", "HEARTWATCH_HOST"),
    ServerSetting("server", "port", "port", v.whole_number(1, 65535), "whole number 1-65535",
                  "The TCP port to listen on.", "HEARTWATCH_PORT"),
    ServerSetting("server", "db", "db", lambda value: parse_db(v.text(value)), "path or postgresql:// URL",
                  "The SQLite database file, relative to the config file's folder; created on first start. Or a "
                  "PostgreSQL database's URL, `postgresql://user@host:5432/heartwatch`, which several heartwatch "
                  "processes can share (docs/postgresql.md).", "HEARTWATCH_DB"),
    ServerSetting("server", "base_url", "base_url", v.url, "http(s) URL",
                  "Where users reach this server: used in printed ping URLs and alert links "
                  "(default: the address it listens on).", "HEARTWATCH_BASE_URL"),
    ServerSetting("server", "ping_key", "ping_key", v.slug_like("ping_key"), "name (letters, digits, . _ : -)",
                  "The key in slug ping URLs (/ping/<ping_key>/<slug>); generated and stored on first start "
                  "when not given.", "HEARTWATCH_PING_KEY"),
    ServerSetting("server", "timezone", "timezone", v.timezone, "IANA time zone",
                  "The time zone of pages, and of checks that do not name their own.", "HEARTWATCH_TIMEZONE"),
    ServerSetting("server", "body_limit", "body_limit", v.whole_number(0, 1_000_000), "whole number 0-1000000",
                  "Bytes of a ping's body that are kept (the tail)."),
    ServerSetting("server", "retention", "retention", v.whole_number(10, 10_000_000), "whole number 10-10000000",
                  "Events, and finished runs, kept per check; older ones are pruned."),
    ServerSetting("server", "max_checks", "max_checks", v.whole_number(1, 10_000_000), "whole number 1-10000000",
                  "Checks at most; past it, `?create=1` and the API refuse new checks (409)."),
    ServerSetting("server", "trusted_proxies", "trusted_proxies", v.addresses, "list of IP addresses",
                  "Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed; from anyone else "
                  "they are ignored."),
    ServerSetting("server", "rate_limit", "rate_limit", v.whole_number(0, 1_000_000), "whole number 0-1000000",
                  "Pings per minute per check; more are answered 429. 0 = no limit."),
    ServerSetting("server", "synchronous", "synchronous", _synchronous, "normal or full",
                  "What a stored ping survives: normal = a crash of the process, full = a power cut too "
                  "(each write waits for the disk)."),
    ServerSetting("server", "heartbeat_url", "heartbeat_url", v.url, "http(s) URL",
                  "A ping URL (another heartwatch, Healthchecks, an Uptime Kuma push URL) that the process running "
                  "the scheduler pings every minute, and fails with the reason when the scheduler or the sender is "
                  "stuck.", "HEARTWATCH_HEARTBEAT_URL"),
    ServerSetting("alerts", "urls", "alert_urls", v.str_list, "list of Apprise URLs",
                  "Where every check's alerts go (each check may add its own `alerts`).",
                  "HEARTWATCH_ALERT_URLS", secret=True),
    ServerSetting("alerts", "remind_every", "remind_every", v.duration, "duration",
                  "While a check stays down, remind this often (a check's own `remind_every` wins); 0 = never."),
    ServerSetting("alerts", "retry_first", "retry_first", v.positive_duration, "duration > 0",
                  "The first wait before a failed alert is sent again (the wait doubles each time)."),
    ServerSetting("api", "tokens", "api_tokens", v.api_tokens, "list of strings",
                  "Bearer tokens for the write API, each at least 16 characters; with none, writes are refused. "
                  "The environment variable holds one token (several: one per line).", "HEARTWATCH_API_TOKEN",
                  secret=True),
    ServerSetting("api", "read_tokens", "api_read_tokens", v.api_tokens, "list of strings",
                  "Read-only keys of the Healthchecks-compatible API under /api/v3/, whole tokens of at least 16 "
                  "characters as `tokens`.", "HEARTWATCH_API_READ_TOKEN",
                  secret=True),
    ServerSetting("web", "password", "web_password", v.text, "string",
                  "The password of the web login; with none, pages are open.", "HEARTWATCH_WEB_PASSWORD",
                  secret=True),
)

_SECTIONS: dict[str, dict[str, tuple[str, Callable[[object], Any]]]] = {}
for _s in SERVER_SETTINGS:  # section -> toml key -> (Settings field, parser)
    _SECTIONS.setdefault(_s.section, {})[_s.key] = (_s.field, _s.parse)

#: Environment variables, each naming a `section.key` above. `<NAME>_FILE` reads the value from a file.
ENV_VARS: dict[str, str] = {s.env: s.dotted for s in SERVER_SETTINGS if s.env}


def _parse(key: str, value: object, parser: Callable[[object], Any]) -> Any:
    try:
        return parser(value)
    except ValueError as e:
        raise ConfigError(key, value, str(e)) from None


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
    chunks = _check_chunks(text)
    try:
        doc: dict[str, Any] = rtoml.loads(text if chunks is None else text[:chunks.head])
    except Exception:  # TomlParsingError, or ValueError for values tomllib reads (1e400)
        return None
    if chunks is not None:
        if "checks" in doc:
            return None
        doc["checks"] = chunks
    return doc


class _NotFast(Exception):
    """The checks' tables, read in chunks, need tomllib's reading of the whole file after all."""


@dataclass
class _CheckChunks:
    """The `[checks.<slug>]` tables of a large file, read a chunk at a time as the checks are built.

    Why: rtoml's document for 100,000 checks (a dict and its strings per table) is over 100 MB, and the specs
    built from it sit between its freed blocks, so the process kept that memory for good: 124 MB after reading
    bench/scale.py's file whole, 71 MB in chunks of 1,000 tables (and a little faster).
    """

    text: str
    head: int  # where the first [checks.<slug>] line starts; what comes before it is read whole
    bounds: list[int]  # where each chunk starts, then the end of the text

    def parse(self, default_tz: str) -> dict[str, CheckSpec]:
        checks: dict[str, CheckSpec] = {}
        for start, end in zip(self.bounds, self.bounds[1:], strict=False):
            try:
                doc = rtoml.loads(self.text[start:end])
            except Exception:
                raise _NotFast from None
            tables = doc.get("checks")
            if len(doc) != 1 or not isinstance(tables, dict):
                raise _NotFast
            for slug, table in tables.items():
                if slug in checks:  # a table split over two chunks, or defined twice: tomllib decides
                    raise _NotFast
                checks[slug] = parse_check(slug, table, default_tz)
        return checks


#: Tables per chunk, and the smallest file (in tables) read in chunks.
_CHUNK_TABLES = 1000
_CHECK_HEADER = re.compile(r"^\[checks\.", re.MULTILINE)
_ANY_HEADER = re.compile(r"^[ \t]*\[", re.MULTILINE)


def _check_chunks(text: str) -> _CheckChunks | None:
    """Chunks of the checks' tables, where the file allows cutting it at their header lines: no multi-line
    string (a line in one could look like a header) and, after the first check, no header but a check's."""
    if '"""' in text or "'''" in text:
        return None
    starts = [m.start() for m in _CHECK_HEADER.finditer(text)]
    if len(starts) < 2 * _CHUNK_TABLES:
        return None
    head = starts[0]
    if any(not text.startswith("[checks.", m.end() - 1) for m in _ANY_HEADER.finditer(text, head)):
        return None
    return _CheckChunks(text, head, [*starts[::_CHUNK_TABLES], len(text)])


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
        except (ConfigError, _NotFast):
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

    if config_path and isinstance(values.get("db"), Path) and not values["db"].is_absolute():
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
    if isinstance(checks_table, _CheckChunks):
        return Settings(**values, checks=checks_table.parse(values.get("timezone", "UTC")), config_path=config_path)
    if not isinstance(checks_table, dict):
        raise ConfigError("checks", checks_table, "expected [checks.<slug>] tables")
    default_tz = values.get("timezone", "UTC")
    checks = {slug: parse_check(slug, table, default_tz) for slug, table in checks_table.items()}
    check_graph(checks)
    return Settings(**values, checks=checks, config_path=config_path)
