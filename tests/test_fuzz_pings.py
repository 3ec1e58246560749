"""The ping endpoint under generated hostile input (hypothesis), in-process over a real store.

Every generated request goes through the ASGI app (httpx's ASGITransport, one event loop shared with the
store) with the scheduler's hooks attached, as `heartwatch serve` has them. Each answer must be one of the
documented ones, never a 500 or a traceback, and carry Ping-Body-Limit; afterwards the database must agree
with the answers: one event per 200/201, runs in valid states, at most one open rid-less run per check,
and `PRAGMA integrity_check` ok. Bodies over 1 MB must be refused before they are read whole.

`pytest -s` prints how many requests were generated (the figure for the issue note).
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import string
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape
from support import db
from support.server import Server

from heartwatch.config import Settings, parse_check
from heartwatch.core.model import RunState
from heartwatch.engine.scheduler import Scheduler
from heartwatch.store.sqlite import Store
from heartwatch.web.app import create_app
from heartwatch.web.hub import Hub
from heartwatch.web.ping_view import MAX_BODY

T = TypeVar("T")
KEY = "fuzz-key"
TOKEN = "fuzz-token-0123456789"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
PING_STATUSES = {200, 201, 400, 404, 405, 413}
#: Generated requests, per fuzz module; printed at the end of each module (`pytest -s`).
REQUESTS: Counter[str] = Counter()
#: Reproducible in CI: the same examples every run, and no example database carried between runs.
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


class TickingClock:
    """Moves forward a second at every reading, so every ping and change has its own, increasing time."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class FuzzApp:
    """The app in-process over a real store on its own event loop, driven by synchronous hypothesis tests."""

    runner: asyncio.Runner
    hub: Hub
    client: httpx.AsyncClient
    uuids: dict[str, str] = field(default_factory=dict)  # slug -> uuid of the checks made at the start

    @classmethod
    def open(cls, tmp_path: Path, checks: dict[str, dict[str, Any]], **overrides: Any) -> FuzzApp:
        runner = asyncio.Runner()
        settings_ = Settings(**{"db": tmp_path / "fuzz.db", "base_url": "http://hw.example:8000", "ping_key": KEY,
                                "api_tokens": (TOKEN,), **overrides})
        # Retention far above the number of generated pings: every answered ping stays countable.
        store = Store(settings_.db, retention=10_000_000)
        clock = TickingClock()
        runner.run(store.open(KEY))
        hub = Hub(settings=settings_, store=store, clock=clock)
        scheduler = Scheduler(settings_, store, clock)  # its hooks run in every ping's transaction, as in serve
        hub.ping_listeners.append(scheduler.ping_listener)
        hub.change_listeners.append(scheduler.wake)
        specs = {slug: parse_check(slug, table) for slug, table in checks.items()}
        runner.run(store.sync_config(specs, clock()))
        runner.run(scheduler.prepare())
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://hw.test")
        app = cls(runner, hub, client)
        for check in runner.run(store.checks()):
            app.uuids[check.slug] = check.uuid
        return app

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def request(self, method: str, url: str, module: str, **kw: Any) -> httpx.Response:
        REQUESTS[module] += 1
        return self.run(self.client.request(method, url, **kw))

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self.run(db.query(self.hub.store, query, params))

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self.hub.store.close())
        self.runner.close()


