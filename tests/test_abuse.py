"""Issue 14: bounded under abuse. Each numbered finding of the issue, reproduced against the real server (one
shared server where the tests allow it) or the pure parts, and held now."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from support.ports import free_port
from support.server import Server, running_server, shared_server
from support.waiting import wait_for

from heartwatch.web import limits

TOKEN = "t" * 32

CONFIG = f"""
[server]
max_checks = 4
retention = 10

[api]
tokens = ["{TOKEN}"]

[checks.job]
period = "1h"

[checks.evil]
name = "invoice\u202egnp.exe"
tags = ["o\u200bps"]
"""

server = shared_server(CONFIG)


def events(server: Server, slug: str = "job", limit: int = 5) -> list[dict[str, object]]:
    data = server.api(f"/checks/{slug}/events?limit={limit}")
    return data if isinstance(data, list) else data["events"]  # type: ignore[no-any-return]


# --- 1. the User-Agent was stored whole; headers had no size limit ---------------------------------------------


def test_a_long_user_agent_is_cut_to_500_characters(server: Server) -> None:
    r = server.post(f"/ping/{server.ping_key}/job/log", headers={"User-Agent": "u" * 10_000})
    assert r.status_code == 200
    assert events(server, limit=1)[0]["user_agent"] == "u" * 500


def test_headers_over_16_kb_get_431_and_nothing_is_stored(server: Server) -> None:
    before = len(events(server, limit=1000))
    r = server.post(f"/ping/{server.ping_key}/job/log", headers={"User-Agent": "u" * 1_000_000})
    assert r.status_code == 431
    assert "too large" in r.text
    r = server.get("/", headers={"X-Pad": "p" * 17_000})
    assert r.status_code == 431
    assert len(events(server, limit=1000)) == before


# --- 4. ?create=1 had no cap -------------------------------------------------------------------------------------


def test_creating_checks_by_ping_stops_at_max_checks(server: Server) -> None:
    codes = [server.get(f"/ping/{server.ping_key}/flood-{i}?create=1").status_code for i in range(4)]
    assert codes[:2] == [201, 201]  # "job" and "evil" from the config are the first 2 of 4
    assert codes[2:] == [409, 409]
    r = server.get(f"/ping/{server.ping_key}/flood-9?create=1")
    assert "max_checks" in r.text
    assert server.get(f"/ping/{server.ping_key}/flood-0").status_code == 200  # those made still take pings


# --- 5. X-Forwarded-For was believed from loopback ------------------------------------------------------------------


def test_forwarded_headers_from_an_untrusted_address_are_ignored(server: Server) -> None:
    r = server.post(f"/ping/{server.ping_key}/job/log", headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 200
    assert events(server, limit=1)[0]["remote_addr"] == "127.0.0.1"


def test_forwarded_headers_from_a_trusted_proxy_are_believed(tmp_path: Path) -> None:
    config = '[server]\ntrusted_proxies = ["127.0.0.1"]\n[checks.job]\nperiod = "1h"\n'
    with running_server(tmp_path, config) as proxied:
        r = proxied.post(f"/ping/{proxied.ping_key}/job/log", headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 200
        assert events(proxied, limit=1)[0]["remote_addr"] == "203.0.113.9"


# --- 9. slow clients held a connection as long as they liked --------------------------------------------------------


class QuickLimits(limits.LimitedHttp):
    head_timeout, body_timeout = 0.3, 0.6


async def hello(scope: dict[str, object], receive: object, send: object) -> None:
    assert callable(receive) and callable(send)
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})


@pytest.fixture(scope="module")
def quick() -> Iterator[int]:
    """uvicorn with the limits' protocol (short timeouts), in a thread."""
    port = free_port()
    config = uvicorn.Config(hello, host="127.0.0.1", port=port, http=QuickLimits, log_level="error", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(srv.serve()), daemon=True)
    thread.start()
    wait_for(lambda: srv.started, 10, "uvicorn to start")
    yield port
    srv.should_exit = True
    thread.join(10)


def closed_by_server(sock: socket.socket, within: float = 5.0) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n",
                                  b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"])
