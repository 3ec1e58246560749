"""Secrets never leave heartwatch: with Apprise URLs that carry passwords and tokens, an API token and a web
password configured, and alerts failing to deliver, no page, API answer, metric or log line contains them."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from bs4 import BeautifulSoup
from support.ports import free_port
from support.server import Server
from support.waiting import wait_for

from heartwatch.config import ConfigError, load_settings

CLOSED = free_port()  # nothing listens here: deliveries fail at once
API_TOKEN = "ApiTokenSecret0123456789"
PASSWORD = "WebPassw0rdSecret-xyz"
SECRETS = ["JsonPassw0rdSecret", "TOKENabcdefghij0123456789", "UnknownSchemeSecret", "NtfyPassw0rdSecret",
           "topicSecretTopic123456789", API_TOKEN, PASSWORD]


@pytest.fixture
def server_config() -> str:
    return f"""
[alerts]
urls = ["json://hookuser:JsonPassw0rdSecret@127.0.0.1:{CLOSED}/hooks/TOKENabcdefghij0123456789",
        "foo://user:UnknownSchemeSecret@host/x"]

[checks.backup]
name = "Backup"
period = "1h"
steps = ["dump"]
alerts = ["ntfy://ntfyuser:NtfyPassw0rdSecret@127.0.0.1:{CLOSED}/topicSecretTopic123456789"]
"""


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    secret = tmp_path / "web-password"
    secret.write_text(PASSWORD + "\n")
    return {"HEARTWATCH_API_TOKEN": API_TOKEN, "HEARTWATCH_WEB_PASSWORD_FILE": str(secret)}


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def wait_for_log(text: str, server: Server, count: int, timeout: float = 20) -> None:
    """Until the server's log holds `text` `count` times."""
    try:
        wait_for(lambda: server.log().count(text) >= count, timeout, f"{count} log lines with {text!r}")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{server.log()}") from None


def test_no_secret_in_any_page_api_answer_metric_or_log(server: Server) -> None:
    assert server.get("/ping/test-key/backup/start").status_code == 200
    assert server.get("/ping/test-key/backup?step=dump").status_code == 200
    assert server.post("/ping/test-key/backup/fail", content=b"disk full").status_code == 200
    wait_for_log("alert delivery", server, 3)  # one failed attempt per target, each logged with its error

    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    api_paths = ["/api/v1/checks", "/api/v1/checks/backup", "/api/v1/checks/backup/runs",
                 "/api/v1/checks/backup/events", "/metrics", "/api/v1/openapi.json", "/healthz",
                 "/badge/backup.svg", "/badge/backup.json"]
    bodies = {path: server.get(path, headers=bearer).text for path in api_paths}
    writes = [server.post("/api/v1/checks/backup/pause", headers=bearer),
              server.post("/api/v1/checks/backup/resume", headers=bearer),
              server.post("/api/v1/checks", headers=bearer,
                          json={"slug": "api-made", "period": "1h",
                                "alerts": ["json://u:JsonPassw0rdSecret@127.0.0.1/x"]}),
              server.post("/api/v1/checks", headers=bearer,
                          json={"slug": "api-bad", "alerts": ["NtfyPassw0rdSecret", 5]}),
              server.post("/api/v1/checks", headers={"Authorization": "Bearer WebPassw0rdSecret-xyz"}, json={})]
    assert [w.status_code for w in writes] == [200, 200, 201, 422, 401]
    bodies.update({f"write {i}": w.text + str(w.headers) for i, w in enumerate(writes)})

    with httpx.Client(base_url=server.url, timeout=10) as browser:
        login = browser.get("/login")
        bodies["/login"] = login.text
        csrf = BeautifulSoup(login.text, "html.parser").select_one('input[name="csrf"]')["value"]  # type: ignore[index]
        wrong = browser.post("/login", data={"csrf": csrf, "password": PASSWORD[:-1]})
        bodies["wrong login"] = wrong.text + str(wrong.headers)
        # The refused form came back with a fresh token (and cookie): log in with that one, as a browser would.
        csrf = BeautifulSoup(wrong.text, "html.parser").select_one('input[name="csrf"]')["value"]  # type: ignore[index]
        ok = browser.post("/login", data={"csrf": csrf, "password": PASSWORD})
        assert ok.status_code == 303
        bodies["login"] = str(ok.headers)
        for path in ["/", "/checks/backup", "/checks/api-made", "/checks/backup/runs/1", "/checks/nope"]:
            page = browser.get(path)
            assert page.status_code in (200, 404), path
            bodies[path] = page.text + str(page.headers)
        check_page = bodies["/checks/backup"]
        assert "Extra alert targets" in check_page and "disk full" in check_page  # the page itself works

    for where, text in bodies.items():
        assert leaks(text) == [], where
    log = server.log()
    assert "alert target foo://... will not work" in log  # the bad target is reported, by scheme only
    assert re.search(r"alert delivery \d+ failed", log)
    assert leaks(log) == [], log


def test_config_errors_do_not_repeat_secret_values(tmp_path: Path) -> None:
    path = tmp_path / "heartwatch.toml"
    path.write_text('[alerts]\nurls = ["json://u:JsonPassw0rdSecret@h/x", 5]\n')
    with pytest.raises(ConfigError) as bad_urls:
        load_settings(path)
    path.write_text('[checks.x]\nperiod = "1h"\nalerts = ["ntfy://u:NtfyPassw0rdSecret@h/t", 1]\n')
    with pytest.raises(ConfigError) as bad_alerts:
        load_settings(path)
    path.write_text("[web]\npassword = 12345\n[api]\ntokens = 5\n")
    with pytest.raises(ConfigError) as bad_password:
        load_settings(path)
    for e in (bad_urls, bad_alerts, bad_password):
        assert leaks(str(e.value)) == [] and "12345" not in str(e.value)
        assert "hidden" in str(e.value)
    path.write_text("[server]\nport = 0\n")
    with pytest.raises(ConfigError, match=r"server\.port = 0"):  # other values are still shown
        load_settings(path)