@pytest.fixture(scope="module", autouse=True)
def report_requests(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    name = request.module.__name__
    print(f"\n{name}: {REQUESTS[name]} generated requests; all fuzz modules so far: {sum(REQUESTS.values())}")


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text[:500]


def check_database(app: FuzzApp) -> None:
    """What must hold however the pings came: valid runs, one open rid-less run at most, a sound file."""
    states = {s.value for s in RunState}
    for state, started, ended in app.sql("SELECT state, started_at, ended_at FROM runs"):
        assert state in states
        if ended is None:
            assert state in (RunState.RUNNING, RunState.TIMED_OUT), state
        else:
            assert ended >= started and state != RunState.RUNNING, (state, started, ended)
    doubled = app.sql("SELECT check_id, COUNT(*) FROM runs WHERE ended_at IS NULL AND rid IS NULL"
                      " GROUP BY check_id HAVING COUNT(*) > 1")
    assert doubled == []
    dangling = app.sql("SELECT COUNT(*) FROM events e LEFT JOIN runs r ON r.id = e.run_id"
                       " WHERE e.run_id IS NOT NULL AND (r.id IS NULL OR r.check_id != e.check_id)")
    assert dangling == [(0,)]
    assert app.sql("PRAGMA integrity_check") == [("ok",)]


# --- strategies ------------------------------------------------------------------------------------------

CHECKS: dict[str, dict[str, Any]] = {
    "backup": {"schedule": "0 2 * * *", "timezone": "Europe/Berlin", "max_runtime": "2h",
               "steps": ["dump", {"name": "upload", "max": "45m"}, "verify"], "strict_steps": True},
    "hourly": {"period": "1h", "min_runtime": "30s"},
    "plain": {},
}
STEP_NAMES = ["start", "finish", "success", "fail", "log", "dump", "upload", "verify", "other.step_1:x"]

printable = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
junk_segment = st.one_of(
    printable,
    st.sampled_from(["..", ".", "%", "%00", "%ZZ", "\x00", "é", "€", "🙂", "a b", "a?b", "a#b", "a;b", "\\", "\n"]),
    st.integers(0, 6000).map(lambda n: "a" * n),  # very long
)
suffix = st.one_of(
    st.none(),
    st.sampled_from(["start", "fail", "log", "START", "finish", "0", "1", "255", "256", "-1", "-0", "00", "007",
                     "99999999999999999999", "1e3", "0x1", "", " 1"]),
    st.integers(-300, 600).map(str),
    junk_segment,
)


@st.composite
def ping_paths(draw: st.DrawFn, app_uuids: list[str]) -> str:
    """The part after /ping/, as the server will see it once percent-decoded: half well-formed, half hostile."""
    form = draw(st.sampled_from(["valid", "valid", "uuid", "slug", "junk"]))
    if form == "valid":
        ident = draw(st.sampled_from([[u] for u in app_uuids] + [[KEY, s] for s in [*CHECKS, "new-job", "new_job_2"]]))
        ident += draw(st.sampled_from([[], [], ["start"], ["fail"], ["log"], ["0"], ["3"]]))
        return "/".join(ident)
    if form == "uuid":
        known = draw(st.sampled_from(app_uuids))
        ident = [draw(st.sampled_from([known, known, known.upper(), known[:-1] + "0", known.replace("-", ""),
                                       "00000000-0000-0000-0000-000000000000"]))]
    elif form == "slug":
        key = draw(st.sampled_from([KEY, KEY, KEY, "wrong-key", KEY.upper()]))
        slug = draw(st.one_of(st.sampled_from([*CHECKS, *CHECKS, "new-job", "new_job_2", "Backup", "back up"]),
                              st.from_regex(r"\A[a-z0-9_-]{1,70}\Z"), junk_segment))
        ident = [key, slug]
    else:
        ident = draw(st.lists(junk_segment, max_size=4))
    end = draw(st.one_of(st.none(), st.sampled_from(["start", "fail", "log", "0", "3"]), suffix))
    parts = [*ident, end] if end is not None else ident
    return "/".join(parts)


def encode_path(path: str, how: str) -> str:
    if how == "all":  # every byte as %XX: the server must decode before it reads the path
        return "".join(f"%{b:02X}" for b in path.encode())
    return quote(path, safe="/" if how == "plain" else "/-_.~:@!$&'()*+,;=")


query_values = st.one_of(
    st.sampled_from(STEP_NAMES),
    st.sampled_from(["1", "0", "true", "yes", "", "run-1", "2b1f-uuid-like", "a" * 64, "a" * 65, "0 2 * * *",
                     "*/5 * * * *", "61 * * * *", "1h", "0", "-5m", "15m", "99999999999999999999d", "Europe/Berlin",
                     "Mars/Olympus", "../../etc/passwd", "UTC"]),
    printable,
)
query_keys = st.sampled_from(["step", "rid", "create", "schedule", "tz", "grace", "max_runtime", "junk", "STEP", ""])


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    if draw(st.booleans()):  # well-formed
        pairs = draw(st.lists(st.tuples(st.sampled_from(["step", "rid", "create"]),
                                        st.sampled_from([*STEP_NAMES, "run-1", "run-2", "1"])), max_size=2))
    else:
        pairs = draw(st.lists(st.tuples(query_keys, query_values), max_size=5))  # duplicates included
    text = urlencode(pairs, quote_via=quote)
    if draw(st.integers(0, 9)) == 0:
        text += draw(st.sampled_from(["&&", "=&=", "%", "%ZZ=1", "step", ";rid=x", "&step=%FF%FE", "+"]))
    return text


METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=300),  # random bytes: mostly not UTF-8
    st.sampled_from([b"\xff\xfe\x00<script>alert(1)</script>", "ok \u00e9\U0001f642".encode(), b"\xc3(", b"\x80"]),
    st.tuples(st.sampled_from([9_999, 10_000, 10_001, 65_536, MAX_BODY - 1, MAX_BODY, MAX_BODY + 1]),
              st.binary(min_size=1, max_size=4)).map(lambda t: (t[1] * t[0])[: t[0]]),
)