def test_a_slow_or_silent_client_is_disconnected(quick: int, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", quick)) as sock:
        sock.sendall(sent)
        assert closed_by_server(sock)


def test_a_head_that_never_ends_is_refused_before_it_is_read_whole(quick: int) -> None:
    with socket.create_connection(("127.0.0.1", quick)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nUser-Agent: " + b"u" * (limits.HEAD_BUFFER + 4096))
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 431")  # at once, not after the head timeout


def test_a_prompt_client_is_served_on_a_kept_alive_connection(quick: int) -> None:
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(f"http://127.0.0.1:{quick}/").text == "hi"
            time.sleep(0.1)


# --- 7. bad numbers were 500s with tracebacks; deep JSON a 503 --------------------------------------------------------


HUGE = "99999999999999999999999"


@pytest.mark.parametrize("path", ["/?page=%C2%B2", "/?page=" + "9" * 5000, "/?page=0", "/checks/job?before=%C2%B2",
                                  f"/checks/job?before={HUGE}", f"/checks/job/runs/{HUGE}",
                                  "/checks/job/runs/%C2%B2", "/api/v1/checks/job/events?limit=%C2%B2",
                                  "/api/v1/checks/job/runs?limit=" + "9" * 5000])
def test_a_bad_or_huge_number_is_a_400_with_one_line(server: Server, path: str) -> None:
    r = server.get(path)
    assert r.status_code == 400, (path, r.text[:200])
    assert "\n" not in r.text.strip() and "Traceback" not in r.text and len(r.text) < 300
    assert "invalid literal" not in r.text  # not Python's int() message


def test_deeply_nested_json_to_the_write_api_is_a_400(server: Server) -> None:
    r = server.post("/api/v1/checks", content=b"[" * 60_000, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400 and "nested too deeply" in r.text
    assert "Traceback" not in server.log()


def _deep_request() -> Any:
    from starlette.requests import Request

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"[" * 60_000, "more_body": False}

    return Request({"type": "http", "method": "POST", "headers": [], "path": "/"}, receive)


def test_read_object_refuses_deep_json_with_400() -> None:
    from heartwatch.web.api_errors import ApiError
    from heartwatch.web.api_write import read_object

    with pytest.raises(ApiError) as info:
        asyncio.run(read_object(_deep_request()))
    assert info.value.status == 400 and "nested" in str(info.value.message)


def test_healthchecks_api_refuses_deep_json_with_its_400() -> None:
    from heartwatch.web.hc_api import HcRefusal, read_json

    with pytest.raises(HcRefusal) as info:
        asyncio.run(read_json(_deep_request()))
    assert (info.value.status, str(info.value)) == (400, "could not parse request body")


# --- 8. a full disk logged one traceback per failed ping -------------------------------------------------


def test_the_same_error_is_logged_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    from heartwatch.web.log_throttle import LogThrottle

    now = [0.0]
    throttle = LogThrottle(logging.getLogger("test.throttle"), interval=60, clock=lambda: now[0])
    full = OSError(28, "database or disk is full")
    with caplog.at_level(logging.ERROR, "test.throttle"):
        for i in range(12_010):
            now[0] = i * 8 / 12_010  # 12,010 failed pings in 8 s
            throttle.exception("could not store a ping", full)
        assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None  # the first, whole
        now[0] = 61
        throttle.exception("could not store a ping", full)
        throttle.exception("could not store a ping", ValueError("something else"))
    assert len(caplog.records) == 3
    assert "12010 times in the last 61 s" in caplog.records[1].getMessage()
    assert caplog.records[1].exc_info is None  # no second traceback
    assert "something else" in str(caplog.records[2].exc_info)


# --- 11. bidi overrides and zero-width characters were shown raw -------------------------------------------------


def test_hidden_characters_are_refused_in_slugs(server: Server) -> None:
    for slug in ("%E2%80%AEjob", "jo%E2%80%8Bb"):
        assert server.get(f"/ping/{server.ping_key}/{slug}?create=1").status_code in (400, 404, 422)
        assert server.get(f"/checks/{slug}").status_code == 404


@pytest.mark.parametrize("path", ["/", "/checks/evil"])
def test_hidden_characters_in_names_and_tags_are_shown_spelled_out(server: Server, path: str) -> None:
    page = server.get(path).text
    assert "\u202e" not in page and "\u200b" not in page
    assert "invoice[U+202E]gnp.exe" in page and "o[U+200B]ps" in page


def test_visible_keeps_markup_safe() -> None:
    from markupsafe import Markup

    from heartwatch.web.format import visible

    assert visible(Markup("<b>a\u2066b</b>")) == Markup("<b>a[U+2066]b</b>")
    assert visible("plain") == "plain" and visible(5) == 5


# --- 4. whole lists were built in one go on the event loop ---------------------------------------------------------


async def test_whole_lists_built_in_slices_hold_every_check_in_order(tmp_path: Path) -> None:
    from test_web_support import Web

    from heartwatch.web import api, metrics

    web = await Web.open(tmp_path)
    try:
        n = api.SLICE * 3 + 7
        await web.config({f"job-{i:03d}": {"period": "1h"} for i in range(n)})
        await web.ping("job-005", "/fail")
        listed = (await web.get("/api/v1/checks")).json()["checks"]
        assert [c["slug"] for c in listed] == [f"job-{i:03d}" for i in range(n)]
        text = (await web.get("/metrics")).text
        assert text.count("heartwatch_check_up{") == n and n > metrics.SLICE
        assert 'heartwatch_check_up{slug="job-005"} 0' in text
    finally:
        await web.close()


async def test_the_api_creates_checks_up_to_max_checks_and_archived_ones_do_not_count(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from heartwatch.core.model import CheckSpec
    from heartwatch.store.sqlite import ApiOutcome, Store

    now = datetime(2024, 5, 1, tzinfo=UTC)
    store = Store(tmp_path / "hw.db", max_checks=2)
    await store.open()
    try:
        async def create(slug: str) -> ApiOutcome:
            return (await store.api_save_check(slug, lambda _: CheckSpec(slug=slug), now)).outcome

        assert [await create("a"), await create("b")] == [ApiOutcome.CREATED, ApiOutcome.CREATED]
        assert await create("c") is ApiOutcome.TOO_MANY
        assert (await store.api_archive("a", now)).outcome is ApiOutcome.ARCHIVED
        assert await create("c") is ApiOutcome.CREATED  # an archived check does not count
        assert await create("a") is ApiOutcome.TOO_MANY  # nor may it come back past the cap
        assert await create("b") is ApiOutcome.UPDATED  # changing one that exists is no new check
    finally:
        await store.close()


@pytest.mark.parametrize("suffix", ["%C2%B2", "-%C2%B2", "9" * 5000, "00001"])
def test_a_bad_exit_status_in_a_ping_url_is_a_4xx_not_a_500(server: Server, suffix: str) -> None:
    r = server.post(f"/ping/{server.ping_key}/job/{suffix}")
    assert 400 <= r.status_code < 500 and "internal error" not in r.text


def test_unicode_or_huge_digits_never_reach_int() -> None:
    from heartwatch.core import values
    from heartwatch.core.pings import BadPing, parse_ping
    from heartwatch.web.auth import Auth

    for bad in ("k/job/²", "k/job/-²", "k/job/" + "9" * 5000):
        with pytest.raises(BadPing):
            parse_ping(bad, {}, "UTC")
    with pytest.raises(ValueError, match="expected a whole number"):
        values.whole_number(1, 10)("²")
    auth = Auth("password", b"s" * 32)
    assert auth.session("².nonce.sig") is None and auth.session("9" * 5000 + ".n.s") is None


@pytest.mark.parametrize("code", ["%C2%B2", "-%C2%B2", "9" * 5000])
def test_a_bad_cronitor_status_code_is_a_400(server: Server, code: str) -> None:
    r = server.get(f"/p/{server.ping_key}/job?state=fail&status_code={code}")
    assert r.status_code == 400 and "status_code" in r.text
