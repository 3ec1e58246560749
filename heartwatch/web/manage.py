"""Managing checks in the browser: the new-check and edit forms, and the pause, resume, mute, maintenance hold,
archive and test-alert buttons, with the schedule explained as it is typed.

Editing needs the web login (`[web] password`): without one there is no session to tie a CSRF token to, so
every page here is read-only and every POST is refused with 403 before anything is read or changed. With
one, each form carries the session's CSRF token; a post without it (or from another site, by its Origin or
Sec-Fetch-Site) is a 403 that changes nothing. Checks from the config file can be paused, held, muted and
tested but not edited or archived: the file would put its version back on the next start or SIGHUP.
What pause, resume, mute and a hold mean is the API's (api_write and the store's set_paused, set_muted and
set_maintenance); the forms only translate a browser's fields into those calls.

Writes go through the same Store operations as the write API, and the same validation (`api_write.validate`).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from heartwatch.core.model import Check, CheckSpec
from heartwatch.engine import notify
from heartwatch.store.sqlite import ApiOutcome
from heartwatch.web import check_form
from heartwatch.web.api_errors import ApiError
from heartwatch.web.auth import Auth, Session, cross_site, forbidden, read_form, request_session, safe_next
from heartwatch.web.check_form import CONFIG_CHECK, EDITING_OFF
from heartwatch.web.check_input import check_slug, hold_until, refusal, too_many, validate
from heartwatch.web.hub import Hub, hub_of
from heartwatch.web.render import not_found_page, render

#: A check's form is a few kilobytes; a post far larger is not one.
MAX_FORM = 64_000
#: Seconds the test alert waits for each target before it reports it as failed.
TEST_TIMEOUT = 15.0
TEST_TITLE = "TEST heartwatch: test alert"
ZONES = sorted(available_timezones())


def _auth(request: Request) -> Auth | None:
    auth: Auth | None = request.app.state.auth
    return auth


def editing_session(request: Request) -> Session | None:
    """The session that may edit: None without a password (read-only) or without a login."""
    auth = _auth(request)
    return None if auth is None else request_session(auth, request.scope)


Handler = Callable[[Request, Hub, dict[str, str]], Awaitable[Response]]


def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A POST that needs editing on, a session, its CSRF token and a same-site origin; refused before it acts."""

    async def endpoint(request: Request) -> Response:
        auth = _auth(request)
        if auth is None:
            return PlainTextResponse(f"refused: {EDITING_OFF}", 403)
        session = request_session(auth, request.scope)
        if session is None:  # the gate lets no such post through; kept for the case it is ever moved
            return PlainTextResponse("log in first: /login", 401)
        form = await read_form(request, MAX_FORM)
        if form is None:
            return PlainTextResponse("the form is too large", 413)
        if cross_site(request) or not auth.session_csrf_ok(session, form.get("csrf", "")):
            return forbidden("the form's security token is missing or wrong")
        return await handler(request, hub_of(request), form)

    return endpoint


def _changed(hub: Hub) -> None:
    for listener in hub.change_listeners:  # the scheduler wakes: a deadline may have moved
        listener()


def _back(form: dict[str, str], slug: str) -> Response:
    return RedirectResponse(safe_next(form.get("next") or f"/checks/{slug}"), 303)


def _message_page(title: str, message: str, status: int, slug: str | None = None) -> Response:
    return render("message.html", {"title": title, "message": message, "slug": slug}, status)


# --- the form pages ---------------------------------------------------------------------------------------


def _form_page(request: Request, hub: Hub, state: check_form.FormState, check: Check | None,
               status: int = 200) -> Response:
    session = editing_session(request)
    context: dict[str, Any] = {
        "state": state, "fields": check_form.FIELDS, "check": check, "zones": ZONES, "editing_off": EDITING_OFF,
        "csrf": session.csrf if session else None, "widgets": check_form.Widget,
        "preview": check_form.preview(state.values, hub.settings.timezone, hub.clock()),
        "action": f"/checks/{check.slug}/edit" if check else "/checks/new",
        "read_only": CONFIG_CHECK if check is not None and check.source == "config" else None,
    }
    return render("check_form.html", context, status, headers={"Cache-Control": "no-store"})


async def new_form(request: Request) -> Response:
    hub = hub_of(request)
    state = check_form.FormState(values={"timezone": hub.settings.timezone})
    return _form_page(request, hub, state, None, 200 if editing_session(request) else 403)