@st.composite
def header_sets(draw: st.DrawFn, body_len: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["User-Agent"] = draw(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=40))
    if draw(st.integers(0, 3)) == 0:
        headers["Content-Type"] = draw(st.sampled_from(
            ["text/plain", "application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
             "text/plain; charset=latin-1"]))
    if draw(st.integers(0, 4)) == 0:  # a Content-Length that is not the body's: the server only trusts it to refuse
        headers["Content-Length"] = draw(st.sampled_from(
            [str(MAX_BODY + 1), "99999999999999999999", "0", "-1", "abc", str(body_len + 10),
             str(max(body_len - 1, 0))]))
    if draw(st.integers(0, 4)) == 0:
        headers[draw(st.sampled_from(["X-Junk", "Authorization", "Transfer-Encoding", "Expect", "Cookie"]))] = draw(
            st.text(alphabet=string.printable.strip("\r\n\x0b\x0c"), max_size=30))
    return headers


@dataclass
class PingCall:
    methods: list[str]  # the same request is sent with each
    path: str  # after /ping/, not encoded
    encoding: str
    query: str
    headers: dict[str, str]
    body: bytes
    chunked: bool

    @property
    def url(self) -> str:
        return "/ping/" + encode_path(self.path, self.encoding) + (f"?{self.query}" if self.query else "")


@st.composite
def ping_calls(draw: st.DrawFn, uuids: list[str]) -> PingCall:
    body = draw(bodies)
    methods = draw(st.lists(st.sampled_from([*METHODS[:4], *METHODS]), min_size=1, max_size=3, unique=True))
    return PingCall(methods=methods, path=draw(ping_paths(uuids)),
                    encoding=draw(st.sampled_from(["plain", "plain", "safe", "all"])), query=draw(query_strings()),
                    headers=draw(header_sets(len(body))), body=body, chunked=draw(st.integers(0, 4)) == 0)


async def chunks(body: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i:i + size]


def target_slug(app: FuzzApp, path: str) -> str | None:
    """Which check a ping path names, worked out here independently of the server's parser."""
    parts = [p for p in unquote(path).split("/") if p]
    if not parts:
        return None
    by_uuid = {u: s for s, u in app.uuids.items()}
    if parts[0].lower() in by_uuid:
        return by_uuid[parts[0].lower()]
    return parts[1] if len(parts) > 1 else None


# --- the property ---------------------------------------------------------------------------------------

PING_EXAMPLES = 1_900


