"""Settings: heartwatch.toml (DESIGN.md section 2), environment and flags, strict validation."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from heartwatch import config
from heartwatch.config import ConfigError, Settings, load_settings, redact_db
from heartwatch.core.model import CheckSpec, StepSpec

FULL = """
[server]
host = "0.0.0.0"
port = 8123
db = "data/heartwatch.db"
base_url = "http://backup-box.lan:8000/"
ping_key = "k3y-for-slug-urls"

[alerts]
urls = ["ntfy://ntfy.sh/my-topic", "mailto://user:pass@example.org"]
remind_every = "6h"

[checks.nightly-backup]
name = "Nightly Postgres backup"
schedule = "0 2 * * *"
timezone = "Europe/Berlin"
start_grace = "15m"
max_runtime = "2h"
min_runtime = "30s"
steps = ["dump", {name = "upload", max = "45m"}, "verify"]
strict_steps = false
alert_after = 1
alerts = ["tgram://bot/chat"]
tags = ["db", "prod"]

[checks.hourly_sync]
period = "1h30m"
"""


def write(tmp_path: Path, text: str, name: str = "heartwatch.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str) -> Settings:
    return load_settings(write(tmp_path, text), {}, {})


def config_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value


# --- a good file --------------------------------------------------------------------------------------


def test_full_config_from_the_design_loads_with_the_right_values(tmp_path: Path) -> None:
    s = load(tmp_path, FULL)
    assert (s.host, s.port, s.db) == ("0.0.0.0", 8123, tmp_path / "data" / "heartwatch.db")
    assert s.base_url == "http://backup-box.lan:8000"
    assert s.public_url == "http://backup-box.lan:8000"
    assert s.ping_key == "k3y-for-slug-urls"
    assert s.alert_urls == ("ntfy://ntfy.sh/my-topic", "mailto://user:pass@example.org")
    assert s.remind_every == timedelta(hours=6)
    assert s.config_path == tmp_path / "heartwatch.toml"
    assert list(s.checks) == ["nightly-backup", "hourly_sync"]
    assert s.checks["nightly-backup"] == CheckSpec(
        slug="nightly-backup",
        name="Nightly Postgres backup",
        schedule="0 2 * * *",
        period=None,
        timezone="Europe/Berlin",
        start_grace=timedelta(minutes=15),
        max_runtime=timedelta(hours=2),
        min_runtime=timedelta(seconds=30),
        steps=(StepSpec("dump"), StepSpec("upload", timedelta(minutes=45)), StepSpec("verify")),
        strict_steps=False,
        alert_after=1,
        alerts=("tgram://bot/chat",),
        tags=("db", "prod"),
    )
    assert s.checks["hourly_sync"] == CheckSpec(slug="hourly_sync", period=timedelta(hours=1, minutes=30))


def test_empty_file_and_no_file_give_the_defaults(tmp_path: Path) -> None:
    empty = load(tmp_path, "")
    none = load_settings(None, {}, {})
    for s in (empty, none):
        assert (s.host, s.port, s.ping_key, s.checks, s.retention, s.body_limit) == (
            "127.0.0.1", 8000, None, {}, 1000, 10_000)
    assert none.db == Path("heartwatch.db")
    assert empty.db == Path("heartwatch.db")  # the default is not moved next to the file
    assert none.public_url == "http://127.0.0.1:8000"


def test_check_defaults(tmp_path: Path) -> None:
    spec = load(tmp_path, "[checks.x]\n").checks["x"]
    assert spec == CheckSpec(slug="x")
    assert (spec.timezone, spec.start_grace, spec.alert_after, spec.strict_steps) == (
        "UTC", timedelta(minutes=15), 1, False)


def test_server_timezone_is_the_default_for_checks(tmp_path: Path) -> None:
    s = load(tmp_path, '[server]\ntimezone = "America/New_York"\n[checks.a]\n[checks.b]\ntimezone = "UTC"\n')
    assert (s.checks["a"].timezone, s.checks["b"].timezone) == ("America/New_York", "UTC")


def test_start_grace_zero_is_allowed(tmp_path: Path) -> None:
    assert load(tmp_path, '[checks.a]\nstart_grace = "0"\n').checks["a"].start_grace == timedelta(0)


# --- bad values: one ConfigError naming key and value ----------------------------------------------------

BAD = [
    ("unknown key in a check", '[checks.backup]\ncolour = "red"\n', "checks.backup.colour", "red"),
    ("unknown server key", '[server]\nprot = 8000\n', "server.prot", "8000"),
    ("unknown alerts key", '[alerts]\nurl = "x"\n', "alerts.url", "x"),
    ("bad cron", '[checks.backup]\nschedule = "61 * * * *"\n', "checks.backup.schedule", "61 * * * *"),
    ("cron nonsense", '[checks.backup]\nschedule = "every day"\n', "checks.backup.schedule", "every day"),
    ("unknown timezone", '[checks.backup]\ntimezone = "Mars/Olympus"\n', "checks.backup.timezone", "Mars/Olympus"),
    ("unknown server tz", '[server]\ntimezone = "Berlin"\n', "server.timezone", "Berlin"),
    ("bad duration", '[checks.backup]\nmax_runtime = "2 hours"\n', "checks.backup.max_runtime", "2 hours"),
    ("negative duration", '[checks.backup]\nstart_grace = "-5m"\n', "checks.backup.start_grace", "-5m"),
    ("zero period", '[checks.backup]\nperiod = "0"\n', "checks.backup.period", "0"),
    ("duration not a string", "[checks.backup]\nmin_runtime = 30\n", "checks.backup.min_runtime", "30"),
    ("bad remind_every", '[alerts]\nremind_every = "often"\n', "alerts.remind_every", "often"),
    ("slug with capitals", "[checks.Nightly]\n", "checks.Nightly", "Nightly"),
    ("schedule and period", '[checks.backup]\nschedule = "0 2 * * *"\nperiod = "1h"\n', "checks.backup.period", "1h"),
    ("steps not a list", '[checks.backup]\nsteps = "dump"\n', "checks.backup.steps", "dump"),
    ("step not a name", '[checks.backup]\nsteps = ["dump", 3]\n', "checks.backup.steps", "3"),
    ("step name with a space", '[checks.backup]\nsteps = ["up load"]\n', "checks.backup.steps", "up load"),
    ("step table with an unknown key", '[checks.backup]\nsteps = [{name = "a", limit = "1m"}]\n',
     "checks.backup.steps", "limit"),
    ("duplicate step", '[checks.backup]\nsteps = ["dump", "dump"]\n', "checks.backup.steps", "dump"),
    ("step max negative", '[checks.backup]\nsteps = [{name = "a", max = "-1m"}]\n', "checks.backup.steps", "-1m"),
    ("reserved step name", '[checks.backup]\nsteps = ["dump", "finish"]\n', "checks.backup.steps", "finish"),
    ("reserved step start", '[checks.backup]\nsteps = ["start"]\n', "checks.backup.steps", "start"),
    ("alert_after zero", "[checks.backup]\nalert_after = 0\n", "checks.backup.alert_after", "0"),
    ("strict_steps not bool", '[checks.backup]\nstrict_steps = "yes"\n', "checks.backup.strict_steps", "yes"),
    ("port out of range", "[server]\nport = 70000\n", "server.port", "70000"),
    ("base_url not http", '[server]\nbase_url = "backup-box:8000"\n', "server.base_url", "backup-box:8000"),
    ("ping_key with a slash", '[server]\nping_key = "a/b"\n', "server.ping_key", "a/b"),
    ("check not a table", "[checks]\nbackup = 1\n", "checks.backup", "1"),
    ("cron with seconds", '[checks.backup]\nschedule = "0 */5 * * * *"\n', "checks.backup.schedule", "0 */5 * * * *"),
    ("cron with a year", '[checks.backup]\nschedule = "0 2 * * * 2030"\n', "checks.backup.schedule", "0 2 * * * 2030"),
    ("cron at reboot", '[checks.backup]\nschedule = "@reboot"\n', "checks.backup.schedule", "@reboot"),
    ("cron that never fires", '[checks.backup]\nschedule = "0 0 31 2 *"\n', "checks.backup.schedule", "0 0 31 2 *"),
    ("cron on 30 February", '[checks.backup]\nschedule = "0 0 30 2 *"\n', "checks.backup.schedule", "0 0 30 2 *"),
]


@pytest.mark.parametrize(("text", "key", "value"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_value_raises_config_error_naming_key_and_value(tmp_path: Path, text: str, key: str,
                                                            value: str) -> None:
    e = config_error(tmp_path, text)
    assert e.key == key
    message = str(e)
    assert "\n" not in message
    assert message.startswith(f"{key} = ")
    assert value in message
    assert e.reason and e.reason in message


def test_unknown_section_is_named(tmp_path: Path) -> None:
    e = config_error(tmp_path, "[sever]\nport = 1\n")
    assert e.key == "sever"
    assert "unknown section" in str(e) and "server" in str(e)


def test_duplicate_slug_is_refused(tmp_path: Path) -> None:
    # TOML itself forbids declaring a table twice; the message names the file and the slug.
    e = config_error(tmp_path, '[checks.backup]\nname = "a"\n\n[checks.backup]\nname = "b"\n')
    message = str(e)
    assert "\n" not in message
    assert str(tmp_path / "heartwatch.toml") in message
    assert "backup" in message and "not valid TOML" in message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.toml", {}, {})
    assert info.value.key == "--config" and "nope.toml" in str(info.value) and "no such file" in str(info.value)


# --- precedence: flag > env > file > default -----------------------------------------------------------


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 8001\nhost = "10.0.0.1"\n')
    env = {"HEARTWATCH_PORT": "8002", "HEARTWATCH_HOST": "10.0.0.2"}
    flags: dict[str, object] = {"port": 8003, "host": None}  # None: the flag was not given
    assert load_settings(None, {}, {}).port == 8000
    assert load_settings(path, {}, {}).port == 8001
    assert load_settings(path, env, {}).port == 8002
    s = load_settings(path, env, flags)
    assert (s.port, s.host) == (8003, "10.0.0.2")
    assert load_settings(None, env, {}).port == 8002
    assert load_settings(None, {}, {"port": 8003}).port == 8003


def test_empty_env_var_counts_as_unset(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 8001\n")
    assert load_settings(path, {"HEARTWATCH_PORT": ""}, {}).port == 8001


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"HEARTWATCH_PORT": "eighty"}, {})
    assert info.value.key == "HEARTWATCH_PORT" and "eighty" in str(info.value)


def test_env_lists_are_split_on_commas_and_spaces() -> None:
    s = load_settings(None, {"HEARTWATCH_ALERT_URLS": "ntfy://a, tgram://b  mailto://c"}, {})
    assert s.alert_urls == ("ntfy://a", "tgram://b", "mailto://c")


def test_env_overrides_file_alert_urls(tmp_path: Path) -> None:
    path = write(tmp_path, '[alerts]\nurls = ["ntfy://file"]\n')
    assert load_settings(path, {"HEARTWATCH_ALERT_URLS": "ntfy://env"}, {}).alert_urls == ("ntfy://env",)


def test_file_env_var_reads_a_secret_from_a_file(tmp_path: Path) -> None:
    secret = write(tmp_path, "s3cret-key\n", "secrets/ping_key")
    s = load_settings(None, {"HEARTWATCH_PING_KEY_FILE": str(secret)}, {})
    assert s.ping_key == "s3cret-key"
    tokens = write(tmp_path, "tok-1-0123456789abcdef\n", "secrets/api_token")
    loaded = load_settings(None, {"HEARTWATCH_API_TOKEN_FILE": str(tokens)}, {})
    assert loaded.api_tokens == ("tok-1-0123456789abcdef",)


def test_plain_env_var_wins_over_its_file_variant(tmp_path: Path) -> None:
    secret = write(tmp_path, "from-file", "secret")
    env = {"HEARTWATCH_PING_KEY": "from-env", "HEARTWATCH_PING_KEY_FILE": str(secret)}
    assert load_settings(None, env, {}).ping_key == "from-env"


def test_missing_file_env_var_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"HEARTWATCH_PING_KEY_FILE": str(tmp_path / "missing")}, {})
    assert info.value.key == "HEARTWATCH_PING_KEY_FILE" and "missing" in str(info.value)


# --- db path -------------------------------------------------------------------------------------------------


def test_db_in_the_file_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\ndb = "state/hw.db"\n', "etc/heartwatch/heartwatch.toml")
    assert load_settings(path, {}, {}).db == tmp_path / "etc" / "heartwatch" / "state" / "hw.db"


def test_absolute_db_in_the_file_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "var" / "hw.db"
    path = write(tmp_path, f'[server]\ndb = "{target}"\n', "etc/heartwatch.toml")
    assert load_settings(path, {}, {}).db == target


def test_db_from_env_or_flag_is_not_moved_next_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\ndb = "file.db"\n', "etc/heartwatch.toml")
    assert load_settings(path, {"HEARTWATCH_DB": "env.db"}, {}).db == Path("env.db")
    assert load_settings(path, {}, {"db": Path("flag.db")}).db == Path("flag.db")


def test_a_postgresql_url_is_kept_as_a_url_never_a_file_name(tmp_path: Path) -> None:
    url = "postgresql://hw:s3cret@db.internal:5432/heartwatch?sslmode=require"
    path = write(tmp_path, f'[server]\ndb = "{url}"\n', "etc/heartwatch.toml")
    assert load_settings(path, {}, {}).db == url  # not made relative to the config's folder
    assert load_settings(None, {"HEARTWATCH_DB": "postgres://h/hw"}, {}).db == "postgres://h/hw"
    assert redact_db(url) == "postgresql://hw:***@db.internal:5432/heartwatch?sslmode=require"
    assert redact_db(Path("a.db")) == "a.db"


@pytest.mark.parametrize(("value", "reason"), [
    ("mysql://h/db", "mysql:// is not a database heartwatch knows"),
    ("postgresql://", "expected postgresql://"),
    ("", "expected a file name"),
])
def test_a_db_that_is_neither_a_file_nor_a_postgresql_url_is_refused(tmp_path: Path, value: str, reason: str) -> None:
    path = write(tmp_path, f'[server]\ndb = "{value}"\n', "heartwatch.toml")
    with pytest.raises(ConfigError, match=reason):
        load_settings(path, {}, {})


# --- the CLI: one line, exit status 2 -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "needles"), [
    ('[checks.backup]\nschedule = "61 * * * *"\n', ["checks.backup.schedule", "61 * * * *"]),
    ('[checks.backup]\nschedule = "0 0 31 2 *"\n', ["checks.backup.schedule", "0 0 31 2 *", "never fires"]),
    ('[checks.backup]\nschedule = "0 */5 * * * *"\n', ["checks.backup.schedule", "0 */5 * * * *", "6 fields"]),
    ("[checks.a]\n[checks.a]\n", ["checks", "not valid TOML"]),
    ('[checks.up]\nafter = "down"\n[checks.down]\ndepends_on = ["up"]\n',
     ["checks.up.after = 'down'", "a cycle: up -> down -> up"]),
    ('[checks.job]\ndepends_on = ["router"]\n', ["checks.job.depends_on = ['router']", "no check is called 'router'"]),
])
def test_serve_with_a_bad_config_exits_2_with_one_line(tmp_path: Path, text: str, needles: list[str]) -> None:
    write(tmp_path, text, "bad.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTWATCH_")}
    proc = subprocess.run([sys.executable, "-m", "heartwatch", "serve", "--config", "bad.toml"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert lines[0].startswith("heartwatch: ")
    for needle in needles:
        assert needle in lines[0]
    assert not (tmp_path / "heartwatch.db").exists()  # nothing was started


def test_serve_with_a_bad_env_value_exits_2(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HEARTWATCH_")},
           "HEARTWATCH_TIMEZONE": "Nowhere/Town"}
    proc = subprocess.run([sys.executable, "-m", "heartwatch", "serve", "--db", str(tmp_path / "x.db")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "HEARTWATCH_TIMEZONE" in proc.stderr and "Nowhere/Town" in proc.stderr


# --- the fast reader (rtoml) reads every file as tomllib does -------------------------------------------------

TRICKY = FULL + r'''
[checks."quoted-key"]
name = 'literal \d string'
schedule = "*/15 2,14 * * 1-5"
tags = ["ü-umlaut", "tab\there", "esc \u00e9 \"q\""]
steps = ["a", { name = "b", max = "1h30m" }, "c"]

[checks.multi]
name = """two
lines"""
period = "1d"
alerts = "json://a.example, json://b.example"
'''


def test_the_fast_reader_gives_what_tomllib_gives(tmp_path: Path) -> None:
    path = write(tmp_path, TRICKY)
    with path.open("rb") as f:
        by_tomllib = config._settings(tomllib.load(f), path, {}, {})
    assert config._parse_toml_fast(path.read_text()) is not None  # the fast reader is the one under test
    assert load_settings(path, {}, {}) == by_tomllib


def test_crlf_in_a_multiline_string_reads_as_lf_as_tomllib_has_it(tmp_path: Path) -> None:
    # rtoml keeps the CR; a file with CRs is read by tomllib alone.
    path = tmp_path / "heartwatch.toml"
    path.write_bytes(b'[checks.a]\r\nname = """one\r\ntwo"""\r\nperiod = "1h"\r\n')
    assert load_settings(path, {}, {}).checks["a"].name == "one\ntwo"


def test_a_byte_order_mark_is_refused_as_tomllib_refuses_it(tmp_path: Path) -> None:
    path = tmp_path / "heartwatch.toml"
    path.write_bytes(b'\xef\xbb\xbf[checks.a]\nperiod = "1h"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, {}, {})
    assert "not valid TOML" in str(info.value) and "line 1" in str(info.value)


def test_a_bad_value_is_named_as_tomllib_reads_it(tmp_path: Path) -> None:
    # rtoml refuses 1e400 and gives its own tzinfo class for an offset: the message shows tomllib's values.
    assert "= inf: expected a whole number" in str(config_error(tmp_path, '[checks.a]\nalert_after = 1e400\n'))
    e = config_error(tmp_path, "[checks.a]\nname = 1979-05-27T07:32:00-07:00\n")
    assert repr(tomllib.loads("v = 1979-05-27T07:32:00-07:00")["v"]) in str(e)
    assert e.key == "checks.a.name" and "expected a string" in str(e)


def test_a_syntax_error_keeps_tomllibs_line_and_column(tmp_path: Path) -> None:
    text = '[checks.a]\nperiod = "1h"\nname = "unterminated\n'
    with pytest.raises(tomllib.TOMLDecodeError) as expected:
        tomllib.loads(text)
    assert str(expected.value) in str(config_error(tmp_path, text))


def test_remembered_values_still_refuse_a_bad_one_every_time(tmp_path: Path) -> None:
    steps = '["dump", {name = "upload", max = "30m"}]'
    good = "".join(f'[checks.c{i}]\nperiod = "1h"\nsteps = {steps}\n' for i in range(3))
    s = load(tmp_path, good)
    upload = StepSpec("upload", timedelta(minutes=30))
    assert s.checks["c0"].steps == s.checks["c2"].steps == (StepSpec("dump"), upload)
    bad = '[checks.bad]\nperiod = "1h"\nsteps = ["dump", {name = "upload", max = %s}]\n'
    for _ in range(2):  # a bad value is never remembered as good
        e = config_error(tmp_path, good + bad % '"0"')
        assert e.key == "checks.bad.steps" and "must be longer than 0" in str(e)
        assert config_error(tmp_path, good + bad % "5").key == "checks.bad.steps"
        assert config_error(tmp_path, '[checks.bad]\nperiod = "-1h"\n').key == "checks.bad.period"


# Issue 14, finding 6: tokens were split on spaces and commas, so "horse" opened what
# "correct horse battery staple" guarded; and any length was accepted.
def test_a_token_with_spaces_is_one_whole_token(tmp_path: Path) -> None:
    phrase = "correct horse battery staple"
    assert load_settings(None, {"HEARTWATCH_API_TOKEN": phrase}, {}).api_tokens == (phrase,)
    path = write(tmp_path, '[api]\ntokens = ["correct horse battery staple", "a, b, c, d, e, f, g, h"]\n')
    assert load_settings(path, {}, {}).api_tokens == (phrase, "a, b, c, d, e, f, g, h")
    path = write(tmp_path, '[api]\ntokens = "correct horse battery staple"\n')
    assert load_settings(path, {}, {}).api_tokens == (phrase,)
    two = load_settings(None, {"HEARTWATCH_API_TOKEN": f"{phrase}\n second-token-0123456789 \n"}, {})
    assert two.api_tokens == (phrase, "second-token-0123456789")


@pytest.mark.parametrize("env, doc", [({"HEARTWATCH_API_TOKEN": "horse"}, ""),
                                      ({}, '[api]\ntokens = ["long-enough-token-123", "short"]\n'),
                                      ({}, '[api]\ntokens = "horse, staple"\n')])
def test_a_short_token_or_a_bare_string_is_refused_at_start(tmp_path: Path, env: dict[str, str], doc: str) -> None:
    path = write(tmp_path, doc) if doc else None
    with pytest.raises(ConfigError) as info:
        load_settings(path, env, {})
    assert ("HEARTWATCH_API_TOKEN" if env else "api.tokens") in str(info.value)
    assert "horse" not in str(info.value) and "short" not in str(info.value)


def _many_checks(n: int) -> str:
    return "".join(f'[checks.job-{i:05d}]\nschedule = "{i % 60} * * * *"\ntags = ["t{i % 7}"]\n\n' for i in range(n))


def test_a_large_file_read_in_chunks_gives_what_tomllib_reads(tmp_path: Path) -> None:
    import tomllib

    from heartwatch import config
    from heartwatch.core.settings import parse_check

    text = '[server]\ntimezone = "Europe/Berlin"\n\n' + _many_checks(2500)
    assert config._check_chunks(text) is not None  # this file is read in chunks
    settings = load(tmp_path, text)
    whole = tomllib.loads(text)["checks"]
    assert list(settings.checks) == list(whole)
    assert settings.checks == {slug: parse_check(slug, table, "Europe/Berlin") for slug, table in whole.items()}


@pytest.mark.parametrize("tail, expected", [
    ('[checks.job-00000]\nschedule = "@daily"\n', ["checks", "not valid TOML"]),  # defined twice, chunks apart
    ('[checks.job-02600]\nschedule = "99 * * * *"\n', ["checks.job-02600.schedule", "99 * * * *"]),
])
def test_a_large_file_read_in_chunks_is_refused_as_tomllib_says(tmp_path: Path, tail: str,
                                                               expected: list[str]) -> None:
    message = str(config_error(tmp_path, _many_checks(2500) + tail))
    assert all(part in message for part in expected), message


def test_a_large_file_with_a_section_after_the_checks_is_read_whole(tmp_path: Path) -> None:
    from heartwatch import config

    text = _many_checks(2500) + '[alerts]\nremind_every = "2h"\n'
    assert config._check_chunks(text) is None
    settings = load(tmp_path, text)
    assert len(settings.checks) == 2500 and settings.remind_every == timedelta(hours=2)