async def edit_form(request: Request) -> Response:
    hub = hub_of(request)
    check = await hub.store.check(request.path_params["slug"])
    if check is None or check.archived:
        return not_found_page(request)
    return _form_page(request, hub, check_form.state_of(check.spec), check,
                      200 if editing_session(request) else 403)


async def create(request: Request, hub: Hub, form: dict[str, str]) -> Response:
    slug = form.get("slug", "").strip()
    state, table = check_form.read_form(form, None, slug)
    if form.get("action") == "preview":
        return _form_page(request, hub, state, None)
    try:
        check_slug(slug or None)
        spec = validate(slug, table, hub.settings)
    except ApiError as e:
        state.errors[e.field or "slug"] = e.message
        return _form_page(request, hub, state, None, 422)

    def build(current: CheckSpec | None) -> CheckSpec:
        if current is not None:
            raise ApiError(409, f"slug: a check named {slug!r} exists already; edit it or choose another slug",
                           "slug")
        return spec

    result = await hub.store.api_save_check(slug, build, hub.clock(), create=True)
    if result.outcome is ApiOutcome.READ_ONLY:
        result_error: Exception | None = ApiError(409, f"slug: a check named {slug!r} exists already (in the "
                                                  "config file); choose another slug", "slug")
    elif result.outcome is ApiOutcome.TOO_MANY:
        result_error = ApiError(409, f"slug: {too_many(hub.settings.max_checks)}", "slug")
    else:
        result_error = None if result.error is None else refusal(result.error)
    if result_error is not None:
        assert isinstance(result_error, ApiError)
        state.errors[result_error.field or "slug"] = result_error.message
        return _form_page(request, hub, state, None, result_error.status)
    _changed(hub)
    return RedirectResponse(f"/checks/{slug}", 303)


async def save(request: Request, hub: Hub, form: dict[str, str]) -> Response:
    slug = request.path_params["slug"]
    check = await hub.store.check(slug)
    if check is None or check.archived:
        return not_found_page(request)
    if check.source == "config":
        return _message_page("Not editable here", CONFIG_CHECK, 409, slug)
    state, table = check_form.read_form(form, check.spec, slug)
    if form.get("action") == "preview":
        return _form_page(request, hub, state, check)
    try:
        spec = validate(slug, table, hub.settings)
    except ApiError as e:
        state.errors[e.field or "slug"] = e.message
        return _form_page(request, hub, state, check, 422)
    result = await hub.store.api_save_check(slug, lambda _current: spec, hub.clock(), create=False)
    if result.error is not None:  # the dependency graph refused it: an unknown parent, a cycle
        error = refusal(result.error)
        assert isinstance(error, ApiError)
        state.errors[error.field or "slug"] = error.message
        return _form_page(request, hub, state, check, 422)
    if result.outcome is ApiOutcome.READ_ONLY:
        return _message_page("Not editable here", CONFIG_CHECK, 409, slug)
    if result.outcome is ApiOutcome.NOT_FOUND:
        return not_found_page(request)
    _changed(hub)
    return RedirectResponse(f"/checks/{slug}", 303)


async def schedule_preview(request: Request) -> Response:
    """The schedule explained, as an HTML fragment the form's script asks for while it is typed."""
    hub = hub_of(request)
    values = {k: request.query_params.get(k, "") for k in ("schedule", "period", "timezone")}
    result = check_form.preview(values, hub.settings.timezone, hub.clock())
    return render("schedule_preview.html", {"preview": result}, headers={"Cache-Control": "no-store"})


# --- the buttons ------------------------------------------------------------------------------------------


def hold_body(form: dict[str, str], timezone: str) -> dict[str, str]:
    """The hold the form asks for, as the API's body: `for` as typed, or `until` (a browser's local date and time,
    read in the check's zone) with its offset; empty when it asks for a plain pause."""
    length, until = form.get("for", "").strip(), form.get("until", "").strip()
    if form.get("hold") == "until" and until:
        try:
            local = datetime.fromisoformat(until)
        except ValueError:
            return {"until": until}  # refused by hold_until, with the API's message
        if local.tzinfo is None:
            local = local.replace(tzinfo=ZoneInfo(timezone))
        return {"until": local.isoformat()}
    if form.get("hold") == "for" and length:
        return {"for": length}
    return {}


