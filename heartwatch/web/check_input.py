"""A check as a client sends it (the write API's JSON, the browser's form): its keys and values checked by the
config's own parser, merge patches, slugs, and the end of a one-off hold. Shared by the routes that take one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from heartwatch.config import Settings
from heartwatch.core.durations import parse_duration
from heartwatch.core.model import CheckSpec
from heartwatch.core.settings import BY_KEY, parse_check, spec_table
from heartwatch.core.values import SLUG_RE, ConfigError
from heartwatch.web.api_errors import ApiError

#: The keys a body may carry besides `slug`: exactly those of a `[checks.<slug>]` table.
CHECK_KEYS = frozenset(BY_KEY)


def reject_unknown(table: dict[str, Any]) -> None:
    unknown = sorted(set(table) - CHECK_KEYS)
    if unknown:
        raise ApiError(422, f"unknown key {unknown[0]!r}; known: slug, {', '.join(sorted(CHECK_KEYS))}", unknown[0])


def validate(slug: str, table: dict[str, Any], settings: Settings) -> CheckSpec:
    """Parse a check table as the config does; a bad value is a 422 naming its field."""
    reject_unknown(table)
    try:
        return parse_check(slug, table, settings.timezone, prefix="")
    except ConfigError as e:
        field = e.key[len(slug) + 1:] if e.key.startswith(f"{slug}.") else "slug"
        raise ApiError(422, f"{field} = {e.shown}: {e.reason}", field) from None


def refusal(error: Exception) -> Exception:
    """What the store refused, as the API answers it: the dependency graph's ConfigError (an unknown parent, a
    cycle) is a 422 naming its field, like any bad value."""
    if isinstance(error, ConfigError):
        field = error.key.rpartition(".")[2]
        return ApiError(422, f"{field} = {error.shown}: {error.reason}", field)
    return error


def merge(current: CheckSpec, patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7396) of a check table: given keys replace, null resets to the default.

    schedule, period and after exclude each other, so giving one drops the others instead of failing.
    """
    table = spec_table(current)
    for key, value in patch.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    given = [k for k in _WHEN_DUE if patch.get(k) is not None]
    if len(given) == 1:
        for other in _WHEN_DUE:
            if other != given[0]:
                table.pop(other, None)
    return table


#: The keys that say when a start is due: one at most.
_WHEN_DUE = ("schedule", "period", "after")


def check_slug(value: object) -> str:
    if value is None:
        raise ApiError(422, "slug is required: the check's name in URLs (1-64 characters of a-z, 0-9, - and _)",
                       "slug")
    if not isinstance(value, str) or not SLUG_RE.match(value):
        raise ApiError(422, "slug: a slug is 1-64 characters of a-z, 0-9, - and _", "slug")
    return value


def hold_until(body: dict[str, Any], now: datetime) -> datetime:
    """The end of a one-off hold from `{"for": "2h"}` or `{"until": "2024-05-01T06:00:00Z"}`."""
    unknown = sorted(set(body) - {"for", "until"})
    if unknown or len(body) != 1:
        raise ApiError(422, 'give one of "for" (a duration like 2h) or "until" (an ISO 8601 time)',
                       unknown[0] if unknown else None)
    if "for" in body:
        try:
            length = parse_duration(str(body["for"]))
        except ValueError as e:
            raise ApiError(422, f"for: {e}", "for") from None
        if length.total_seconds() <= 0:
            raise ApiError(422, "for: the hold must last longer than 0", "for")
        return now + length
    try:
        until = datetime.fromisoformat(str(body["until"]).replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, "until: expected an ISO 8601 time like 2024-05-01T06:00:00Z", "until") from None
    if until.tzinfo is None:
        raise ApiError(422, "until: give the time zone (Z or an offset like +02:00)", "until")
    if until <= now:
        raise ApiError(422, "until: that time has passed", "until")
    return until.astimezone(UTC)



def too_many(limit: int) -> str:
    """Why a new check was refused at [server] max_checks."""
    return (f"too many checks: at most {limit} ([server] max_checks); archive checks that are no longer needed "
            "or raise the limit")
