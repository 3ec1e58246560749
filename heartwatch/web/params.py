"""Numbers in query strings and paths, validated before they reach a read: a bad or huge one is a 400 with a
one-line reason, never a traceback (`?page=%C2%B2` passed str.isdigit() and broke int(); 5,000 digits broke
int()'s limit; 99999999999999999999999 overflowed SQLite's integers)."""

from __future__ import annotations

from starlette.exceptions import HTTPException

#: SQLite's integers are 64-bit: anything a query compares must fit.
MOST = 2**63 - 1


class BadParam(ValueError):
    """A bad parameter; `str()` is the one line for the client, `name` the parameter."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name


def whole(raw: str | None, name: str, lo: int = 1, hi: int = MOST, default: int | None = None) -> int | None:
    """`raw` as a whole number from lo to hi (ASCII digits only); `default` when absent or empty."""
    if raw is None or raw == "":
        return default
    # isascii first: "²" and other Unicode digits pass isdigit() but not int(); the length stops int()'s cost.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not lo <= int(raw) <= hi:
        raise BadParam(name, f"expected a whole number from {lo} to {hi}")
    return int(raw)


def page_param(raw: str | None, name: str, lo: int = 1, hi: int = MOST, default: int | None = None) -> int | None:
    """`whole` for HTML pages: a bad value raises HTTPException(400), which Starlette answers as one line."""
    try:
        return whole(raw, name, lo, hi, default)
    except BadParam as e:
        raise HTTPException(400, str(e)) from None
