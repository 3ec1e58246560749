"""`heartwatch checks`: the table from the database (--db) and from a server (--server); pause and resume."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from support.server import Server

from heartwatch.cli.checks import CheckLine, table
from heartwatch.cli.main import main

TOKEN = "cli-token-0123456789"
CONFIG = """
[checks.nightly]
schedule = "0 2 * * *"
steps = ["dump", "upload"]
"""


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"HEARTWATCH_API_TOKEN": TOKEN}


@pytest.fixture
def server_config() -> str:
    return CONFIG


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    # An empty environment for the variables the command reads, so the caller's shell cannot leak in.
    clean = {"HEARTWATCH_DB": None, "HEARTWATCH_URL": None, "HEARTWATCH_CONFIG": None, "HEARTWATCH_API_TOKEN": None,
             "HEARTWATCH_API_TOKEN_FILE": None}
    return CliRunner().invoke(main, ["checks", *args], env={**clean, **(env or {})}, catch_exceptions=False)


def populate(server: Server) -> None:
    """nightly: a run stopped at `dump`; backup: ok; broken: failed with exit status 3."""
    httpx.get(server.slug_url("nightly", "/start"), timeout=10)
    httpx.get(server.slug_url("nightly"), params={"step": "dump"}, timeout=10)
    httpx.get(server.slug_url("backup", "/start"), params={"create": "1"}, timeout=10)
    httpx.get(server.slug_url("backup"), timeout=10)
    httpx.get(server.slug_url("broken", "/3"), params={"create": "1"}, timeout=10)


def rows(output: str) -> dict[str, list[str]]:
    lines = output.strip().splitlines()
    assert lines[0].split()[:2] == ["CHECK", "STATUS"]
    return {line.split()[0]: line.split() for line in lines[1:]}


def test_the_table_from_the_database_while_the_server_runs(server: Server) -> None:
    populate(server)
    result = cli("--db", str(server.db_path))
    assert result.exit_code == 0, result.output
    got = rows(result.output)
    assert set(got) == {"backup", "broken", "nightly"}
    assert got["nightly"][1:3] == ["running", "running"]
    assert "dump" in got["nightly"] and got["nightly"][-2] == "in"  # next due: the next 02:00
    assert got["backup"][1:3] == ["up", "ok"]
    assert got["broken"][1:3] == ["down", "failed"]

    as_json = json.loads(cli("--db", str(server.db_path), "--json").output)
    nightly = next(c for c in as_json if c["slug"] == "nightly")
    assert (nightly["status"], nightly["last_run"], nightly["last_step"]) == ("running", "running", "dump")
    assert nightly["next_due"].endswith("T02:00:00.000Z")


def test_the_table_from_the_server_api(server: Server) -> None:
    populate(server)
    result = cli("--server", server.url)
    assert result.exit_code == 0, result.output
    got = rows(result.output)
    assert got["backup"][1:3] == ["up", "ok"] and got["broken"][1:3] == ["down", "failed"]
    assert "dump" in got["nightly"] and got["nightly"][-2] == "in"
    # HEARTWATCH_URL works as well, and an explicit --db on the command line wins over it.
    assert rows(cli(env={"HEARTWATCH_URL": server.url}).output) == got
    assert set(rows(cli("--db", str(server.db_path), env={"HEARTWATCH_URL": "http://127.0.0.1:9"}).output)) == set(got)


def test_pause_and_resume_through_the_api(server: Server) -> None:
    result = cli("pause", "nightly", "--server", server.url, "--token", TOKEN)
    assert (result.exit_code, result.output.strip()) == (0, "nightly: paused")
    assert server.api("/checks/nightly")["status"] == "paused"
    assert rows(cli("--db", str(server.db_path)).output)["nightly"][1] == "paused"
    # The group's --server and the token from the environment work too.
    result = cli("--server", server.url, "resume", "nightly", env={"HEARTWATCH_API_TOKEN": TOKEN})
    assert result.exit_code == 0 and result.output.strip() == "nightly: new"
    assert server.api("/checks/nightly")["paused"] is False


def test_pause_problems_are_one_line_and_exit_1(server: Server, tmp_path: Path) -> None:
    result = cli("pause", "nightly", "--server", server.url)
    assert result.exit_code == 1 and "needs an API token" in result.stderr
    result = cli("pause", "nightly", "--server", server.url, "--token", "wrong")
    assert result.exit_code == 1 and "wrong API token (HTTP 401)" in result.stderr
    result = cli("pause", "nope", "--server", server.url, "--token", TOKEN)
    assert result.exit_code == 1 and "no such check (HTTP 404)" in result.stderr
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    result = cli("pause", "nightly", "--server", server.url, env={"HEARTWATCH_API_TOKEN_FILE": str(token_file)})
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.output


def test_unreadable_sources_are_one_line_and_exit_1(tmp_path: Path) -> None:
    result = cli("--db", str(tmp_path / "nope.db"))
    assert result.exit_code == 1 and "no database at" in result.stderr
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    result = cli("--db", str(other))
    assert result.exit_code == 1 and "not a heartwatch database" in result.stderr
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    result = cli("--db", str(junk))
    assert result.exit_code == 1 and "cannot read" in result.stderr
    result = cli("--server", "http://127.0.0.1:9")
    assert result.exit_code == 1 and "cannot reach" in result.stderr
    assert "Traceback" not in result.stderr + result.output


def test_the_table_lines_up_and_says_when() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    text = table([
        CheckLine("a-long-slug", "A", "up", "ok", now - timedelta(minutes=5, seconds=3), None,
                  now + timedelta(hours=2, minutes=15, seconds=9)),
        CheckLine("b", "B", "new", None, None, None, None),
    ], now)
    lines = text.splitlines()
    assert lines[0].index("STATUS") == lines[1].index("up") == lines[2].index("new")
    assert "ok 5m3s ago" in lines[1] and lines[1].endswith("in 2h15m")
    assert lines[2].split() == ["b", "new", "-", "-", "-"]


def test_the_table_from_either_store_read_only(db_location: Path | str) -> None:
    """`heartwatch checks --db` reads a SQLite file or a PostgreSQL URL through the same code."""
    from heartwatch.cli.checks import read_db
    from heartwatch.core.model import CheckSpec
    from heartwatch.store.choose import new_store

    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    async def create() -> None:
        store = new_store(db_location)
        await store.open()
        try:
            await store.sync_config({"nightly": CheckSpec(slug="nightly", name="Nightly", schedule="0 2 * * *")}, now)
        finally:
            await store.close()

    asyncio.run(create())
    [line] = read_db(db_location, now)
    assert (line.slug, line.name, line.status) == ("nightly", "Nightly", "new")