def test_generated_pings_get_documented_answers_and_leave_a_consistent_database(tmp_path: Path) -> None:
    app = FuzzApp.open(tmp_path, CHECKS)
    limit = app.hub.settings.body_limit
    answered: Counter[str] = Counter()  # check slug -> 200/201 answers
    module = __name__
    try:
        @settings(FUZZ, max_examples=PING_EXAMPLES)
        @given(call=ping_calls(list(app.uuids.values())))
        def one_ping(call: PingCall) -> None:
            for method in call.methods:
                send_ping(method, call)

        def send_ping(method: str, call: PingCall) -> None:
            content: Any = chunks(call.body) if call.chunked else call.body
            headers = {k: v.encode("latin-1") for k, v in call.headers.items()}  # user agents may be Latin-1
            r = app.request(method, call.url, module, content=content, headers=headers)
            assert r.status_code != 500 and r.status_code in PING_STATUSES, (r.status_code, r.text)
            assert_no_traceback(r.text)
            # What the server saw: httpx, like curl, removes dot segments ("/ping/.." is "/").
            seen = unquote(r.request.url.raw_path.split(b"?")[0].decode("ascii"))
            if not seen.startswith("/ping/"):
                return
            assert r.headers["Ping-Body-Limit"] == str(limit)
            if method == "HEAD":
                assert r.content == b""
            if method not in ("GET", "HEAD", "POST", "PUT"):
                assert r.status_code == 405
            declared = call.headers.get("Content-Length", "")
            if r.status_code in (200, 201):
                assert len(call.body) <= MAX_BODY and not (declared.isdigit() and int(declared) > MAX_BODY)
                slug = target_slug(app, seen[len("/ping/"):])
                assert slug is not None
                answered[slug] += 1
                if r.status_code == 201:
                    app.uuids.setdefault(slug, app.run(app.hub.store.check(slug)).uuid)  # type: ignore[union-attr]
                # The newest event of that check is this ping, its body byte-exact (the tail within the limit).
                rows = app.sql("SELECT e.body FROM events e JOIN checks c ON c.id = e.check_id WHERE c.slug = ?"
                               " ORDER BY e.id DESC LIMIT 1", (slug,))
                assert rows == [(call.body[-limit:] or None,)]
            elif len(call.body) > MAX_BODY and method in ("GET", "HEAD", "POST", "PUT"):
                assert r.status_code in (400, 404, 413)  # refused on its path or query before the body, or 413

        one_ping()
        stored = dict(app.sql("SELECT c.slug, COUNT(e.id) FROM checks c LEFT JOIN events e ON e.check_id = c.id"
                              " GROUP BY c.id"))
        assert {s: n for s, n in stored.items() if n} == dict(answered)
        assert sum(answered.values()) > PING_EXAMPLES // 4  # the generator reaches the stores, not only the 404s
        check_database(app)
    finally:
        app.close()


# --- bodies over 1 MB: refused before they are read whole ---------------------------------------------------


class Sender:
    """An ASGI `receive` that hands out a body in chunks and counts how much of it was asked for."""

    def __init__(self, total: int, chunk: int = 65_536) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __call__(self) -> dict[str, Any]:
        size = min(self.chunk, self.total - self.sent)
        self.sent += size
        return {"type": "http.request", "body": b"x" * size, "more_body": self.sent < self.total}


def asgi_ping(app: FuzzApp, headers: list[tuple[bytes, bytes]], receive: Sender) -> tuple[int, dict[bytes, bytes]]:
    answer: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        answer.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": f"/ping/{app.uuids['plain']}", "raw_path": b"", "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 1234), "server": ("hw.test", 80)}
    asgi = app.client._transport.app  # type: ignore[attr-defined]
    app.run(asgi(scope, receive, send))
    return answer[0]["status"], dict(answer[0]["headers"])


@pytest.fixture
def small_app(tmp_path: Path) -> Iterator[FuzzApp]:
    app = FuzzApp.open(tmp_path, {"plain": {}})
    try:
        yield app
    finally:
        app.close()


def test_a_declared_length_over_1_mb_is_refused_before_any_of_the_body_is_read(small_app: FuzzApp) -> None:
    receive = Sender(5_000_000)
    status, headers = asgi_ping(small_app, [(b"content-length", b"5000000")], receive)
    assert status == 413 and headers[b"ping-body-limit"] == b"10000"
    assert receive.sent == 0
    assert small_app.sql("SELECT COUNT(*) FROM events") == [(0,)]


def test_a_chunked_body_over_1_mb_is_refused_once_it_passes_1_mb(small_app: FuzzApp) -> None:
    receive = Sender(50_000_000)  # no Content-Length: the reading stops at the first chunk past the limit
    status, _ = asgi_ping(small_app, [(b"transfer-encoding", b"chunked")], receive)
    assert status == 413
    assert MAX_BODY < receive.sent <= MAX_BODY + receive.chunk
    exactly = Sender(MAX_BODY)
    assert asgi_ping(small_app, [], exactly)[0] == 200  # 1 MB itself is allowed
    assert small_app.sql("SELECT COUNT(*), MAX(LENGTH(body)) FROM events") == [(1, 10_000)]


