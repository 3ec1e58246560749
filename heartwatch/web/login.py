"""`/login` and `/logout`: the forms that start and end a session (see `auth` for the cookies and the gate).

Both are POST forms with a CSRF token; a post from another site (wrong or missing token, or an Origin or
Sec-Fetch-Site header that says so) gets 403 and changes nothing. Wrong passwords are slowed by scrypt and
braked twice, so guessing over the network is impractical:
- per client: LOGIN_TRIES tries per LOGIN_WINDOW from one address (the TCP peer; a forwarded one only from
  `[server] trusted_proxies`), or from one browser that logged in before (its KNOWN_COOKIE);
- in total: LOGIN_TOTAL tries per LOGIN_WINDOW from browsers not known, so an attacker with many addresses
  gets no more than that. A browser that logged in before is not held by the total brake: the right
  password from it still gets in while someone else guesses from elsewhere.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from heartwatch.web.auth import (
    KNOWN_COOKIE,
    KNOWN_TTL,
    LOGIN_COOKIE,
    LOGIN_FORM_TTL,
    SESSION_COOKIE,
    Auth,
    cross_site,
    forbidden,
    read_form,
    request_session,
    safe_next,
)
from heartwatch.web.ratelimit import FixedWindow
from heartwatch.web.render import render

#: A login form is a few hundred bytes; anything much larger is not one.
MAX_FORM = 8_000
#: Wrong passwords allowed per client address in LOGIN_WINDOW seconds before 429.
LOGIN_TRIES = 10
LOGIN_WINDOW = 300.0
#: Tries from browsers that never logged in, in all, in LOGIN_WINDOW seconds.
LOGIN_TOTAL = 100

_SCRYPT_THREAD = ThreadPoolExecutor(1, thread_name_prefix="heartwatch-login")


class LoginBrakes:
    """The brake per client and the total one (see the module's docstring)."""

    def __init__(self) -> None:
        self.per_client = FixedWindow(LOGIN_TRIES, LOGIN_WINDOW)
        self.total = FixedWindow(LOGIN_TOTAL, LOGIN_WINDOW)

    def hit(self, client: str, known: str | None, now: float) -> float:
        """0.0 when this try may go on, else the seconds to wait."""
        if known is not None:
            return self.per_client.hit(("known", known), now)
        return self.per_client.hit(client, now) or self.total.hit("all", now)

    def forget(self, client: str, known: str | None) -> None:
        self.per_client.forget(client if known is None else ("known", known))


def login_limiter() -> LoginBrakes:
    return LoginBrakes()


def _auth(request: Request) -> Auth | None:
    auth: Auth | None = request.app.state.auth
    return auth


def _login_page(auth: Auth, next_path: str, message: str | None = None,
                status: int = 200) -> Response:
    nonce = auth.new_login_nonce()
    response = render("login.html", {"csrf": auth.login_csrf(nonce), "next": next_path, "message": message},
                      status, headers={"Cache-Control": "no-store"})
    response.headers.append("set-cookie", auth.cookie_header(LOGIN_COOKIE, nonce,
                                                             int(LOGIN_FORM_TTL.total_seconds()),
                                                             path="/login", same_site="Strict"))
    return response


async def login_page(request: Request) -> Response:
    auth = _auth(request)
    next_path = safe_next(request.query_params.get("next"))
    if auth is None or request_session(auth, request.scope) is not None:
        return RedirectResponse(next_path, 303)  # nothing to log in to, or already logged in
    return _login_page(auth, next_path)


async def login(request: Request) -> Response:
    auth = _auth(request)
    if auth is None:
        return RedirectResponse("/", 303)
    form = await read_form(request, MAX_FORM)
    if form is None:
        return PlainTextResponse("the login form is too large", 413)
    if cross_site(request) or not auth.login_csrf_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf", "")):
        return forbidden("the form's security token is missing or wrong (the form may be older than an hour)")
    next_path = safe_next(form.get("next"))
    limiter: LoginBrakes = request.app.state.login_limiter
    client = request.client.host if request.client else "?"
    known = auth.known(request.cookies.get(KNOWN_COOKIE))
    wait = limiter.hit(client, known, auth.clock().timestamp())
    if wait:
        response = _login_page(auth, next_path, f"Too many wrong passwords; wait {int(wait) + 1} seconds.",
                               429)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    # scrypt takes tens of milliseconds: off the event loop, so pings are not held up meanwhile; on one thread
    # of its own, so a flood of tries uses one core at most, and one 16 MB scrypt buffer (each thread of the
    # default pool kept its own: RSS grew by ~100 MB under bench/abuse.py's login attack).
    password = form.get("password", "")
    if not await asyncio.get_running_loop().run_in_executor(_SCRYPT_THREAD, auth.check_password, password):
        return _login_page(auth, next_path, "Wrong password.", 401)
    limiter.forget(client, known)
    value, _ = auth.new_session()
    response = RedirectResponse(next_path, 303)
    response.headers.append("set-cookie", auth.cookie_header(SESSION_COOKIE, value,
                                                             int(auth.session_ttl.total_seconds())))
    if known is None:  # this browser got in: the total brake will not hold it next time
        response.headers.append("set-cookie", auth.cookie_header(KNOWN_COOKIE, auth.new_known(),
                                                                 int(KNOWN_TTL.total_seconds()), path="/login",
                                                                 same_site="Strict"))
    response.headers.append("set-cookie", auth.cookie_header(LOGIN_COOKIE, "", 0, path="/login",
                                                             same_site="Strict"))
    return response


async def logout(request: Request) -> Response:
    auth = _auth(request)
    if auth is None:
        return RedirectResponse("/", 303)
    session = request_session(auth, request.scope)
    if session is None:
        return RedirectResponse("/login", 303)
    form = await read_form(request, MAX_FORM)
    if form is None:
        return PlainTextResponse("the form is too large", 413)
    if cross_site(request) or not auth.session_csrf_ok(session, form.get("csrf", "")):
        return forbidden("the form's security token is missing or wrong")
    auth.revoke(session)
    response = RedirectResponse("/login", 303)
    response.headers.append("set-cookie", auth.cookie_header(SESSION_COOKIE, "", 0))
    return response


routes = [
    Route("/login", login_page, methods=["GET", "HEAD"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
