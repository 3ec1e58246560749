"""The tables of settings (core/settings.py for checks, config.py for the server) and what they drive. Pure."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest

from heartwatch.config import ENV_VARS, SECRET_KEY_RE, SERVER_SETTINGS, ConfigError, Settings, load_settings
from heartwatch.core import settings
from heartwatch.core.model import CheckSpec, StepSpec
from heartwatch.core.settings import CHECK_SETTINGS, Synchronous, api_settings, parse_check, spec_table
from heartwatch.store import codec
from heartwatch.web import openapi

FULL = CheckSpec(slug="s", name="N", schedule="0 2 * * 1", timezone="Asia/Tokyo", start_grace=timedelta(0),
                 max_runtime=timedelta(hours=1, minutes=30), min_runtime=timedelta(seconds=90),
                 steps=(StepSpec("a"), StepSpec("b", timedelta(minutes=45))), strict_steps=True, alert_after=3,
                 alerts=("json://x",), tags=("t",))


def test_the_table_has_one_entry_per_checkspec_field_in_its_order() -> None:
    fields = [f.name for f in dataclasses.fields(CheckSpec) if f.name != "slug"]
    assert [s.key for s in CHECK_SETTINGS] == fields


def test_every_setting_says_what_it_means() -> None:
    for s in CHECK_SETTINGS:
        assert s.meaning.strip().endswith("."), s.key
        assert s.kind.name and s.describe_default(), s.key


def test_each_default_goes_through_its_own_parser_unchanged() -> None:
    # What docs and PATCH show as the default must be a value the parser accepts back.
    for s in CHECK_SETTINGS:
        if s.default is not None:
            assert s.kind.parse(s.kind.to_table(s.default)) == s.default, s.key


def test_a_full_spec_goes_through_table_store_and_parser_unchanged() -> None:
    assert parse_check("s", spec_table(FULL)) == FULL
    assert codec.spec_from_json("s", codec.spec_to_json(FULL)) == FULL
    assert set(spec_table(CheckSpec(slug="x"))) == {s.key for s in CHECK_SETTINGS if not s.optional}


def test_a_stored_spec_without_a_newer_setting_reads_with_its_default() -> None:
    # A setting added later needs no migration: older rows lack its key.
    stored = json.loads(codec.spec_to_json(FULL))
    del stored["alert_after"], stored["tags"]
    spec = codec.spec_from_json("s", json.dumps(stored))
    assert (spec.alert_after, spec.tags) == (1, ())
    assert dataclasses.replace(spec, alert_after=3, tags=("t",)) == FULL


def test_the_api_shows_exactly_the_settings_openapi_lists_and_no_secret() -> None:
    shown = api_settings(FULL)
    assert "alerts" not in shown and "json://x" not in json.dumps(shown)
    check = openapi.SCHEMAS["Check"]
    assert set(shown) <= set(check["required"]) and set(shown) <= set(check["properties"])
    assert set(openapi.SCHEMAS["CheckCreate"]["properties"]) == {"slug", *(s.key for s in CHECK_SETTINGS)}
    assert shown["steps"] == [{"name": "a", "max": None}, {"name": "b", "max": "45m"}]
    assert shown["max_runtime"] == "1h30m" and api_settings(CheckSpec(slug="x"))["period"] is None


def test_an_unknown_key_lists_the_known_ones_in_table_order() -> None:
    with pytest.raises(ConfigError, match="unknown key; known: name, schedule, period, timezone, start_grace"):
        parse_check("s", {"nope": 1})


def test_the_server_table_covers_every_settings_field() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)} - {"checks", "config_path"}
    assert sorted(s.field for s in SERVER_SETTINGS) == sorted(fields)
    for s in SERVER_SETTINGS:
        assert s.meaning.strip().endswith(".") and s.kind, s.dotted
    assert ENV_VARS["HEARTWATCH_API_TOKEN"] == "api.tokens"
    assert len({s.env for s in SERVER_SETTINGS if s.env}) == len(ENV_VARS)


def test_each_server_setting_reads_from_the_file(tmp_path: Path) -> None:
    samples: dict[str, str] = {"host": '"0.0.0.0"', "port": "9", "db": '"x.db"', "base_url": '"http://h:1"',
                               "heartbeat_url": '"http://hb/ping/x"', "ping_key": '"k"', "timezone": '"Asia/Tokyo"',
                               "body_limit": "5",
                               "retention": "20", "max_checks": "5", "trusted_proxies": '["10.0.0.1"]',
                               "rate_limit": "3", "synchronous": '"full"',
                               "urls": '["json://a"]', "remind_every": '"1h"', "retry_first": '"5s"',
                               "tokens": '["t-0123456789abcdef"]', "read_tokens": '["r-0123456789abcdef"]',
                               "password": '"p"'}
    sections: dict[str, list[str]] = {}
    for s in SERVER_SETTINGS:
        sections.setdefault(s.section, []).append(f"{s.key} = {samples[s.key]}")
    path = tmp_path / "heartwatch.toml"
    path.write_text("".join(f"[{name}]\n" + "\n".join(lines) + "\n" for name, lines in sections.items()))
    loaded = load_settings(path)
    for s in SERVER_SETTINGS:
        assert getattr(loaded, s.field) != s.default, s.dotted
    assert loaded.synchronous is Synchronous.FULL


def test_defaults_are_described_for_people() -> None:
    assert settings.BY_KEY["start_grace"].describe_default() == "15m"
    assert settings.BY_KEY["schedule"].describe_default() == "none"
    assert settings.BY_KEY["timezone"].describe_default() == "[server] timezone (UTC)"
    assert {s.key: s.describe_default() for s in SERVER_SETTINGS}["synchronous"] == "normal"


def test_secret_settings_and_only_they_are_hidden_in_messages() -> None:
    for c in CHECK_SETTINGS:
        assert bool(SECRET_KEY_RE.search(f"checks.backup.{c.key}")) is c.secret, c.key
    for s in SERVER_SETTINGS:
        assert bool(SECRET_KEY_RE.search(s.dotted)) is s.secret, s.dotted
        if s.env:
            assert bool(SECRET_KEY_RE.search(s.env)) is s.secret, s.env
