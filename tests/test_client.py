"""`heartwatch run`, `step` and `ping` against a real server (the `server` fixture), plus the pure parts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.ports import free_port
from support.server import Server, shared_server

from heartwatch.cli.ping_client import (
    ClientError,
    OutputTail,
    Pinger,
    check_url,
    describe,
    exit_status_of,
    ping_suffix,
    resolve_server,
)

BODY_LIMIT = 300  # small, to prove `run` keeps the tail the server asks for in Ping-Body-Limit
BIN = str(Path(sys.executable).parent)  # where `heartwatch` is installed, for `heartwatch step` in scripts


# One server for the module: each test makes a run of its own and reads the newest run or event, which is its.
server = shared_server(f"""
[server]
body_limit = {BODY_LIMIT}

[checks.job]
period = "1h"

[checks.backup]
schedule = "0 2 * * *"
steps = ["dump", "upload", "verify"]
""")


def client_env(server: Server | None = None, **extra: str) -> dict[str, str]:
    """The environment of a cron job: ours without HEARTWATCH_* (so nothing leaks in), plus the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTWATCH_")}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    if server is not None:
        env.update(HEARTWATCH_URL=server.url, HEARTWATCH_PING_KEY=server.ping_key)
    env.update(extra)
    return env


def hw(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heartwatch", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def last_run(server: Server, slug: str) -> dict[str, Any]:
    runs: list[dict[str, Any]] = server.api(f"/api/v1/checks/{slug}/runs?limit=5")["runs"]
    assert runs, f"no runs for {slug}"
    return runs[0]


def last_event(server: Server, slug: str) -> dict[str, Any]:
    events: list[dict[str, Any]] = server.api(f"/api/v1/checks/{slug}/events?limit=1")["events"]
    return events[0]


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning" in line]


# --- heartwatch run against a real server ---------------------------------------------------------------


def test_run_success_passes_output_through_and_finishes_the_run(server: Server) -> None:
    script = 'echo hello; echo oops >&2; echo "url=$HEARTWATCH_PING_URL"; echo "rid=$HEARTWATCH_RUN_ID"'
    r = hw("run", "job", "--", "sh", "-c", script, env=client_env(server))
    assert r.returncode == 0, r.stderr
    assert r.stderr == "oops\n"
    lines = r.stdout.splitlines()
    assert lines[0] == "hello"
    assert lines[1] == f"url={server.slug_url('job')}"
    rid = lines[2].removeprefix("rid=")
    run = last_run(server, "job")
    assert (run["state"], run["rid"]) == ("ok", rid)
    event = last_event(server, "job")
    assert event["kind"] == "success"
    assert "hello" in event["body"] and "oops" in event["body"]


def test_run_exit_status_3_fails_the_run_with_the_output_tail(server: Server) -> None:
    # More output than the server's body limit: the run must send the last BODY_LIMIT bytes.
    script = ('i=0; while [ $i -lt 100 ]; do echo "line $i of noise"; i=$((i+1)); done;'
              ' sleep 0.3; echo "disk full" >&2; exit 3')
    r = hw("run", "job", "--", "sh", "-c", script, env=client_env(server))
    assert r.returncode == 3
    assert r.stdout.count("of noise") == 100  # passed through in full
    run = last_run(server, "job")
    assert (run["state"], run["exit_code"]) == ("failed", 3)
    event = last_event(server, "job")
    assert event["exit_code"] == 3
    body = event["body"]
    # stdout and stderr are separate pipes read by two threads, so the script pauses before writing to
    # stderr: the stderr line is then the newest output and must be the end of the tail.
    assert body.endswith("disk full\n")
    assert len(body.encode()) <= BODY_LIMIT
    assert "line 99 of noise" in body and "line 0 of noise" not in body


def test_run_a_command_that_does_not_exist_fails_the_run_and_exits_127(server: Server) -> None:
    r = hw("run", "job", "--", "no-such-command-hw", "--flag", env=client_env(server))
    assert r.returncode == 127
    assert "no-such-command-hw: command not found" in r.stderr
    assert (last_run(server, "job")["state"]) == "failed"
    event = last_event(server, "job")
    assert event["kind"] == "fail"
    assert "command not found" in event["body"]


def test_steps_reported_from_inside_the_script(server: Server) -> None:
    script = "heartwatch step dump && heartwatch step upload && heartwatch step verify && echo done"
    r = hw("run", "backup", "--", "sh", "-c", script, env=client_env(server))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    run = last_run(server, "backup")
    assert run["state"] == "ok"
    assert [s["name"] for s in run["steps"]] == ["dump", "upload", "verify"]
    assert run["last_step"] == "verify"


def test_server_down_the_job_still_runs_and_its_status_is_returned() -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    script = "echo ran; heartwatch step dump; exit 3"
    began = time.monotonic()
    r = hw("run", "--server", closed, "--ping-key", "k", "job", "--", "sh", "-c", script, env=client_env())
    assert r.returncode == 3
    assert r.stdout == "ran\n"
    assert len(warnings(r.stderr)) == 1, r.stderr  # one warning, not one per ping or step
    assert "could not reach" in r.stderr and "k/job" not in r.stderr  # the ping key stays out of logs
    assert time.monotonic() - began < 10


def test_sigterm_is_forwarded_to_the_command(server: Server) -> None:
    child = ("import signal, sys, time\n"
             "def bye(*_):\n    print('got TERM', flush=True); sys.exit(42)\n"
             "signal.signal(signal.SIGTERM, bye)\n"
             "print('ready', flush=True)\n"
             "time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-m", "heartwatch", "run", "job", "--", sys.executable, "-c", child],
                            env=client_env(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 42  # the child handled TERM; we exit with its status
    finally:
        proc.kill()
        proc.communicate()
    run = last_run(server, "job")
    assert (run["state"], run["exit_code"]) == ("failed", 42)
    assert "got TERM" in last_event(server, "job")["body"]


def test_a_command_killed_by_a_signal_reports_128_plus_the_signal(server: Server) -> None:
    r = hw("run", "job", "--", "sh", "-c", "kill -TERM $$", env=client_env(server))
    assert r.returncode == 128 + signal.SIGTERM
    assert last_run(server, "job")["exit_code"] == 128 + signal.SIGTERM


def test_run_does_not_wait_for_what_the_command_left_running_in_the_background(server: Server) -> None:
    # `sleep` inherits the output pipe; waiting for its end would hold the job for the whole sleep.
    began = time.monotonic()
    r = hw("run", "job", "--", "sh", "-c", "sleep 60 & echo started", env=client_env(server))
    assert (r.returncode, r.stdout) == (0, "started\n")
    assert time.monotonic() - began < 30  # far below the 60 s a wait for the pipe would take, even on a busy box
    assert last_run(server, "job")["state"] == "ok"


def test_run_with_a_slug_and_no_ping_key_still_runs_the_command() -> None:
    r = hw("run", "job", "--", "sh", "-c", "exit 4", env=client_env())
    assert r.returncode == 4
    assert len(warnings(r.stderr)) == 1 and "ping key" in r.stderr


def test_run_without_a_command_is_a_usage_error() -> None:
    r = hw("run", "job", env=client_env())
    assert r.returncode == 2


# --- heartwatch step ------------------------------------------------------------------------------------


def test_step_outside_a_run_warns_and_exits_0() -> None:
    r = hw("step", "dump", env=client_env())
    assert r.returncode == 0
    assert "HEARTWATCH_PING_URL is not set" in r.stderr


def test_step_with_the_server_down_warns_once_and_exits_0() -> None:
    url = f"http://127.0.0.1:{free_port()}/ping/k/job"
    r = hw("step", "dump", env=client_env(HEARTWATCH_PING_URL=url, HEARTWATCH_RUN_ID="r1"))
    assert r.returncode == 0
    assert len(warnings(r.stderr)) == 1


def test_step_the_server_rejects_is_a_warning_not_a_failure(server: Server) -> None:
    env = client_env(server, HEARTWATCH_PING_URL=server.slug_url("job"), HEARTWATCH_RUN_ID="r1")
    r = hw("step", "bad name!", env=env)
    assert r.returncode == 0
    assert "400" in r.stderr


# --- heartwatch ping ------------------------------------------------------------------------------------


def test_ping_start_step_and_finish_with_a_message(server: Server) -> None:
    env = client_env(server)
    for args in (["--start"], ["--step", "dump"], ["-m", "all good"]):
        r = hw("ping", "backup", "--rid", "manual-1", *args, env=env)
        assert (r.returncode, r.stderr) == (0, "")
    run = last_run(server, "backup")
    assert (run["state"], run["rid"]) == ("ok", "manual-1")
    assert [s["name"] for s in run["steps"]] == ["dump"]
    assert last_event(server, "backup")["body"] == "all good"


def test_ping_by_uuid_with_an_exit_code_and_a_body_file(server: Server, tmp_path: Path) -> None:
    uuid = server.api("/api/v1/checks/job")["uuid"]
    log = tmp_path / "job.log"
    log.write_text("it broke\n")
    env = client_env(server)
    env.pop("HEARTWATCH_PING_KEY")  # a uuid needs no key
    r = hw("ping", uuid, "--exit-code", "5", "--body-file", str(log), env=env)
    assert r.returncode == 0, r.stderr
    run = last_run(server, "job")
    assert (run["state"], run["exit_code"]) == ("failed", 5)
    assert last_event(server, "job")["body"] == "it broke\n"


def test_ping_unknown_check_warns_and_strict_makes_it_fail(server: Server) -> None:
    env = client_env(server)
    r = hw("ping", "nope", env=env)
    assert r.returncode == 0 and "404" in r.stderr
    assert hw("ping", "nope", "--strict", env=env).returncode == 1


@pytest.mark.parametrize("args, message", [
    (["--start", "--fail"], "give only one of --start, --fail"),
    (["--rid", "has space"], "rid 'has space'"),
    (["-m", "x", "--body-file", "-"], "either -m/--message or --body-file"),
])
def test_ping_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    r = hw("ping", "job", "--ping-key", "k", *args, env=client_env())
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# --- the pure parts -------------------------------------------------------------------------------------


def test_output_tail_keeps_the_last_bytes() -> None:
    tail = OutputTail(5)
    tail.feed(b"abc")
    tail.feed(b"defg")
    assert tail.value() == b"cdefg"
    tail.feed(b"0123456789")
    assert tail.value() == b"56789"
    tail.set_limit(2)
    assert tail.value() == b"89"
    tail.set_limit(0)
    tail.feed(b"more")
    assert tail.value() == b""


def test_output_tail_does_not_start_in_the_middle_of_a_character() -> None:
    tail = OutputTail(4)
    tail.feed("aé€".encode())  # 1 + 2 + 3 bytes
    assert tail.value() == "€".encode()


def test_check_url_forms() -> None:
    uuid = "0F8FAD5B-D9CB-469F-A165-70867728950E"
    assert check_url("http://h:8000/", uuid, None) == f"http://h:8000/ping/{uuid.lower()}"
    assert check_url("http://h:8000", "backup", "key") == "http://h:8000/ping/key/backup"
    with pytest.raises(ClientError, match="ping key is needed"):
        check_url("http://h", "backup", None)
    with pytest.raises(ClientError, match="neither a uuid nor a slug"):
        check_url("http://h", "Back Up", "key")
    with pytest.raises(ClientError, match="not an http"):
        check_url("h:8000", "backup", "key")


def test_describe_hides_the_secret_part_of_ping_urls() -> None:
    assert describe("http://h:8000/ping/s3cret/backup") == "http://h:8000 (check 'backup')"
    assert describe("https://h/ping/0f8fad5b-d9cb-469f-a165-70867728950e") == "https://h"


def test_resolve_server_flag_then_config_then_default(tmp_path: Path) -> None:
    config = tmp_path / "heartwatch.toml"
    config.write_text('[server]\nbase_url = "http://box.lan:9000"\nping_key = "file-key"\n')
    assert resolve_server(None, None, None) == ("http://127.0.0.1:8000", None)
    assert resolve_server(None, None, config) == ("http://box.lan:9000", "file-key")
    assert resolve_server("http://other/", "flag-key", config) == ("http://other", "flag-key")
    config.write_text("[server]\nport = 'x'\n")
    with pytest.raises(ClientError, match=r"server\.port"):
        resolve_server(None, None, config)


def test_ping_suffix_and_exit_status() -> None:
    assert ping_suffix(start=True, fail=False, exit_code=None, step=None) == "/start"
    assert ping_suffix(start=False, fail=False, exit_code=0, step=None) == "/0"
    assert ping_suffix(start=False, fail=False, exit_code=None, step="dump") == ""
    assert exit_status_of(-15) == 143
    assert exit_status_of(3) == 3


def test_pinger_retries_only_what_may_succeed_later() -> None:
    naps: list[float] = []
    said: list[str] = []
    pinger = Pinger(f"http://127.0.0.1:{free_port()}/ping/k/job", warn=said.append, sleep=naps.append)
    assert not pinger.send("/start").ok
    assert naps == [0.5, 1.0]  # three attempts, doubling backoff
    assert not pinger.send().ok
    assert naps == [0.5, 1.0]  # the server proved unreachable: one attempt, no more waiting
    assert len(said) == 1
