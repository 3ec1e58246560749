"""The optional login, in-process: what needs a session or a token, the login and logout forms and their CSRF
tokens, the session cookie (flags, tampering, expiry, logout), and redirects that never leave the server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from bs4 import BeautifulSoup
from test_web_support import KEY, T0, Clock

from heartwatch.config import Settings, parse_check
from heartwatch.store.sqlite import Store
from heartwatch.web.app import create_app
from heartwatch.web.auth import KNOWN_COOKIE, LOGIN_COOKIE, SESSION_COOKIE, Auth
from heartwatch.web.hub import Hub
from heartwatch.web.login import LOGIN_TOTAL, LOGIN_TRIES, LoginBrakes

PASSWORD = "correct horse battery staple"
TOKEN = "read-token-0123456789"


class Site:
    """The app with a password, driven through one browser-like client that keeps cookies."""

    def __init__(self, hub: Hub, client: httpx.AsyncClient, clock: Clock) -> None:
        self.hub, self.client, self.clock = hub, client, clock

    async def csrf(self, path: str = "/login") -> str:
        r = await self.client.get(path)
        assert r.status_code == 200, (path, r.status_code)
        field = BeautifulSoup(r.text, "html.parser").select_one('input[name="csrf"]')
        assert field is not None
        return str(field["value"])

    async def login(self, password: str = PASSWORD, next_path: str = "/") -> httpx.Response:
        token = await self.csrf()
        return await self.client.post("/login", data={"csrf": token, "password": password, "next": next_path})


async def open_site(tmp_path: Path, **settings: object) -> Site:
    clock = Clock()
    values: dict[str, object] = {"db": tmp_path / "login.db", "base_url": "http://hw.example:8000", "ping_key": KEY,
                                 "web_password": PASSWORD, "api_tokens": (TOKEN,), **settings}
    hub_settings = Settings(**values)  # type: ignore[arg-type]
    store = Store(hub_settings.db)
    await store.open(KEY)
    await store.sync_config({"backup": parse_check("backup", {"period": "1h"})}, T0)
    hub = Hub(settings=hub_settings, store=store, clock=clock)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://hw.test")
    return Site(hub, client, clock)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    s = await open_site(tmp_path)
    try:
        yield s
    finally:
        await s.client.aclose()
        await s.hub.store.close()


# --- what is closed, what stays open -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/checks/backup", "/checks/backup?before=5", "/checks/nope"])
async def test_pages_redirect_to_the_login_with_next(site: Site, path: str) -> None:
    r = await site.client.get(path)
    assert r.status_code == 303
    assert r.headers["location"] == f"/login?next={quote(path, safe='')}"


@pytest.mark.parametrize("path", ["/api/v1/checks", "/api/v1/checks/backup", "/api/v1/checks/backup/runs",
                                  "/api/v1/checks/backup/events", "/metrics"])
async def test_reads_answer_401_json_without_login(site: Site, path: str) -> None:
    r = await site.client.get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in r.json()["error"]


async def test_live_refresh_without_session_gets_401_not_the_login_page(site: Site) -> None:
    r = await site.client.get("/", headers={"X-Heartwatch-Live": "1"})
    assert r.status_code == 401 and "log in" in r.text


@pytest.mark.parametrize("path,status", [("/healthz", 200), ("/static/app.css", 200), ("/static/app.js", 200),
                                         ("/badge/backup.svg", 200), ("/badge/backup.json", 200),
                                         ("/api/v1/openapi.json", 200), ("/login", 200)])
async def test_open_paths_need_no_login(site: Site, path: str, status: int) -> None:
    assert (await site.client.get(path)).status_code == status


async def test_pings_never_need_a_login(site: Site) -> None:
    assert (await site.client.get(f"/ping/{KEY}/backup")).status_code == 200
    assert (await site.client.post(f"/ping/{KEY}/backup/fail", content=b"oops")).status_code == 200


async def test_bearer_token_reads_api_and_metrics_but_not_pages_unless_given(site: Site) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await site.client.get("/api/v1/checks", headers=auth)).json()["checks"][0]["slug"] == "backup"
    assert (await site.client.get("/metrics", headers=auth)).status_code == 200
    assert (await site.client.get("/", headers=auth)).status_code == 200  # scripts may read pages with it too
    wrong = await site.client.get("/api/v1/checks", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 401


async def test_writes_still_need_the_token_even_with_a_session(site: Site) -> None:
    assert (await site.login()).status_code == 303
    r = await site.client.post("/api/v1/checks/backup/pause")
    assert r.status_code == 401 and "API token" in r.json()["error"]
    r = await site.client.post("/api/v1/checks/backup/pause", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json()["paused"] is True


# --- the login form -----------------------------------------------------------------------------------------


async def test_login_page_sets_a_strict_short_lived_form_cookie(site: Site) -> None:
    r = await site.client.get("/login?next=/checks/backup")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{LOGIN_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/login" in cookie
    soup = BeautifulSoup(r.text, "html.parser")
    assert soup.select_one('input[name="next"]')["value"] == "/checks/backup"  # type: ignore[index]
    assert soup.select_one('input[type="password"]') is not None
    assert soup.select_one("form.logout") is None


async def test_wrong_password_is_refused_and_sets_no_session(site: Site) -> None:
    r = await site.login("wrong")
    assert r.status_code == 401 and "Wrong password" in r.text
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert (await site.client.get("/")).status_code == 303


async def test_right_password_sets_the_session_cookie_and_opens_everything(site: Site) -> None:
    r = await site.login(next_path="/checks/backup")
    assert r.status_code == 303 and r.headers["location"] == "/checks/backup"
    session = next(c for c in r.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/" in session
    assert "Secure" not in session  # plain http base_url: a Secure cookie would never come back
    assert "Max-Age=604800" in session
    for path in ["/", "/checks/backup", "/api/v1/checks", "/metrics"]:
        assert (await site.client.get(path)).status_code == 200, path
    page = BeautifulSoup((await site.client.get("/")).text, "html.parser")
    assert page.select_one("form.logout input[name=csrf]") is not None
    # Logged in, /login goes straight on.
    assert (await site.client.get("/login?next=/checks/backup")).headers["location"] == "/checks/backup"


async def test_secure_cookie_when_served_over_https(tmp_path: Path) -> None:
    s = await open_site(tmp_path, base_url="https://hw.example")
    s.client.base_url = httpx.URL("https://hw.test")  # a Secure cookie only comes back over https
    try:
        r = await s.login()
        assert any(c.startswith(f"{SESSION_COOKIE}=") and "Secure" in c for c in r.headers.get_list("set-cookie"))
    finally:
        await s.client.aclose()
        await s.hub.store.close()


@pytest.mark.parametrize("form", [{}, {"csrf": ""}, {"csrf": "forged"}])
async def test_login_without_the_right_csrf_token_is_403(site: Site, form: dict[str, str]) -> None:
    await site.csrf()  # the form cookie is there; only the token is missing or wrong
    r = await site.client.post("/login", data={"password": PASSWORD, **form})
    assert r.status_code == 403
    assert (await site.client.get("/")).status_code == 303


async def test_login_token_without_its_cookie_is_403(site: Site) -> None:
    token = await site.csrf()
    site.client.cookies.clear()  # a cross-site post carries no SameSite=Strict cookie
    r = await site.client.post("/login", data={"csrf": token, "password": PASSWORD})
    assert r.status_code == 403


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}])
async def test_cross_site_login_post_is_403_even_with_a_token(site: Site, headers: dict[str, str]) -> None:
    token = await site.csrf()
    r = await site.client.post("/login", data={"csrf": token, "password": PASSWORD}, headers=headers)
    assert r.status_code == 403


async def test_same_origin_header_is_accepted(site: Site) -> None:
    token = await site.csrf()
    r = await site.client.post("/login", data={"csrf": token, "password": PASSWORD},
                               headers={"Origin": "http://hw.test", "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "evil.example",
                                    "/\r\nSet-Cookie: x=1", "javascript:alert(1)", ""])
async def test_no_open_redirect_after_login(site: Site, target: str) -> None:
    r = await site.login(next_path=target)
    assert r.status_code == 303 and r.headers["location"] == "/"
    site.client.cookies.clear()
    page = await site.client.get("/login", params={"next": target})
    field = BeautifulSoup(page.text, "html.parser").select_one('input[name="next"]')
    assert field is not None and field["value"] == "/"


async def test_too_many_wrong_passwords_get_429(site: Site) -> None:
    for _ in range(LOGIN_TRIES):
        assert (await site.login("wrong")).status_code == 401
    r = await site.login(PASSWORD)  # even the right one waits: the window counts tries, not only failures
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    site.clock.now += timedelta(minutes=6)
    assert (await site.login(PASSWORD)).status_code == 303


# Issue 14, finding 5: a new forwarded address per try got 822 guesses in 20.7 s; and a brake per address
# alone locks the right password out too when every client comes through one proxy.
def test_the_total_brake_stops_guesses_from_many_addresses_but_not_a_known_browser() -> None:
    brakes = LoginBrakes()
    allowed = sum(brakes.hit(f"10.0.{i // 256}.{i % 256}", None, 1000.0) == 0 for i in range(1000))
    assert allowed == LOGIN_TOTAL  # one try per address, a thousand addresses: no more than the total
    assert brakes.hit("192.0.2.1", None, 1000.0) > 0
    assert brakes.hit("192.0.2.1", "nonce-of-a-known-browser", 1000.0) == 0
    assert brakes.hit("10.0.0.1", None, 1000.0 + 301) == 0  # the next window


async def test_a_browser_that_logged_in_before_gets_in_while_others_guess(site: Site) -> None:
    assert (await site.login(PASSWORD)).status_code == 303
    assert KNOWN_COOKIE in site.client.cookies
    site.client.cookies.delete(SESSION_COOKIE)
    app = site.client._transport.app  # type: ignore[attr-defined]
    limiter: LoginBrakes = app.state.login_limiter
    for _ in range(LOGIN_TOTAL + 1):  # someone guesses from many addresses
        limiter.total.hit("all", site.clock().timestamp())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hw.test") as stranger:
        page = await stranger.get("/login")
        field = BeautifulSoup(page.text, "html.parser").select_one('input[name="csrf"]')
        assert field is not None
        r = await stranger.post("/login", data={"csrf": str(field["value"]), "password": PASSWORD, "next": "/"})
        assert r.status_code == 429  # a browser never seen waits with the guessers ...
    assert (await site.login(PASSWORD)).status_code == 303  # ... the known one does not


async def test_a_forged_known_cookie_counts_for_nothing(site: Site) -> None:
    site.client.cookies.set(KNOWN_COOKIE, "abc.forged", domain="hw.test", path="/login")
    auth: Auth = site.client._transport.app.state.auth  # type: ignore[attr-defined]
    assert auth.known("abc.forged") is None and auth.known(auth.new_known()) is not None
    for _ in range(LOGIN_TRIES):
        assert (await site.login("wrong")).status_code == 401
    assert (await site.login("wrong")).status_code == 429  # counted under its address, as any stranger


# --- the session cookie ---------------------------------------------------------------------------------------


async def test_tampered_cookie_is_rejected(site: Site) -> None:
    await site.login()
    value = site.client.cookies[SESSION_COOKIE]
    expires, nonce, signature = value.split(".")
    forged = [f"{int(expires) + 10**6}.{nonce}.{signature}", f"{expires}.{nonce}x.{signature}",
              f"{expires}.{nonce}.{signature[:-2]}AA", f"{expires}.{nonce}", "garbage", ""]
    for bad in forged:
        site.client.cookies.clear()
        site.client.cookies.set(SESSION_COOKIE, bad)
        assert (await site.client.get("/")).status_code == 303, bad
        assert (await site.client.get("/api/v1/checks")).status_code == 401, bad


async def test_session_expires(site: Site) -> None:
    await site.login()
    site.clock.now = T0 + timedelta(days=6, hours=23)
    assert (await site.client.get("/")).status_code == 200
    site.clock.now = T0 + timedelta(days=7, seconds=1)
    assert (await site.client.get("/")).status_code == 303


async def test_logout_needs_its_csrf_token_and_ends_the_session(site: Site) -> None:
    await site.login()
    stolen = site.client.cookies[SESSION_COOKIE]
    assert (await site.client.post("/logout")).status_code == 403
    assert (await site.client.post("/logout", data={"csrf": "forged"})).status_code == 403
    token = await site.csrf("/")
    r = await site.client.post("/logout", data={"csrf": token}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert (await site.client.get("/")).status_code == 200  # refused posts changed nothing
    r = await site.client.post("/logout", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert f'{SESSION_COOKIE}=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    assert (await site.client.get("/")).status_code == 303
    # The old cookie, replayed (say it was copied before the logout), no longer works either.
    site.client.cookies.set(SESSION_COOKIE, stolen)
    assert (await site.client.get("/")).status_code == 303


async def test_logout_without_session_goes_to_login(site: Site) -> None:
    r = await site.client.post("/logout", data={"csrf": "x"})
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_sessions_survive_a_restart_but_not_a_new_password() -> None:
    secret = b"s" * 32
    clock = Clock()
    cookie, _ = Auth(PASSWORD, secret, clock=clock).new_session()
    assert Auth(PASSWORD, secret, clock=clock).session(cookie) is not None  # same database secret, same password
    assert Auth("a new password", secret, clock=clock).session(cookie) is None
    assert Auth(PASSWORD, b"t" * 32, clock=clock).session(cookie) is None


def test_only_a_hash_of_the_password_is_kept() -> None:
    auth = Auth(PASSWORD, b"s" * 32)
    assert PASSWORD not in repr(vars(auth))
    assert auth.check_password(PASSWORD) and not auth.check_password(PASSWORD + " ")


async def test_session_secret_is_kept_in_the_database(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    await store.open()
    first = await store.session_secret()
    await store.close()
    store = Store(tmp_path / "s.db")
    await store.open()
    try:
        assert await store.session_secret() == first and len(first) == 32
    finally:
        await store.close()


# --- without a password ---------------------------------------------------------------------------------------


async def test_without_password_everything_is_open_and_login_goes_home(tmp_path: Path) -> None:
    s = await open_site(tmp_path, web_password=None)
    try:
        assert (await s.client.get("/")).status_code == 200
        assert (await s.client.get("/api/v1/checks")).status_code == 200
        assert (await s.client.get("/metrics")).status_code == 200
        r = await s.client.get("/login?next=/checks/backup")
        assert r.status_code == 303 and r.headers["location"] == "/checks/backup"
        assert (await s.client.post("/login", data={"password": "x"})).status_code == 303
        assert BeautifulSoup((await s.client.get("/")).text, "html.parser").select_one("form.logout") is None
    finally:
        await s.client.aclose()
        await s.hub.store.close()
