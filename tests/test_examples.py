"""The files in examples/ work as shown: the config loads, the crontab parses, backup.sh reports its steps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.server import Server, shared_server

from heartwatch.cli.crontab_import import parse_and_rewrite
from heartwatch.config import load_settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BIN = str(Path(sys.executable).parent)


def backup_check_toml() -> str:
    """The example's [checks.nightly-backup] table as written, minus min_runtime: a demo run takes a
    moment, not the minutes of a real backup, and would be flagged as too fast."""
    text = (EXAMPLES / "heartwatch.toml").read_text()
    block = next(b for b in text.split("\n[") if b.startswith("checks.nightly-backup]"))
    return "[" + "\n".join(line for line in block.splitlines() if not line.startswith("min_runtime"))


# Only the check: the example's [alerts] would try to reach ntfy.sh, and tests stay offline. One server for the
# module: each test reads the newest run, which is the one it just made.
server = shared_server(backup_check_toml())


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTWATCH_", "BACKUP_"))}
    env.update(PATH=BIN + os.pathsep + env.get("PATH", ""), BACKUP_DEMO="1", BACKUP_DEMO_PAUSE="0", **extra)
    return env


def runs(server: Server) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = server.api("/api/v1/checks/nightly-backup/runs?limit=5")["runs"]
    return result


def test_example_config_loads() -> None:
    settings = load_settings(EXAMPLES / "heartwatch.toml")
    assert set(settings.checks) == {"nightly-backup", "photo-sync", "weekly-report"}
    backup = settings.checks["nightly-backup"]
    assert [s.name for s in backup.steps] == ["dump", "upload", "verify"]
    assert backup.strict_steps and backup.timezone == "Europe/Berlin"
    assert settings.checks["photo-sync"].period is not None
    assert settings.checks["weekly-report"].timezone == "Europe/London"
    assert settings.db == EXAMPLES / "heartwatch.db"  # relative to the file


def test_example_crontab_parses_and_every_job_already_reports() -> None:
    result = parse_and_rewrite((EXAMPLES / "crontab").read_text())
    assert result.proposals == []
    assert sum("already reports to heartwatch" in n for n in result.notes) == 3
    assert len(result.notes) == 3  # nothing it could not read


def test_backup_script_under_heartwatch_run_reports_its_steps(server: Server) -> None:
    env = script_env(HEARTWATCH_URL=server.url, HEARTWATCH_PING_KEY=server.ping_key)
    r = subprocess.run([sys.executable, "-m", "heartwatch", "run", "nightly-backup", "--",
                        str(EXAMPLES / "backup.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    run = runs(server)[0]
    assert run["state"] == "ok", run
    assert [s["name"] for s in run["steps"]] == ["dump", "upload", "verify"]
    assert run["flags"] == []


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_backup_script_on_its_own_pings_start_steps_and_finish_with_curl(server: Server) -> None:
    uuid = server.api("/api/v1/checks/nightly-backup")["uuid"]
    env = script_env(HEARTWATCH_PING_URL=f"{server.url}/ping/{uuid}")
    r = subprocess.run([str(EXAMPLES / "backup.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    run = runs(server)[0]
    assert run["state"] == "ok", run
    assert run["rid"].startswith("backup-")
    assert [s["name"] for s in run["steps"]] == ["dump", "upload", "verify"]
    assert "start_not_seen" not in run["flags"]


def test_backup_script_failure_is_reported_with_its_step(server: Server) -> None:
    # An upload target that cannot be created: the run fails after the upload step, with the status.
    env = script_env(HEARTWATCH_URL=server.url, HEARTWATCH_PING_KEY=server.ping_key,
                     BACKUP_DEST="/proc/no-such-place/backups")
    r = subprocess.run([sys.executable, "-m", "heartwatch", "run", "nightly-backup", "--",
                        str(EXAMPLES / "backup.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    run = runs(server)[0]
    assert (run["state"], run["last_step"], run["exit_code"]) == ("failed", "upload", r.returncode)
