"""The Jinja environment every HTML page is drawn with (templates/), its helpers, and `render`.

Pages (pages.py) and the login (login.py) both draw through here, so neither imports the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from heartwatch.core.durations import format_duration
from heartwatch.core.model import CheckStatus
from heartwatch.core.schedule import describe_schedule
from heartwatch.web import auth, page_data
from heartwatch.web.check_form import CONFIG_CHECK, EDITING_OFF
from heartwatch.web.format import (
    FLAG_WORDS,
    RUN_WORDS,
    STATUS_WORDS,
    duration_text,
    event_kind_text,
    local_text,
    relative,
    span_text,
    strip_html,
    time_tag,
    visible,
    when_tag,
)

STATIC_DIR = Path(__file__).parent / "static"
#: How often a page with JavaScript asks for fresh data (milliseconds); the ETag makes idle polls cheap.
REFRESH_MS = 2500


def _asset_version() -> str:
    """A hash of the static files, appended to their URLs so a new release is never served from cache."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


ASSET_VERSION = _asset_version()

templates = Environment(
    loader=PackageLoader("heartwatch.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,  # a typo in a template fails the tests instead of rendering blank
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=visible,  # bidi overrides and zero-width characters in names, tags, bodies: shown, not obeyed
)
templates.globals.update(
    STATUS_WORDS=STATUS_WORDS, RUN_WORDS=RUN_WORDS, FLAG_WORDS=FLAG_WORDS, time_tag=time_tag, when_tag=when_tag,
    relative=relative, span_text=span_text, local_text=local_text, event_kind_text=event_kind_text,
    strip_html=strip_html, duration_text=duration_text, format_duration=format_duration,
    describe_schedule=describe_schedule, asset_version=ASSET_VERSION,
    refresh_ms=REFRESH_MS, statuses=list(CheckStatus), stopped_at=page_data.stopped_at,
    session=auth.session,  # the logged-in session (for the logout form), None without a login
    strip_runs=page_data.STRIP_RUNS,
    editing_off=EDITING_OFF, config_check=CONFIG_CHECK,
    leader_note=lambda: "",  # create_app installs its hub's: which process leads, where several share a database
)

Context = Mapping[str, Any]


def render(template: str, context: Context, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return HTMLResponse(templates.get_template(template).render(context), status, headers=dict(headers or {}))




def not_found_page(request: Request) -> Response:
    return render("not_found.html", {"path": request.url.path}, 404)

