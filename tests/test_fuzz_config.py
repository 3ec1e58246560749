"""heartwatch.toml files with every kind of bad value (hypothesis): one clear line naming the key, exit 2.

Each generated file is a valid base with one bad value put in: a wrong type, an unknown key or section,
a bad cron, time zone, duration, slug or step, a negative or huge number. load_settings must raise
ConfigError whose message is one line and names the key; a handful go through the real CLI as well.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fuzz_pings import FUZZ

from heartwatch.config import ConfigError, load_settings

SLUG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
BASE = '[server]\nport = 8000\n\n[checks.ok]\nschedule = "0 2 * * *"\n'


def toml_value(value: Any) -> str:
    """A TOML literal for a str, bool, int, float, datetime, list or table (inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # JSON escapes are TOML escapes, except that TOML wants DEL escaped too.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
wrong_types = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(), text,
                        st.datetimes(), st.lists(st.integers(), max_size=2), st.just({"a": 1}))
durations = st.one_of(st.sampled_from(["-5m", "5", "m", "1h-", "1.5h", "1y", "99999999999999999999d",
                                       "1000000000d", "", " ", "0s5", "h1"]), text, wrong_types)
BAD: dict[str, st.SearchStrategy[Any]] = {
    "server.port": st.one_of(st.sampled_from([0, -1, 65536, 2**63 - 1, "http", "80 80"]), st.floats()),
    "server.host": st.one_of(st.integers(), st.booleans(), st.lists(text, max_size=1)),
    "server.base_url": st.one_of(st.sampled_from(["ftp://x", "localhost:8000", "http://", ""]), wrong_types),
    "server.ping_key": st.one_of(st.sampled_from(["", "a b", "a/b", "k" * 65, "ключ"]), st.integers()),
    "server.timezone": st.one_of(st.sampled_from(["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "UTC\n",
                                                  "Europe/" + "x" * 300, "\x00"]), st.integers()),
    "server.body_limit": st.sampled_from([-1, 1_000_001, 2**63 - 1, "10kb", 1.5]),
    "server.retention": st.sampled_from([0, 9, -5, 10_000_001, "many"]),
    "server.synchronous": st.one_of(st.sampled_from(["off", "FULL", ""]), st.integers()),
    "alerts.urls": st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2), st.just({"a": "b"})),
    "alerts.remind_every": durations,
    "alerts.retry_first": st.one_of(durations, st.just("0")),
    "api.tokens": st.one_of(st.integers(), st.lists(st.booleans(), min_size=1, max_size=2)),
    "checks.ok.schedule": st.one_of(st.sampled_from(["", "* * *", "61 * * * *", "0 25 * * *", "* * 32 * *",
                                                     "0 2 * * 8x", "99999999999999999999 * * * *", "@never",
                                                     "0 2 * * * * * *", "a b c d e"]), wrong_types),
    "checks.ok.period": st.one_of(durations, st.just("0")),
    "checks.ok.timezone": st.one_of(st.sampled_from(["Mars/Olympus", "", "EST5EDT\n"]), st.integers()),
    "checks.ok.start_grace": durations,
    "checks.ok.max_runtime": st.one_of(durations, st.just("0")),
    "checks.ok.min_runtime": st.one_of(durations, st.just("0")),
    "checks.ok.steps": st.one_of(
        st.sampled_from([["start"], ["a", "a"], [""], ["a b"], ["x" * 65], [{"max": "5m"}], [{"name": "a", "max": "0"}],
                         [{"name": "a", "max": "-1m"}], [{"name": "a", "extra": 1}], "dump", [1], [["a"]]]),
        st.lists(text, min_size=1, max_size=3).filter(lambda xs: any(not x or not x.isascii() for x in xs))),
    "checks.ok.strict_steps": st.one_of(st.integers(), st.sampled_from(["true", "yes", ""])),
    "checks.ok.alert_after": st.sampled_from([0, -1, 1001, 2**63 - 1, 1.0, True, "x"]),
    "checks.ok.alerts": st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2)),
    "checks.ok.tags": st.one_of(st.booleans(), st.lists(st.floats(), min_size=1, max_size=2)),
}


@st.composite
def bad_files(draw: st.DrawFn) -> tuple[str, str]:
    """(file text, the key the message must name)."""
    kind = draw(st.sampled_from(["value", "value", "value", "unknown_key", "unknown_section", "bad_slug"]))
    if kind == "value":
        key = draw(st.sampled_from(sorted(BAD)))
        section, name = key.rsplit(".", 1)
        value = draw(BAD[key])
        table = "checks.ok" if section == "checks.ok" else section
        extra = 'schedule = "0 2 * * *"\n' if section == "checks.ok" and name not in ("schedule", "period") else ""
        if name == "period":
            extra = ""
        return f"[{table}]\n{extra}{name} = {toml_value(value)}\n", key
    if kind == "unknown_key":
        section = draw(st.sampled_from(["server", "alerts", "api", "checks.ok"]))
        name = draw(st.one_of(st.sampled_from(["prot", "Port", "schedule ", "urls2"]), text.filter(bool)))
        if name in ("port", "host", "urls", "tokens", "schedule", "name", "timezone", "steps", "tags"):
            name += "x"
        return f"[{section}]\n{toml_value(name)} = 1\n", f"{section}.{name}"
    if kind == "unknown_section":
        name = draw(st.one_of(st.sampled_from(["serve", "check", "Server", "alert"]), text.filter(bool)))
        if name in ("server", "alerts", "api", "web", "checks"):
            name += "x"
        return f"[{toml_value(name)}]\nx = 1\n", name
    slug = draw(st.one_of(st.sampled_from(["Backup", "back up", "a.b", "", "x" * 65, "ü", "a\nb"]),
                          text.filter(lambda s: not s or any(c not in SLUG_CHARS for c in s))))
    return BASE + f"[checks.{toml_value(slug)}]\nperiod = \"1h\"\n", f"checks.{slug}"


def one_line_naming(message: str, key: str) -> None:
    assert "\n" not in message and "\r" not in message, message
    assert "Traceback" not in message
    assert key.encode("unicode_escape").decode() in message or key in message, (key, message)


@settings(FUZZ, max_examples=400)
@given(bad=bad_files())
def test_every_bad_value_gives_one_line_naming_the_key(tmp_path_factory: pytest.TempPathFactory,
                                                       bad: tuple[str, str]) -> None:
    content, key = bad
    path = tmp_path_factory.getbasetemp() / "bad.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    one_line_naming(str(caught.value), key)


CLI_CASES = [
    ('[server]\nport = "http"\n', "server.port"),
    ('[checks.job]\nschedule = "61 * * * *"\n', "checks.job.schedule"),
    ('[checks.job]\nperiod = "99999999999999999999d"\n', "checks.job.period"),
    ('[checks."a\\nb"]\nperiod = "1h"\n', "checks.a"),
    ('[checks.job]\ntimezone = "Mars/Olympus"\nperiod = "1h"\n', "checks.job.timezone"),
    ('[checks.job]\nperiod = "1h"\nsteps = ["a", "a"]\n', "checks.job.steps"),
    ("[server\nport = 1\n", "bad.toml"),
]


@pytest.mark.parametrize(("content", "key"), CLI_CASES)
def test_the_real_cli_exits_2_with_one_line(tmp_path: Path, content: str, key: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    done = subprocess.run([sys.executable, "-m", "heartwatch", "serve", "--config", str(config), "--db",
                           str(tmp_path / "hw.db")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "hw.db").exists()  # stopped before touching the database
