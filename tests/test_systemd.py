"""systemd/: the unit is accepted by systemd and sandboxed; the database path is set in one place that the
service, `heartwatch backup` and `heartwatch checks` all read; secrets come as credentials."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.ports import free_port
from support.waiting import wait_for

from heartwatch.config import ENV_VARS, SERVER_SETTINGS, load_settings

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "heartwatch.service"
INSTALLED_AT = "ExecStart=/usr/local/bin/heartwatch "
SYSTEMD = UNIT.parent


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def verifiable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at the heartwatch of this venv.

    `systemd-analyze verify` fails when ExecStart's binary does not exist, and /opt/heartwatch/bin/heartwatch
    (the symlink the unit expects to an installed heartwatch) does not exist on a test machine. Only that path
    changes; every other line is verified as shipped, and the copy keeps the unit's file name.
    """
    text = UNIT.read_text()
    assert INSTALLED_AT in text
    binary = Path(sys.executable).parent / "heartwatch"
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_AT, f"ExecStart={binary} "))
    return copy


def test_unit_runs_serve_as_a_dynamic_user_with_sandboxing() -> None:
    d = directives(UNIT.read_text())
    assert d["ExecStart"][0].split()[1:4] == ["serve", "--config", "/etc/heartwatch/heartwatch.toml"]
    expected = {
        "DynamicUser": "yes", "StateDirectory": "heartwatch", "ConfigurationDirectory": "heartwatch",
        "Restart": "on-failure", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "MemoryDenyWriteExecute": "yes",
    }
    assert {k: d[k][0] for k in expected} == expected
    assert "AF_INET" in d["RestrictAddressFamilies"][0].split()
    assert int(d["LimitNOFILE"][0]) >= 65536


def test_the_database_path_is_in_one_place_the_config() -> None:
    # The unit used to set HEARTWATCH_DB in its own environment, so `heartwatch backup --config ...` and
    # `heartwatch checks --config ...` looked for /etc/heartwatch/heartwatch.db: now only the config says.
    unit = UNIT.read_text()
    assert "HEARTWATCH_DB" not in unit
    assert "EnvironmentFile" not in directives(unit)
    settings = load_settings(SYSTEMD / "heartwatch.toml", environ={})
    assert settings.db == Path("/var/lib/heartwatch/heartwatch.db")  # StateDirectory=heartwatch


def test_service_backup_and_checks_use_the_same_database(tmp_path: Path) -> None:
    """The unit's own command line against the shipped service config (its paths moved into tmp_path),
    then `heartwatch checks` and `heartwatch backup` with only --config: all three use one database."""
    state, etc = tmp_path / "var-lib-heartwatch", tmp_path / "etc-heartwatch"
    state.mkdir()
    etc.mkdir()
    port = free_port()
    config = etc / "heartwatch.toml"
    config.write_text((SYSTEMD / "heartwatch.toml").read_text()
                      .replace("/var/lib/heartwatch", str(state)).replace("port = 8000", f"port = {port}"))
    args = directives(UNIT.read_text())["ExecStart"][0].split()[1:]
    args = [str(config) if a == "/etc/heartwatch/heartwatch.toml" else a for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTWATCH_")}
    hw = [sys.executable, "-m", "heartwatch"]
    with (tmp_path / "serve.log").open("w") as log:
        proc = subprocess.Popen([*hw, *args], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=20)
        key = wait_for(lambda: re.search(r"/ping/([A-Za-z0-9_-]+)/<slug>", (tmp_path / "serve.log").read_text()))
        assert httpx.get(f"http://127.0.0.1:{port}/ping/{key.group(1)}/from-cron?create=1").status_code == 201
        checks = subprocess.run([*hw, "checks", "--config", str(config)], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=30)
        assert checks.returncode == 0 and "from-cron" in checks.stdout, checks.stderr
        backup = subprocess.run([*hw, "backup", str(tmp_path / "copy.db"), "--config", str(config)], env=env,
                                cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert backup.returncode == 0, backup.stderr
        assert f"copied {state / 'heartwatch.db'}" in backup.stdout + backup.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_secrets_come_as_credentials_read_through_file_variables() -> None:
    d = directives((SYSTEMD / "secrets.conf").read_text())
    credentials = dict(c.split(":", 1) for c in d["LoadCredential"])
    for assignment in d["Environment"]:
        name, value = assignment.split("=", 1)
        assert name.endswith("_FILE") and name.removesuffix("_FILE") in ENV_VARS, name
        assert value.startswith("%d/") and value.removeprefix("%d/") in credentials, assignment
    assert {ENV_VARS[e.split("=")[0].removesuffix("_FILE")] for e in d["Environment"]} == \
        {s.dotted for s in SERVER_SETTINGS if s.secret}  # every secret setting, and nothing else
    shipped = load_settings(SYSTEMD / "heartwatch.toml", environ={})  # world-readable: no secret in it
    assert (shipped.alert_urls, shipped.api_tokens, shipped.web_password) == ((), (), None)


@pytest.fixture
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (install systemd to verify the unit)")
    return path


def test_systemd_analyze_verify_passes(systemd_analyze: str, tmp_path: Path) -> None:
    r = subprocess.run([systemd_analyze, "verify", "--man=no", str(verifiable_copy(tmp_path))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr  # verify also prints warnings it does not fail on


def test_systemd_analyze_security_rates_the_unit_well_sandboxed(systemd_analyze: str, tmp_path: Path) -> None:
    r = subprocess.run([systemd_analyze, "security", "--offline=yes", "--threshold=20", "--no-pager",
                        str(verifiable_copy(tmp_path))], capture_output=True, text=True, timeout=60)
    if "--offline" in r.stderr and "unrecognized" in r.stderr:
        pytest.skip("this systemd-analyze has no offline security check (systemd < 250)")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr  # exposure 2.0 or lower on systemd's 0-10 scale
