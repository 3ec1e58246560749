"""The bearer tokens that API writes (and, behind a login, scripts and scrapers) carry, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac

from heartwatch.web.api_errors import ApiError

NO_TOKEN = ("writes are disabled because no API token is configured: set [api] tokens in heartwatch.toml, "
            "or HEARTWATCH_API_TOKEN (or HEARTWATCH_API_TOKEN_FILE), and restart heartwatch")


def authorize(tokens: tuple[str, ...], header: str | None) -> None:
    """Raise ApiError unless `header` is `Bearer <one of tokens>`; compared in constant time."""
    if not tokens:
        raise ApiError(403, NO_TOKEN)
    scheme, _, given = (header or "").strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "this needs an API token: send the header Authorization: Bearer <token>")
    # Every configured token is compared, so the time taken does not tell which one came close; digests
    # are compared, not the tokens, because compare_digest returns early when the lengths differ.
    given_digest = hashlib.sha256(given.encode()).digest()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given_digest, hashlib.sha256(token.encode()).digest())
    if not matched:
        raise ApiError(401, "wrong API token")
