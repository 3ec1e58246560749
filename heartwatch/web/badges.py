"""Status badges for READMEs and dashboards: a flat SVG, and the shields.io endpoint JSON.

The SVG is drawn here (no request to shields.io); text widths are estimated from Verdana's average
glyph width, which is what shields does too, so a label never overflows by much.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from heartwatch.core.model import CheckStatus

#: Badge colour per status: hex for the SVG, a shields.io colour name for the endpoint JSON.
COLOURS: dict[CheckStatus, tuple[str, str]] = {
    CheckStatus.UP: ("#3d9a3d", "brightgreen"),
    CheckStatus.RUNNING: ("#2f74c0", "blue"),
    CheckStatus.LATE: ("#c77800", "orange"),
    CheckStatus.DOWN: ("#d33d3d", "red"),
    CheckStatus.PAUSED: ("#7a7a7a", "lightgrey"),
    CheckStatus.NEW: ("#7a7a7a", "lightgrey"),
}
_LABEL_COLOUR = "#555"


def _text_width(text: str) -> int:
    # ~6.5 px per character of 11 px Verdana, plus padding; wide letters are rare in slugs and words.
    return int(len(text) * 6.5) + 10


def badge_svg(label: str, status: CheckStatus) -> str:
    colour = COLOURS[status][0]
    message = status.value
    lw, mw = _text_width(label), _text_width(message)
    total = lw + mw
    return str(Markup(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{label}: {msg}">'
        '<title>{label}: {msg}</title>'
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        '<stop offset="1" stop-opacity=".1"/></linearGradient>'
        '<clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>'
        '<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="{lc}"/>'
        '<rect x="{lw}" width="{mw}" height="20" fill="{colour}"/>'
        '<rect width="{total}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        '<text x="{lx}" y="15" fill="#010101" fill-opacity=".3">{label}</text><text x="{lx}" y="14">{label}</text>'
        '<text x="{mx}" y="15" fill="#010101" fill-opacity=".3">{msg}</text><text x="{mx}" y="14">{msg}</text>'
        '</g></svg>').format(total=total, label=label, msg=message, lw=lw, mw=mw, lc=_LABEL_COLOUR, colour=colour,
                             lx=lw / 2, mx=lw + mw / 2))


def badge_json(label: str, status: CheckStatus) -> dict[str, Any]:
    """The shields.io endpoint schema: https://shields.io/badges/endpoint-badge."""
    return {"schemaVersion": 1, "label": label, "message": status.value, "color": COLOURS[status][1],
            "isError": status is CheckStatus.DOWN}
