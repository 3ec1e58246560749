"""Durations as people write them in heartwatch.toml: `90s`, `15m`, `2h`, `1d`, `1h30m`, `0`."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
MAX_SECONDS = 36_500 * 86_400


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise ValueError with a reason a user can act on."""
    s = text.strip().lower()
    if s == "0":
        return timedelta(0)
    if not s or _PART.sub("", s) != "":
        raise ValueError("expected a duration like 90s, 15m, 2h, 1d or 1h30m")
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(s))
    if seconds > MAX_SECONDS:  # beyond this, deadline arithmetic would overflow datetime (a 500, not a message)
        raise ValueError("too long: at most 100 years (36500d)")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration, for messages and the API: 5400s -> '1h30m'."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + "".join(out)