def raw_http(server: Server, head: str, body_chunks: Iterator[bytes] | None = None) -> bytes:
    """Speak HTTP/1.1 over TCP; returns what the server answered (up to the first 4 KB)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in body_chunks or ():
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending: what we want to see
        return sock.recv(4096)


def test_over_tcp_the_real_server_answers_413_without_waiting_for_the_body(server: Server) -> None:
    created = httpx.get(server.slug_url("big", "?create=1"), timeout=10)
    assert created.status_code == 201
    path = f"/ping/{server.ping_key}/big"
    # Declared 2 MB and not one byte sent: the answer comes anyway.
    answer = raw_http(server, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b"ping-body-limit: 10000" in answer.lower()

    def chunked(total: int) -> Iterator[bytes]:
        piece = b"y" * 65_536
        for _ in range(total // len(piece)):
            yield b"%x\r\n%s\r\n" % (len(piece), piece)
        yield b"0\r\n\r\n"

    answer = raw_http(server, f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                      chunked(1_200_000))
    assert answer.startswith(b"HTTP/1.1 413")
    events = server.api("/checks/big/events")["events"]
    assert len(events) == 1 and events[0]["kind"] == "success"  # only the create; refused bodies left nothing


# --- non-UTF-8 bodies: stored byte-exact, shown as escaped text -------------------------------------------

NASTY = b"\xff\xfe<script>alert(1)</script>\xc3( & \"quoted\" '\x80\x00\r\nend \xe2\x82"


def test_a_non_utf8_body_is_stored_byte_exact_and_shown_escaped_everywhere(small_app: FuzzApp) -> None:
    app = small_app
    uuid = app.uuids["plain"]
    assert app.request("POST", f"/ping/{uuid}/start", "test_fuzz_pings").status_code == 200
    assert app.request("POST", f"/ping/{uuid}/3", "test_fuzz_pings", content=NASTY).status_code == 200
    assert app.sql("SELECT body FROM events ORDER BY id DESC LIMIT 1") == [(NASTY,)]
    text = NASTY.decode("utf-8", "replace")
    assert "\ufffd" in text
    events = app.request("GET", "/api/v1/checks/plain/events", "test_fuzz_pings").json()["events"]
    assert events[0]["body"] == text
    run_id = events[0]["run_id"]
    for path in ["/checks/plain", f"/checks/plain/runs/{run_id}"]:
        page = app.request("GET", path, "test_fuzz_pings")
        assert page.status_code == 200
        html = page.content.decode("utf-8")  # strict: no raw bytes of the body made it through
        assert str(escape(text)) in html, path
        assert "<script>alert" not in html


@pytest.mark.parametrize("page", ["check", "run", "api"])
def test_generated_bodies_are_shown_as_their_escaped_text(tmp_path: Path, page: str) -> None:
    app = FuzzApp.open(tmp_path, {"plain": {}})
    uuid = app.uuids["plain"]
    module = __name__
    alphabet = st.sampled_from([b"<", b">", b"&", b'"', b"'", b"\xff", b"\xc3", b"\x80", b"\xe2\x82", b"\x00",
                                b"\r\n", b"a", b"\xc3\xa9", b"<script>", b"</pre>", b"{{ x }}", b"\t"])
    try:
        @settings(FUZZ, max_examples=60)
        @given(body=st.lists(alphabet, min_size=1, max_size=40).map(b"".join))
        def shown(body: bytes) -> None:
            assert app.request("POST", f"/ping/{uuid}/fail", module, content=body).status_code == 200
            text = body.decode("utf-8", "replace")
            events = app.request("GET", "/api/v1/checks/plain/events?limit=1", module).json()["events"]
            assert app.sql("SELECT body FROM events WHERE id = ?", (events[0]["id"],)) == [(body,)]
            if page == "api":
                assert events[0]["body"] == text
                return
            path = "/checks/plain" if page == "check" else f"/checks/plain/runs/{events[0]['run_id']}"
            html = app.request("GET", path, module).content.decode("utf-8")
            assert str(escape(text)) in html
            assert "<script>" not in html.replace('<script src="/static/app.js', "")

        shown()
    finally:
        app.close()


def test_the_fuzz_database_check_can_fail(small_app: FuzzApp) -> None:
    """The consistency check is not vacuous: a second open rid-less run and an inverted run are caught."""
    check_id = small_app.sql("SELECT id FROM checks")[0][0]

    def broken(conn: sqlite3.Connection) -> None:
        for _ in range(2):
            conn.execute("INSERT INTO runs (check_id, state, started_at, steps, flags) VALUES (?, 'running', 1, '[]',"
                         " '[]')", (check_id,))

    small_app.run(small_app.hub.store.writer.call(broken))
    with pytest.raises(AssertionError):
        check_database(small_app)
