"""The optional login: password hash, signed session cookies, CSRF tokens, and the gate in front of the app.

With `[web] password` (or HEARTWATCH_WEB_PASSWORD[_FILE]) set, every page, the read API and /metrics need
a session (from /login) or `Authorization: Bearer <API token>` (scrapers and scripts cannot log in). Open
without either: /ping/ (jobs must never need a login), /healthz, /login, the static files, the badges (a
README embeds them; they show a slug and one status word), and /api/v1/openapi.json (documentation only).
API writes are not decided here: they always need a bearer token, checked by api_write (web/bearer.py).

Nothing here keeps the password: only a scrypt hash of it. Sessions are stateless cookies
`<expires>.<nonce>.<signature>`, signed with HMAC-SHA256 under a key derived from the database's
session secret (`meta`, so sessions survive a restart) and the password hash (so a new password ends
every session). CSRF tokens are HMACs of the session's nonce (or, before login, of a nonce in a
short-lived cookie), so a page on another site can neither read nor forge them. Every comparison of a
secret uses hmac.compare_digest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, quote, urlsplit

from starlette.requests import ClientDisconnect, Request, cookie_parser
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from heartwatch.clock import Clock, system_clock
from heartwatch.web.api_errors import ApiError
from heartwatch.web.bearer import authorize

SESSION_COOKIE = "heartwatch_session"
LOGIN_COOKIE = "heartwatch_login"  # the nonce the login form's CSRF token is bound to
KNOWN_COOKIE = "heartwatch_known"  # marks a browser that logged in before: the total login brake lets it by
KNOWN_TTL = timedelta(days=365)
SESSION_TTL = timedelta(days=7)
LOGIN_FORM_TTL = timedelta(hours=1)
LIVE_HEADER = b"x-heartwatch-live"

# scrypt cost: n=2**14, r=8 takes about 50 ms and 16 MB here, paid once at start and once per login try.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}

#: Paths open without a login even when a password is set (prefixes end with "/").
OPEN_PATHS = frozenset({"/healthz", "/login", "/logout", "/api/v1/openapi.json"})
OPEN_PREFIXES = ("/static/", "/badge/", "/api/v3/")  # /api/v3/ asks for its own X-Api-Key (web/hc_api.py)


@dataclass(frozen=True)
class Session:
    """A logged-in browser: its nonce names it, `csrf` goes into its forms."""

    nonce: str
    expires: int
    csrf: str


#: The session of the request being served, for templates (the logout button); None without a login.
current_session: ContextVar[Session | None] = ContextVar("heartwatch_session", default=None)


def session() -> Session | None:
    """Template global: the current request's session, if any."""
    return current_session.get()


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Auth:
    """The login's secrets for one process: the password's hash and the signing key, never the password."""

    def __init__(self, password: str, secret: bytes, *, secure_cookie: bool = False, clock: Clock = system_clock,
                 session_ttl: timedelta = SESSION_TTL) -> None:
        # The salt is derived from the per-database secret: random, and the same after a restart, so the
        # signing key (which includes the hash) stays the same and sessions survive restarts.
        self._salt = hashlib.sha256(b"heartwatch password salt\0" + secret).digest()
        self._hash = hash_password(password, self._salt)
        self._key = hmac.new(secret, b"heartwatch session\0" + self._hash, hashlib.sha256).digest()
        self.secure_cookie, self.clock, self.session_ttl = secure_cookie, clock, session_ttl
        # Nonces logged out before their expiry; in memory only (a restart forgets them, see README).
        self._revoked: dict[str, int] = {}

    # --- password -------------------------------------------------------------------------------------------

    def check_password(self, given: str) -> bool:
        """Slow on purpose (scrypt): run it off the event loop."""
        return hmac.compare_digest(hash_password(given, self._salt), self._hash)

    # --- signing --------------------------------------------------------------------------------------------

    def _sign(self, purpose: str, text: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}\0{text}".encode(), hashlib.sha256).digest())

    def _verify(self, purpose: str, text: str, signature: str) -> bool:
        return hmac.compare_digest(self._sign(purpose, text).encode(), signature.encode())

    # --- sessions -------------------------------------------------------------------------------------------

    def new_session(self) -> tuple[str, Session]:
        """A fresh session and its cookie value."""
        expires = int((self.clock() + self.session_ttl).timestamp())
        nonce = secrets.token_urlsafe(18)
        payload = f"{expires}.{nonce}"
        return f"{payload}.{self._sign('session', payload)}", Session(nonce, expires, self._sign("csrf", nonce))

    def session(self, cookie: str | None) -> Session | None:
        """The session a cookie value stands for, or None when it is missing, forged, expired or logged out."""
        if not cookie or cookie.count(".") != 2:
            return None
        expires_text, nonce, signature = cookie.split(".")
        # isascii: "²" passes isdigit() but not int() (a forged cookie must not be a 500).
        if not (expires_text.isascii() and expires_text.isdigit() and len(expires_text) <= 12):
            return None
        if not self._verify("session", f"{expires_text}.{nonce}", signature):
            return None
        expires = int(expires_text)
        if expires <= self.clock().timestamp() or nonce in self._revoked:
            return None
        return Session(nonce, expires, self._sign("csrf", nonce))

    def revoke(self, session: Session) -> None:
        now = self.clock().timestamp()
        if len(self._revoked) > 10_000:  # drop the ones that expired anyway, so the set stays small
            self._revoked = {n: e for n, e in self._revoked.items() if e > now}
        self._revoked[session.nonce] = session.expires

    def session_csrf_ok(self, session: Session, token: str) -> bool:
        return hmac.compare_digest(session.csrf.encode(), token.encode())

    # --- a browser that logged in before ---------------------------------------------------------------------

    def new_known(self) -> str:
        """The value of KNOWN_COOKIE, given at a successful login: a nonce and its signature."""
        nonce = secrets.token_urlsafe(12)
        return f"{nonce}.{self._sign('known', nonce)}"

    def known(self, cookie: str | None) -> str | None:
        """The nonce of a genuine KNOWN_COOKIE value (the key its own brake counts under), else None."""
        if not cookie or cookie.count(".") != 1:
            return None
        nonce, signature = cookie.split(".")
        return nonce if self._verify("known", nonce, signature) else None

    # --- the login form's CSRF token (no session yet) --------------------------------------------------------

    def new_login_nonce(self) -> str:
        return secrets.token_urlsafe(18)

    def login_csrf(self, nonce: str) -> str:
        return self._sign("login", nonce)

    def login_csrf_ok(self, nonce: str | None, token: str) -> bool:
        return bool(nonce) and self._verify("login", nonce or "", token)

    # --- cookies --------------------------------------------------------------------------------------------

    def cookie_header(self, name: str, value: str, max_age: int, path: str = "/", same_site: str = "Lax") -> str:
        """A Set-Cookie value: HttpOnly always, Secure when heartwatch is reached over https."""
        cookie: SimpleCookie = SimpleCookie()
        cookie[name] = value
        morsel = cookie[name]
        morsel["path"], morsel["max-age"], morsel["httponly"], morsel["samesite"] = path, max_age, True, same_site
        if self.secure_cookie:
            morsel["secure"] = True
        return morsel.OutputString()


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this server only, never another site (no open redirect)."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 0x20 or c == "\x7f" for c in target)):
        return "/"
    return target


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def request_session(auth: Auth, scope: Scope) -> Session | None:
    raw = _header(scope, b"cookie")
    return auth.session(cookie_parser(raw).get(SESSION_COOKIE)) if raw else None


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class AuthGate:
    """ASGI middleware, installed only when a password is set: no session and no token, no pages or reads."""

    def __init__(self, app: ASGIApp, auth: Auth, tokens: tuple[str, ...]) -> None:
        self.app, self.auth, self.tokens = app, auth, tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        found = request_session(self.auth, scope)
        reset = current_session.set(found)
        try:
            if found is None and not is_open(path) and not self._token_ok(scope):
                api = path.startswith("/api/") or path == "/metrics"
                if not (api and scope["method"] not in ("GET", "HEAD")):
                    # API writes go on: api_write asks for the bearer token with its own, fuller message.
                    await self._refuse(scope, send, api)
                    return
            await self.app(scope, receive, send)
        finally:
            current_session.reset(reset)

    def _token_ok(self, scope: Scope) -> bool:
        header = _header(scope, b"authorization")
        if header is None or not self.tokens:
            return False
        try:
            authorize(self.tokens, header)  # constant time over all tokens
        except ApiError:
            return False
        return True

    async def _refuse(self, scope: Scope, send: Send, api: bool) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        here = scope["path"] + (f"?{query}" if query else "")
        headers: list[tuple[bytes, bytes]]
        if api:
            status = 401
            body = json.dumps({"error": "this needs a login: send Authorization: Bearer <API token>"}).encode()
            headers = [(b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="heartwatch"')]
        elif scope["method"] in ("GET", "HEAD") and _header(scope, LIVE_HEADER) != "1":
            status, body = 303, b""
            headers = [(b"location", f"/login?next={quote(here, safe='')}".encode())]
        else:
            # A live refresh whose session ran out, or a form post: a redirect would swap the login page
            # into the page, so say it plainly instead; a reload then goes to the login.
            status, body = 401, b"log in first: /login"
            headers = [(b"content-type", b"text/plain; charset=utf-8")]
        headers += [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so assume it is reachable


def secure_cookie_for(base_url: str | None) -> bool:
    return bool(base_url and base_url.lower().startswith("https://"))


def cross_site(request: Request) -> bool:
    """The browser says this post comes from another site (the CSRF token is checked as well)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc != request.headers.get("host")


def forbidden(reason: str) -> Response:
    return PlainTextResponse(f"refused: {reason}. Reload the page and try again.", 403)



async def read_form(request: Request, limit: int) -> dict[str, str] | None:
    """A urlencoded body as a dict of first values; None when it is over `limit` bytes or the client left.
    Read in chunks so a large body is refused before it is all in memory."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return None
    except ClientDisconnect:
        return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}
