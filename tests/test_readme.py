"""The README's one-minute tour works when copied line by line: its shell blocks run as written, in order,
in one bash, against a real server (on a free port instead of 8000, with its own ping key for `Xk2...`).
`make serve` itself is replaced by starting that server; the printed lines it shows are checked against
what the server prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support.server import PING_KEY, running_server
from support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def tour_blocks() -> list[tuple[str, str]]:
    """(language, text) of each fenced block of the README's "A one-minute tour" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## A one-minute tour\n", 1)[1].split("\n## ", 1)[0]
    return [(lang, body) for lang, body in re.findall(r"^```(\w*)\n(.*?)^```$", section, flags=re.M | re.S)]


def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    blocks = tour_blocks()
    assert blocks[0] == ("sh", "make serve\n")
    printed = blocks[1][1]
    shell = "".join(body for lang, body in blocks[2:] if lang == "sh")
    assert "heartwatch run" in shell and "curl" in shell

    folder = tmp_path / "checkout"  # the user's shell is in the checkout: examples/ and .venv/ are there
    folder.mkdir()
    (folder / "examples").symlink_to(ROOT / "examples")
    (folder / ".venv").symlink_to(Path(sys.executable).parent.parent)
    with running_server(tmp_path, "") as srv:
        # What `make serve` prints, as the README shows it.
        announced = wait_for(lambda: re.search(r"^heartwatch \S+ listening on .*\n.*$", srv.log(), flags=re.M),
                             what="the start-up lines")
        shown = [re.escape(line).replace(r"Xk2\.\.\.", "[^/]+").replace(r"\.\.\.", ".*")
                 .replace(re.escape("http://127.0.0.1:8000"), re.escape(srv.url))
                 .replace(re.escape("heartwatch 0.1.0"), r"heartwatch \S+")
                 .replace(re.escape("(database heartwatch.db)"), r"\(database .*\)")
                 for line in printed.strip().splitlines()]
        for pattern, line in zip(shown, announced.group(0).splitlines(), strict=True):
            assert re.fullmatch(pattern, line), (pattern, line)

        script = shell.replace("http://127.0.0.1:8000", srv.url).replace("KEY=Xk2...", f"KEY={PING_KEY}")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTWATCH_", "BACKUP_"))}
        env["PATH"] = "/usr/bin:/bin"  # what the tour puts on PATH itself, it must say
        env["HEARTWATCH_URL"] = srv.url  # heartwatch run's default server, http://127.0.0.1:8000, moved
        env["HEARTWATCH_PING_WAIT"] = "10"  # a busy test machine may need more than the default second
        r = subprocess.run(["bash", "-e", "-c", script], cwd=folder, env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
        assert r.stdout.startswith("CreatedOKOKOK"), r.stdout
        assert "heartwatch" not in r.stderr, r.stderr  # no warning from heartwatch run or step

        runs = srv.api("/api/v1/checks/backup/runs?limit=5")["runs"]
        assert [run["state"] for run in runs] == ["ok", "ok"]
        assert [s["name"] for s in runs[1]["steps"]] == ["dump", "upload"]  # the curl run
        assert [s["name"] for s in runs[0]["steps"]] == ["dump", "upload", "verify"]  # heartwatch run
        events = srv.api("/api/v1/checks/backup/events?limit=20")["events"]
        assert any(e["body"] == "backup done: 3 tables, 12 MB\n" for e in events)
        assert "verified" in events[0]["body"]  # the wrapped run's output tail
