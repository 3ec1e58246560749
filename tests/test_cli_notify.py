"""`heartwatch notify-test`: a test alert to real receivers on loopback, one line per target, exit status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.ports import free_port
from support.receivers import HttpReceiver

from heartwatch.cli.main import main
from heartwatch.cli.notify_test import TITLE
from heartwatch.engine.notify import redact


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.stop()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["notify-test", *args], env={"HEARTWATCH_ALERT_URLS": ""})
    return result.exit_code, result.stdout, result.stderr


def test_urls_on_the_command_line_get_a_test_alert(receiver: HttpReceiver) -> None:
    url = receiver.url("hook")
    code, out, _ = run(url)
    assert code == 0
    assert out.split() == [redact(url), "ok"]
    [(path, payload)] = receiver.received
    assert path == "/hook"
    assert payload["title"] == TITLE
    assert "If you can read this, alerts to this target work." in payload["message"]


def test_a_refused_port_and_a_bad_url_are_reported_and_exit_1(receiver: HttpReceiver) -> None:
    good, refused = receiver.url("ok"), f"json://127.0.0.1:{free_port()}/down"
    code, out, _ = run(good, refused, "bogus://example.org/x")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(redact(good)) and lines[0].endswith("  ok")
    assert lines[1].startswith(redact(refused)) and "FAILED:" in lines[1] and "connection" in lines[1].lower()
    assert lines[2].startswith("bogus://...") and "FAILED: unknown service bogus://" in lines[2]
    assert len(receiver.received) == 1


def test_the_config_targets_and_the_checks_own(tmp_path: Path, receiver: HttpReceiver) -> None:
    config = tmp_path / "heartwatch.toml"
    config.write_text(f"""
[alerts]
urls = ["{receiver.url('all')}"]

[checks.backup]
period = "1h"
alerts = ["{receiver.url('backup')}", "{receiver.url('all')}"]
""")
    code, out, _ = run("--config", str(config))
    assert code == 0 and len(out.splitlines()) == 1
    assert [p for p, _ in receiver.received] == ["/all"]

    code, out, _ = run("--config", str(config), "--check", "backup")
    assert code == 0 and len(out.splitlines()) == 2  # each target once
    assert sorted(p for p, _ in receiver.received) == ["/all", "/all", "/backup"]
    assert "for check backup" in receiver.received[-1][1]["message"]


def test_usage_errors_say_what_to_do(tmp_path: Path) -> None:
    config = tmp_path / "heartwatch.toml"
    config.write_text('[checks.backup]\nperiod = "1h"\n')

    code, _, err = run("--config", str(config))
    assert code == 2 and "no alert targets" in err

    code, _, err = run("--config", str(config), "--check", "nope")
    assert code == 2 and "no check 'nope'" in err and "backup" in err

    code, _, err = run("--check", "backup", "json://127.0.0.1:9/x")
    assert code == 2 and "not both" in err

    code, _, err = run("--check", "backup")
    assert code == 2 and "--check needs --config" in err
