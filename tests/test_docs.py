"""The documentation cannot drift: docs/configuration.md documents every setting of the settings tables
(CHECK_SETTINGS, SERVER_SETTINGS) with its type, default and environment variable, and nothing else;
README.md and docs/ link only to files that exist in the repository; example alert URLs are placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from heartwatch.config import ENV_VARS, SERVER_SETTINGS
from heartwatch.core.settings import CHECK_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "configuration.md"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def tables_by_heading(text: str) -> dict[str, list[list[str]]]:
    """Rows of the markdown tables under each `## ` heading (header and rule rows left out), cells stripped."""
    tables: dict[str, list[list[str]]] = {}
    heading = ""
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
        elif line.startswith("|") and not re.match(r"^\|\s*(key|variable)\s*\|", line) and "---" not in line:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            tables.setdefault(heading, []).append(cells)
    return tables


def plain(cell: str) -> str:
    return cell.replace("`", "")


@pytest.fixture(scope="module")
def tables() -> dict[str, list[list[str]]]:
    return tables_by_heading(REFERENCE.read_text())


@pytest.mark.parametrize("section", sorted({s.section for s in SERVER_SETTINGS}))
def test_every_server_setting_is_documented_as_it_is(tables: dict[str, list[list[str]]], section: str) -> None:
    rows = {plain(r[0]): r for r in tables[f"`[{section}]`"]}
    expected = {s.key: s for s in SERVER_SETTINGS if s.section == section}
    assert set(rows) == set(expected), f"[{section}]: documented but unknown, or known but undocumented"
    for key, setting in expected.items():
        _, kind, default, env, meaning = rows[key]
        assert (kind, plain(default), plain(env)) == (setting.kind, setting.describe_default(), setting.env or ""), key
        assert meaning, key


def test_every_check_setting_is_documented_as_it_is(tables: dict[str, list[list[str]]]) -> None:
    rows = {plain(r[0]): r for r in tables["`[checks.<slug>]`"]}
    assert list(rows) == [s.key for s in CHECK_SETTINGS]  # all of them, in the table's order
    for setting in CHECK_SETTINGS:
        _, kind, default, meaning = rows[setting.key]
        assert (kind, plain(default)) == (setting.kind.name, setting.describe_default()), setting.key
        assert meaning, setting.key


def test_every_environment_variable_is_documented(tables: dict[str, list[list[str]]]) -> None:
    rows = {plain(r[0]): plain(r[1]) for r in tables["Environment variables"] if len(r) == 2}
    assert rows == {name: "[{}] {}".format(*dotted.split(".")) for name, dotted in ENV_VARS.items()}


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # not the code blocks
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository_and_resolve(doc: Path) -> None:
    assert "../shared" not in doc.read_text() and "DESIGN.md" not in doc.read_text()
    for link in links(doc):
        if re.match(r"^[a-z]+://", link):
            continue  # the upstream projects (Apprise's list of services)
        target, _, anchor = link.partition("#")
        resolved = (doc.parent / target).resolve() if target else doc
        assert resolved.is_relative_to(ROOT), f"{doc.name}: {link} leaves the repository"
        assert resolved.exists(), f"{doc.name}: {link} does not exist"
        if anchor and resolved.suffix == ".md":
            headings = [re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-")
                        for h in re.findall(r"^#+ (.*)$", resolved.read_text(), flags=re.M)]
            assert anchor in headings, f"{doc.name}: no heading for #{anchor} in {target or doc.name}"


def test_examples_and_docs_use_placeholder_alert_hosts() -> None:
    # A real public topic in an example (ntfy.sh/my-homelab-alerts) sends the job's output to anyone
    # subscribed to it; placeholders end in .example (RFC 2606) or are example.org/com.
    files = [*DOCS, *(p for p in (ROOT / "examples").iterdir() if p.is_file()),
             *(p for p in (ROOT / "systemd").iterdir() if p.is_file())]
    for path in files:
        for scheme, host in re.findall(r"\b(ntfys?|gotify|matrix|mailto|json|discord|tgram)://(?:[^@/\s\"']*@)?"
                                       r"([^/:\s\"'`)]+)", path.read_text()):
            if scheme in ("discord", "tgram"):
                continue  # their "host" is a token: placeholders like webhook_id / bottoken
            assert host.endswith(".example") or host in ("example.org", "example.com", "127.0.0.1") \
                or (re.fullmatch(r"[<]?[a-z_-]+[>]?", host) and host not in ("ntfy", "localhost")), \
                f"{path.name}: {scheme}://{host} may be a real service"