async def pause(request: Request, hub: Hub, form: dict[str, str]) -> Response:
    """Pause (nothing expected, nothing sent, until resumed), or with `for` or `until` hold the check's alerts
    for a while as the API does: still watched, and what is still true when the hold ends goes out once."""
    slug = request.path_params["slug"]
    check = await hub.store.check(slug)
    if check is None:
        return not_found_page(request)
    now = hub.clock()
    body = hold_body(form, check.spec.timezone)
    if body:
        try:
            until = hold_until(body, now)
        except ApiError as e:
            return _message_page("Alerts not held", e.message, 422, slug)
        await hub.store.set_maintenance(slug, until, now)
    else:
        await hub.store.set_paused(slug, True, now)
    _changed(hub)
    return _back(form, slug)


async def resume(request: Request, hub: Hub, form: dict[str, str]) -> Response:
    """Ends a pause and a maintenance hold alike, as the API's resume does."""
    slug = request.path_params["slug"]
    now = hub.clock()
    if await hub.store.set_maintenance(slug, None, now) is None:
        return not_found_page(request)
    await hub.store.set_paused(slug, False, now)
    _changed(hub)
    return _back(form, slug)


async def _set_muted(request: Request, hub: Hub, form: dict[str, str], muted: bool) -> Response:
    slug = request.path_params["slug"]
    if await hub.store.set_muted(slug, muted, hub.clock()) is None:
        return not_found_page(request)
    _changed(hub)
    return _back(form, slug)


async def mute(request: Request, hub: Hub, form: dict[str, str]) -> Response:
    """No reminders until the check recovers (the mute ends by itself then)."""
    return await _set_muted(request, hub, form, True)


async def unmute(request: Request, hub: Hub, form: dict[str, str]) -> Response:
    return await _set_muted(request, hub, form, False)


async def archive(request: Request, hub: Hub, form: dict[str, str]) -> Response:
    slug = request.path_params["slug"]
    result = await hub.store.api_archive(slug, hub.clock())
    if result.outcome is ApiOutcome.NOT_FOUND:
        return not_found_page(request)
    if result.outcome is ApiOutcome.READ_ONLY:
        return _message_page("Not archived", "This check is defined in the config file: remove its table there "
                             "and reload heartwatch to archive it.", 409, slug)
    _changed(hub)
    return RedirectResponse("/", 303)


async def test_alert(request: Request, hub: Hub, form: dict[str, str]) -> Response:
    """Send a test alert to the check's targets now and show, per target, what Apprise said."""
    slug = request.path_params["slug"]
    check = await hub.store.check(slug)
    if check is None:
        return not_found_page(request)
    targets = list(dict.fromkeys([*hub.settings.alert_urls, *check.spec.alerts]))
    results: list[notify.TargetResult] = []
    if targets:
        body = (f"A test alert from heartwatch on {socket.gethostname()} for check {check.spec.display_name} "
                f"({slug}), sent from its page. If you can read this, alerts to this target work.")
        results = await notify.deliver_async(targets, TEST_TITLE, body, kind="info", timeout=TEST_TIMEOUT)
    return render("test_alert.html", {"check": check, "results": results}, 200,
                  headers={"Cache-Control": "no-store"})


routes: list[BaseRoute] = [
    # Before /checks/{slug}: "new" is the form, not a check.
    Route("/checks/new", new_form, methods=["GET", "HEAD"]),
    Route("/checks/new", guarded(create), methods=["POST"]),
    Route("/checks/new/schedule", schedule_preview, methods=["GET", "HEAD"]),
    Route("/checks/{slug}/edit", edit_form, methods=["GET", "HEAD"]),
    Route("/checks/{slug}/edit", guarded(save), methods=["POST"]),
    Route("/checks/{slug}/pause", guarded(pause), methods=["POST"]),
    Route("/checks/{slug}/resume", guarded(resume), methods=["POST"]),
    Route("/checks/{slug}/mute", guarded(mute), methods=["POST"]),
    Route("/checks/{slug}/unmute", guarded(unmute), methods=["POST"]),
    Route("/checks/{slug}/archive", guarded(archive), methods=["POST"]),
    Route("/checks/{slug}/test-alert", guarded(test_alert), methods=["POST"]),
]
