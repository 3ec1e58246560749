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
        "date": ("0 4 * * *", "America/New_York"),
    }


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
