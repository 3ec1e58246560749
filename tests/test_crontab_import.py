"""`heartwatch import-crontab`: macros, environment lines, CRON_TZ/TZ, comments and odd spacing."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from heartwatch.cli.crontab_import import checks_toml, parse_and_rewrite, slug_for, wrap_command
from heartwatch.config import load_settings

CRONTAB = """\
# m h dom mon dow command
SHELL=/bin/bash
MAILTO = "ops@example.org"
PATH=/usr/local/bin:/usr/bin:/bin

@daily   /usr/local/bin/backup-db.sh --full >/dev/null 2>&1
  */15\t*  *   *\t*    cd /srv/sync &&   ./sync.sh
@reboot /usr/local/bin/warm-cache
CRON_TZ=Europe/Berlin
30 6 * * mon-fri   python3 -m reports.daily >> /var/log/report.log 2>&1
@weekly		/opt/bin/report.py
@Daily /bin/x
TZ="America/New_York"
0 3 1 * * /opt/bin/report.py
0 4 * * * date +%F > /tmp/today
5 4 * * * heartwatch run already -- true
61 4 * * * /bin/never
0 5 31 2 * /bin/leap-of-faith
"""


def test_one_check_per_schedulable_job_with_macros_expanded() -> None:
    result = parse_and_rewrite(CRONTAB)
    got = {p.slug: (p.job.schedule, p.job.timezone) for p in result.proposals}
    assert got == {
        "backup-db": ("0 0 * * *", None),
        "sync": ("*/15 * * * *", None),
        "daily": ("30 6 * * mon-fri", "Europe/Berlin"),
        "report": ("0 0 * * 0", "Europe/Berlin"),
        "report-2": ("0 3 1 * *", "America/New_York"),  # a second job of the same script
    }  # not `date +%F`: its line is left unwrapped (the %), so a check for it would miss every day


def test_rewritten_crontab_keeps_everything_else_as_it_was() -> None:
    result = parse_and_rewrite(CRONTAB)
    lines = result.crontab
    assert len(lines) == len(CRONTAB.splitlines())  # nothing dropped
    for kept in ("# m h dom mon dow command", 'MAILTO = "ops@example.org"', "CRON_TZ=Europe/Berlin",
                 "@reboot /usr/local/bin/warm-cache", "5 4 * * * heartwatch run already -- true",
                 "61 4 * * * /bin/never", "0 5 31 2 * /bin/leap-of-faith"):
        assert kept in lines
    # Redirections stay outside, so `heartwatch run` still sees the output for its tail.
    assert "@daily\theartwatch run backup-db -- /usr/local/bin/backup-db.sh --full >/dev/null 2>&1" in lines
    # A compound command runs as one shell command under `heartwatch run`.
    assert "*/15 * * * *\theartwatch run sync -- sh -c 'cd /srv/sync &&   ./sync.sh'" in lines
    assert "@weekly\theartwatch run report -- /opt/bin/report.py" in lines
    notes = "\n".join(result.notes)
    assert "@reboot" in notes and "already reports" in notes and "'61 4 * * *'" in notes
    assert "unknown macro @Daily" in notes
    assert "'0 5 31 2 *' cannot be watched: never fires" in notes  # the server would refuse it
    assert "unescaped %" in notes  # cron would cut `sh -c '...'` at the %


def test_the_proposed_toml_is_a_valid_heartwatch_config(tmp_path: Path) -> None:
    toml = checks_toml(parse_and_rewrite(CRONTAB).proposals)
    config = tmp_path / "heartwatch.toml"
    config.write_text(toml)
    settings = load_settings(config)
    assert settings.checks["daily"].timezone == "Europe/Berlin"
    assert settings.checks["backup-db"].schedule == "0 0 * * *"
    assert tomllib.loads(toml)["checks"]["report-2"]["timezone"] == "America/New_York"


def test_bad_time_zone_is_noted_and_not_used() -> None:
    result = parse_and_rewrite("CRON_TZ=Mars/Olympus\n0 1 * * * /bin/job\n")
    assert result.proposals[0].job.timezone is None
    assert "not a known time zone" in result.notes[0]


def test_system_crontab_user_column() -> None:
    result = parse_and_rewrite("17 *\t* * *\troot    cd / && run-parts --report /etc/cron.hourly\n", system=True)
    (p,) = result.proposals
    assert (p.slug, p.job.user) == ("cron-hourly", "root")
    assert p.rewritten == ("17 * * * *\troot\t"
                           "heartwatch run cron-hourly -- sh -c 'cd / && run-parts --report /etc/cron.hourly'")


@pytest.mark.parametrize("command, slug", [
    ("/usr/local/bin/backup-db.sh --full", "backup-db"),
    ("cd /srv && ./sync.sh", "sync"),
    ("flock -n /tmp/lock /opt/x/Rotate_Logs.py", "rotate_logs"),
    ("nice -n 10 ionice -c3 pg_dump db | gzip > /b/db.gz", "pg_dump"),
    ("python3 -m reports.weekly", "weekly"),
    ("sh -c 'cd /a; make'", "make"),
    ("env A=b timeout 1h rsync -a x y", "rsync"),
    ("FOO=1 /bin/true", "job"),
])
def test_slug_for(command: str, slug: str) -> None:
    assert slug_for(command) == slug


def test_wrap_command_keeps_escaped_percent_inside_sh_c() -> None:
    wrapped = wrap_command("d", r"tar czf /b/$(date +\%F).tgz /etc")
    assert wrapped == r"heartwatch run d -- sh -c 'tar czf /b/$(date +\%F).tgz /etc'"


def test_command_prints_toml_then_crontab(tmp_path: Path) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text(CRONTAB)
    r = subprocess.run([sys.executable, "-m", "heartwatch", "import-crontab", str(crontab),
                        "--server", "http://hw.lan:8000", "--heartwatch-bin", "/usr/local/bin/heartwatch"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    toml_part, crontab_part = r.stdout.split("# ---- rewritten crontab", 1)
    assert "[checks.backup-db]" in toml_part
    assert "HEARTWATCH_URL=http://hw.lan:8000" in crontab_part
    assert "/usr/local/bin/heartwatch run sync --" in crontab_part
    # stdin works too
    r = subprocess.run([sys.executable, "-m", "heartwatch", "import-crontab", "-"], input="@hourly /bin/x\n",
                       capture_output=True, text=True, timeout=30)
    assert "[checks.x]" in r.stdout


def test_command_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "heartwatch", "import-crontab", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "No such file or directory" in r.stderr  # click's usage error, like every other command


# --- the rewritten crontab, run as cron would run it ----------------------------------------------------


def test_rewritten_lines_run_under_cron_s_environment_and_report(tmp_path: Path) -> None:
    """Each rewritten line runs with `sh -c` under `env -i PATH=/usr/bin:/bin` (cron's environment) plus
    the crontab's own variables, against a real server loaded with the proposed checks: every job runs
    (with the variables set in front of it) and every run is recorded."""
    from support.server import PING_KEY, running_server

    job = tmp_path / "job.sh"
    job.write_text(f'#!/bin/sh\necho "FOO=$FOO BAR=$BAR args=$*" >> "{tmp_path}/job.out"\n')
    job.chmod(0o755)
    crontab = tmp_path / "crontab"
    crontab.write_text(
        "MAILTO=\"\"\n"
        "# nightly db dump\n"
        f"15 1 * * * FOO=bar BAR=2 {job} --full\n"
        "\n"
        f"*/5 * * * * cd {tmp_path} && FOO=compound ./job.sh\n"
        "# heartwatch: named-job\n"
        f"@daily PGPASSWORD=s3cret sh -c 'echo $PGPASSWORD > {tmp_path}/pw.out'\n"
        f"0 4 * * * date +%F > {tmp_path}/today\n")
    server_port_holder = tmp_path / "srv"
    server_port_holder.mkdir()
    out = subprocess.run([sys.executable, "-m", "heartwatch", "import-crontab", str(crontab),
                          "--server", "http://127.0.0.1:1", "--ping-key", PING_KEY],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    toml_part, crontab_part = out.stdout.split("# ---- rewritten crontab", 1)
    checks = tomllib.loads(toml_part)["checks"]
    assert set(checks) == {"nightly-db-dump", "job", "named-job"}  # none for the unwrapped `date +%F` line
    assert checks["nightly-db-dump"]["name"] == "nightly db dump"
    assert "wrap it by hand" in crontab_part

    with running_server(server_port_holder, toml_part) as srv:
        variables = {"PATH": "/usr/bin:/bin"}
        commands = []
        for line in crontab_part.splitlines()[1:]:
            if not line or line.startswith("#"):
                continue
            if "=" in line.split()[0] and not line.startswith(("*", "@")) and not line[0].isdigit():
                name, _, value = line.partition("=")
                variables[name] = value.strip('"')
                continue
            fields = line.split(None, 1 if line.startswith("@") else 5)
            commands.append(fields[-1])
        variables["HEARTWATCH_URL"] = srv.url  # the line import-crontab wrote names the server asked for
        variables["HEARTWATCH_PING_WAIT"] = "10"  # a busy test machine may need more than the default second
        assert len(commands) == 4
        env_args = ["env", "-i", *[f"{k}={v}" for k, v in variables.items()]]
        for command in commands:
            if "%" in command:
                continue  # cron itself would cut this line at the %; it was left as it was
            assert "/heartwatch run " in command and command.split()[0] != "heartwatch", command
            r = subprocess.run([*env_args, "sh", "-c", command], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, (command, r.stdout, r.stderr)
            assert r.stderr == "", (command, r.stderr)
        assert (tmp_path / "job.out").read_text() == "FOO=bar BAR=2 args=--full\nFOO=compound BAR= args=\n"
        assert (tmp_path / "pw.out").read_text() == "s3cret\n"
        for slug in ("nightly-db-dump", "job", "named-job"):
            runs = srv.api(f"/api/v1/checks/{slug}/runs?limit=5")["runs"]
            assert [r["state"] for r in runs] == ["ok"], slug


def test_variables_in_front_of_a_command_stay_in_front_of_heartwatch_run() -> None:
    assert wrap_command("pg", "PGPASSWORD=x PGHOST=db pg_dump app", "/usr/local/bin/heartwatch") == \
        "PGPASSWORD=x PGHOST=db /usr/local/bin/heartwatch run pg -- pg_dump app"
    assert wrap_command("j", "FOO=bar /usr/local/bin/job.sh >/dev/null 2>&1") == \
        "FOO=bar heartwatch run j -- /usr/local/bin/job.sh >/dev/null 2>&1"
    assert wrap_command("j", "FOO=1") is None  # nothing to run


def test_slug_and_name_from_the_comment_above() -> None:
    result = parse_and_rewrite(
        "# heartwatch: db\n0 1 * * * /bin/a\n"
        "# Rotate the logs\n0 2 * * * /bin/b\n"
        "# Copy every photo of the family to the NAS in the basement\n0 3 * * * /bin/c\n"
        "# 0 4 * * * /bin/old-job\n0 5 * * * /bin/d\n"
        "# m h dom mon dow command\n0 6 * * * /bin/e\n"
        "# rotate the logs\n\n0 7 * * * /bin/f\n")
    got = [(p.slug, p.name) for p in result.proposals]
    assert got == [("db", None), ("rotate-the-logs", "Rotate the logs"),
                   ("c", "Copy every photo of the family to the NAS in the basement"),
                   ("d", None), ("e", None), ("f", None)]


def test_import_crontab_writes_the_absolute_path_of_this_heartwatch(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "heartwatch", "import-crontab", "-"], input="@hourly /bin/x\n",
                       capture_output=True, text=True, timeout=30)
    line = next(x for x in r.stdout.splitlines() if x.startswith("@hourly"))
    program = line.split("\t", 1)[1].split()[0]
    assert Path(program).is_absolute() and Path(program).is_file(), line
    assert program == str(Path(sys.executable).parent / "heartwatch")
