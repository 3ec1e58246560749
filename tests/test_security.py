"""Security headers on every kind of response, pages that a strict CSP allows (no inline script or style),
escaping of what jobs send, and the start-up warning when heartwatch listens on the network without a login."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from bs4 import BeautifulSoup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support.ports import free_port
from support.server import answers_healthz
from support.waiting import wait_for
from test_web_support import KEY, Web

from heartwatch.web.app import create_app
from heartwatch.web.security import CONTENT_SECURITY_POLICY

EXPECTED = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    w = await Web.open(tmp_path)
    await w.config({"backup": {"period": "1h", "name": EVIL, "steps": ["dump"], "tags": ["db"]}})
    await w.ping("backup", "/start")
    await w.ping("backup", "/1", body=EVIL.encode() + b"\xff\xfe bad utf-8")
    try:
        yield w
    finally:
        await w.close()


def assert_headers(r: httpx.Response) -> None:
    for name, value in EXPECTED.items():
        assert r.headers.get(name) == value, (r.request.url, name, r.headers.get(name))


def test_policy_is_what_the_docs_promise() -> None:
    for part in ["default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                 "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"]:
        assert part in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/", 200), ("HEAD", "/", 200), ("GET", "/checks/backup", 200), ("GET", "/checks/backup/runs/1", 200),
    ("GET", "/checks/nope", 404), ("GET", "/no/such/page", 404),
    ("GET", "/api/v1/checks", 200), ("GET", "/api/v1/checks/backup/events", 200), ("GET", "/api/v1/checks/x", 404),
    ("POST", "/api/v1/checks/backup/pause", 403), ("GET", "/api/v1/openapi.json", 200),
    ("GET", "/badge/backup.svg", 200), ("GET", "/badge/backup.json", 200), ("GET", "/metrics", 200),
    ("GET", "/healthz", 200), ("GET", "/static/app.js", 200), ("GET", "/static/app.css", 200),
    ("GET", "/static/favicon.svg", 200), ("GET", "/static/missing.js", 404), ("GET", "/login", 303),
    ("DELETE", "/", 405),
])
async def test_every_response_carries_the_security_headers(web: Web, method: str, path: str, status: int) -> None:
    r = await web.client.request(method, path)
    assert r.status_code == status
    assert_headers(r)


async def test_live_and_not_modified_answers_carry_them_too(web: Web) -> None:
    r = await web.client.get("/", headers={"X-Heartwatch-Live": "1"})
    assert_headers(r)
    again = await web.client.get("/", headers={"X-Heartwatch-Live": "1", "If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    assert_headers(again)


async def test_pings_keep_only_nosniff(web: Web) -> None:
    for r in [await web.client.get(f"/ping/{KEY}/backup"), await web.client.get(f"/ping/{KEY}/nope"),
              await web.client.get(f"/ping/{KEY}/backup/999")]:
        assert r.headers["x-content-type-options"] == "nosniff"


async def test_server_errors_carry_them(web: Web) -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("secret internals")

    app = create_app(web.hub, extra_routes=[Route("/boom", boom)])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom")
    assert r.status_code == 500 and "secret internals" not in r.text and "Traceback" not in r.text
    assert_headers(r)


async def test_existing_headers_are_not_duplicated(web: Web) -> None:
    r = await web.client.get("/")
    assert len(r.headers.get_list("content-security-policy")) == 1


@pytest.mark.parametrize("path", ["/", "/checks/backup", "/checks/backup/runs/1", "/checks/nope"])
async def test_pages_have_no_inline_script_style_or_handlers(web: Web, path: str) -> None:
    for live in (False, True):
        r = await web.client.get(path, headers={"X-Heartwatch-Live": "1"} if live else {})
        soup = BeautifulSoup(r.text, "html.parser")
        for script in soup.find_all("script"):
            assert script.get("src", "").startswith("/static/"), script  # type: ignore[union-attr]
            assert not script.get_text(strip=True)
        assert soup.find_all("style") == []
        for tag in soup.find_all(True):
            attrs = tag.attrs  # type: ignore[union-attr]
            assert "style" not in attrs, tag.name  # type: ignore[union-attr]
            assert not [a for a in attrs if a.lower().startswith("on")], tag.name  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ["/", "/checks/backup", "/checks/backup/runs/1"])
async def test_names_and_ping_bodies_are_escaped(web: Web, path: str) -> None:
    html = (await web.client.get(path)).text
    assert "<script>alert" not in html and "<img src=x" not in html
    if path != "/":
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html or "&lt;script&gt;" in html
    assert "\ufffd" in html or path == "/"  # bad UTF-8 is shown replaced, not dropped or raw


async def test_json_bodies_stay_text(web: Web) -> None:
    events = (await web.client.get("/api/v1/checks/backup/events")).json()["events"]
    assert any(e["body"].startswith(EVIL) for e in events)  # data in JSON, served as application/json
    r = await web.client.get("/api/v1/checks/backup/events")
    assert r.headers["content-type"] == "application/json"


# --- the start-up warning, from the real server ---------------------------------------------------------------


def start_output(tmp_path: Path, host: str, env: dict[str, str] | None = None) -> str:
    """Start `heartwatch serve --host HOST`, wait until it answers, stop it, return what it printed."""
    port = free_port()
    log_path = tmp_path / f"serve-{host.replace(':', '_')}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "heartwatch", "serve", "--db", str(tmp_path / "w.db"),
                                 "--host", host, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, text=True)
        try:
            wait_for(lambda: answers_healthz(f"http://127.0.0.1:{port}", proc, log_path.read_text), 20,
                     "heartwatch to start")
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    return log_path.read_text()


def test_listening_on_the_network_without_password_warns(tmp_path: Path) -> None:
    out = start_output(tmp_path, "0.0.0.0")
    assert "WARNING: listening on 0.0.0.0, reachable from the network, without a password" in out
    assert "status page, the read API and /metrics" in out
    assert out.count("reachable from the network") == 2  # the stdout line and the log line


def test_no_warning_with_a_password_or_on_loopback(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2-but-longer\n")
    out = start_output(tmp_path, "0.0.0.0", {"HEARTWATCH_WEB_PASSWORD_FILE": str(secret)})
    assert "reachable from the network" not in out and "login required" in out
    assert "hunter2" not in out
    assert "reachable from the network" not in start_output(tmp_path, "127.0.0.1")
