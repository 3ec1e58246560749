"""The OpenAPI 3.1 document served at /api/v1/openapi.json, written by hand to say what the code does.

It covers the JSON API (reads and writes), the ping endpoint, /metrics and /healthz. A test checks it
against the OpenAPI schema, checks that every route under /api/v1 is in it (and nothing else is), and
validates real responses against the schemas here, so the document cannot drift from the behaviour.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from heartwatch import __version__
from heartwatch.core import settings
from heartwatch.core.model import CheckSource, CheckStatus, PingKind, RunFlag, RunState
from heartwatch.web.hub import hub_of

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


TIME = {"type": "string", "format": "date-time", "description": "ISO 8601 in UTC, e.g. 2024-05-01T02:00:00.000Z"}
DURATION = settings.DURATION_SCHEMA
SLUG = {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$", "description": "The check's slug"}
RUN_ID = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"}

_SLUG_PARAM = {"name": "slug", "in": "path", "required": True, "schema": SLUG}


def _limit(default: int) -> dict[str, Any]:
    return {"name": "limit", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": default}}


#: Each key a create or patch body may carry, and each setting a check's JSON shows: the table of check
#: settings (core/settings.py) gives both.
_CHECK_SETTINGS: dict[str, Any] = settings.input_schemas()
_CHECK_OUTPUT = settings.output_schemas()

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "string", "description": "What was wrong and what to do"},
                       "field": {"type": "string", "description": "The field (or parameter) at fault"}},
    },
    "StepSpec": {
        "type": "object", "required": ["name", "max"],
        "properties": {"name": {"type": "string"}, "max": _nullable(DURATION)},
    },
    "StepMark": {
        "type": "object", "required": ["name", "at", "flags"],
        "properties": {"name": {"type": "string"}, "at": TIME,
                       "flags": {"type": "array", "items": _ref("RunFlag")}},
    },
    "RunFlag": {"type": "string", "enum": [f.value for f in RunFlag]},
    "Run": {
        "type": "object",
        "required": ["id", "rid", "state", "started_at", "ended_at", "duration_s", "exit_code", "last_step",
                     "last_step_at", "steps", "flags"],
        "properties": {
            "id": {"type": "integer"},
            "rid": _nullable(RUN_ID),
            "state": {"type": "string", "enum": [s.value for s in RunState]},
            "started_at": TIME,
            "ended_at": _nullable(TIME),
            "duration_s": _nullable({"type": "number"}),
            "exit_code": _nullable({"type": "integer"}),
            "last_step": _nullable({"type": "string"}),
            "last_step_at": _nullable(TIME),
            "steps": {"type": "array", "items": _ref("StepMark")},
            "flags": {"type": "array", "items": _ref("RunFlag")},
        },
    },
    "Check": {
        "type": "object",
        "required": ["slug", "name", "uuid", "status", "ping_url", "slug_ping_url", *_CHECK_OUTPUT,
                     "muted", "maintenance_until", "paused", "archived", "source", "last_run", "next_expected_at",
                     "waiting_on", "status_note"],
        "properties": {
            "slug": SLUG,
            "name": {"type": "string", "description": "Display name (the slug when none is set)"},
            "uuid": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": [s.value for s in CheckStatus]},
            "ping_url": {"type": "string", "format": "uri"},
            "slug_ping_url": {"type": "string", "format": "uri"},
            **_CHECK_OUTPUT,
            "paused": {"type": "boolean"},
            "muted": {"type": "boolean", "description": "No reminders until it recovers"},
            "maintenance_until": _nullable({"type": "string", "format": "date-time",
                                            "description": "Alerts held until then"}),
            "archived": {"type": "boolean"},
            "source": {"type": "string", "enum": [s.value for s in CheckSource],
                       "description": "config checks are read-only through the API"},
            "last_run": _nullable(_ref("Run")),
            "waiting_on": {"type": "array", "items": SLUG,
                           "description": "The depends_on parents holding its alerts back now (down, paused or in "
                                          "maintenance, or recovered less than its start_grace ago)"},
            "status_note": _nullable({"type": "string", "description": 'Beside the status: "waiting on router", '
                                      '"not expected, nightly-backup failed"'}),
            "next_expected_at": _nullable({"type": "string", "format": "date-time",
                                           "description": "When the next start is expected (UTC); null if none"}),
        },
    },
    "CheckCreate": {
        "type": "object", "required": ["slug"], "additionalProperties": False,
        "description": "The keys of a [checks.<slug>] table. Keys left out (or null) take their defaults.",
        "properties": {"slug": SLUG, **{k: _nullable(v) for k, v in _CHECK_SETTINGS.items()}},
    },
    "CheckPatch": {
        "type": "object", "additionalProperties": False,
        "description": "A JSON merge patch: given keys replace, null resets to the default. Giving schedule "
                       "drops period and vice versa. slug, if given, must be the check's own.",
        "properties": {"slug": SLUG, **{k: _nullable(v) for k, v in _CHECK_SETTINGS.items()}},
    },
    "Event": {
        "type": "object",
        "required": ["id", "run_id", "at", "kind", "step", "rid", "exit_code", "body", "remote_addr", "user_agent",
                     "method", "ping_ms"],
        "properties": {
            "id": {"type": "integer"},
            "run_id": _nullable({"type": "integer"}),
            "at": TIME,
            "kind": {"type": "string", "enum": [k.value for k in PingKind]},
            "step": _nullable({"type": "string"}),
            "rid": _nullable(RUN_ID),
            "exit_code": _nullable({"type": "integer"}),
            "body": {"type": "string", "description": "The ping's body (tail), as text"},
            "remote_addr": _nullable({"type": "string"}),
            "user_agent": _nullable({"type": "string"}),
            "method": _nullable({"type": "string"}),
            "ping_ms": _nullable({"type": "number", "description": "The response time an Uptime Kuma push "
                                  "reported (its `ping`), in milliseconds"}),
        },
    },
}

_WRITE_ERRORS = {
    "401": _error("No token, or a wrong one (`WWW-Authenticate: Bearer`)"),
    "403": _error("Writes are disabled: no API token is configured ([api] tokens or HEARTWATCH_API_TOKEN)"),
    "503": _error("The database could not store the change; try again"),
}
_NOT_FOUND = {"404": _error("No such check")}
_READ_ONLY = {"409": _error("A config-file check: read-only through the API, change heartwatch.toml")}
_BAD_BODY = {"400": _error("The body is not a JSON object"),
             "413": _error("The body is larger than 64,000 bytes"),
             "422": _error("A value is wrong; `field` names it")}
_CHECK = _json(_ref("Check"), "The check, as GET shows it")
_SECURE: list[dict[str, list[str]]] = [{"bearer": []}]


def _ping_operation(method: str, variant: str, params: list[dict[str, Any]], summary: str) -> dict[str, Any]:
    text = {"description": "Plain text", "headers": {"Ping-Body-Limit": {
        "description": "Bytes of the body kept (the tail)", "schema": {"type": "integer"}}},
        "content": {"text/plain": {"schema": {"type": "string"}}}}
    op: dict[str, Any] = {
        "tags": ["ping"], "operationId": f"ping{variant}{method.capitalize()}", "summary": summary,
        "parameters": [*params, *_PING_QUERY],
        "responses": {"200": {**text, "description": "OK: stored"},
                      "201": {**text, "description": "Created: ?create=1 made the check"},
                      "400": {**text, "description": "A bad exit status, step name, rid or create parameter"},
                      "404": {**text, "description": "No such check (or a wrong ping key)"},
                      "409": {**text, "description": "Not created: ?create=1 past [server] max_checks"},
                      "413": {**text, "description": "The body is larger than 1,000,000 bytes"},
                      "503": {**text, "description": "The ping could not be stored; try again"}},
    }
    if method in ("post", "put"):
        op["requestBody"] = {"required": False, "description": "The job's output or a message; the tail is kept",
                             "content": {"*/*": {"schema": {"type": "string"}}}}
    return op


_PING_QUERY: list[dict[str, Any]] = [
    {"name": "step", "in": "query", "schema": {"type": "string"},
     "description": "start | finish | fail | <step name>: the job chain"},
    {"name": "rid", "in": "query", "schema": RUN_ID, "description": "Run id: ties the pings of one run together"},
    {"name": "create", "in": "query", "schema": {"type": "string", "enum": ["1", "true", "yes"]},
     "description": "Slug form only: create the check if it does not exist (201)"},
    {"name": "schedule", "in": "query", "schema": {"type": "string"},
     "description": "With create: the new check's cron expression, or a period like 1h"},
    {"name": "tz", "in": "query", "schema": {"type": "string"}, "description": "With create: its time zone"},
    {"name": "grace", "in": "query", "schema": DURATION, "description": "With create: its start_grace"},
    {"name": "max_runtime", "in": "query", "schema": DURATION, "description": "With create: its max_runtime"},
]
_SUFFIX = {"type": "string", "pattern": "^(start|fail|log|[0-9]{1,3})$",
           "description": "start, fail, log, or an exit status 0-255 (0 = success)"}


def _ping_path(variant: str, params: list[dict[str, Any]], summary: str) -> dict[str, Any]:
    return {m: _ping_operation(m, variant, params, summary) for m in ("get", "head", "post", "put")}


PATHS: dict[str, Any] = {
    "/api/v1/checks": {
        "get": {"tags": ["checks"], "operationId": "listChecks", "summary": "Every check that is not archived",
                "responses": {"200": _json({"type": "object", "required": ["checks"], "properties": {
                    "checks": {"type": "array", "items": _ref("Check")}}}, "The checks, by slug")}},
        "post": {"tags": ["checks"], "operationId": "upsertCheck", "security": _SECURE,
                 "summary": "Create a check, or replace the settings of the one with this slug (an upsert)",
                 "description": "Keys left out take their defaults. An archived check with this slug is brought "
                                "back with its history.",
                 "requestBody": {"required": True, "content": {JSON: {"schema": _ref("CheckCreate")}}},
                 "responses": {"200": {**_CHECK, "description": "Updated"},
                               "201": {**_CHECK, "description": "Created",
                                       "headers": {"Location": {"schema": {"type": "string"}}}},
                               **_BAD_BODY, **_WRITE_ERRORS,
                               "409": _error("A config-file check (read-only through the API), or a new check "
                                             "past [server] max_checks")}},
    },
    "/api/v1/checks/{slug}": {
        "parameters": [_SLUG_PARAM],
        "get": {"tags": ["checks"], "operationId": "getCheck", "summary": "One check (archived ones too)",
                "responses": {"200": _CHECK, **_NOT_FOUND}},
        "patch": {"tags": ["checks"], "operationId": "updateCheck", "security": _SECURE,
                  "summary": "Change some settings of a check (JSON merge patch)",
                  "requestBody": {"required": True, "content": {JSON: {"schema": _ref("CheckPatch")}}},
                  "responses": {"200": _CHECK, **_BAD_BODY, **_WRITE_ERRORS, **_NOT_FOUND, **_READ_ONLY}},
        "delete": {"tags": ["checks"], "operationId": "archiveCheck", "security": _SECURE,
                   "summary": "Archive a check: no longer listed or alerted, history kept",
                   "description": "As the config does for a removed check. The slug stays taken; POST it again "
                                  "to bring the check back.",
                   "responses": {"200": {**_CHECK, "description": "Archived (archived is true)"},
                                 **_WRITE_ERRORS, **_NOT_FOUND, **_READ_ONLY}},
    },
    "/api/v1/checks/{slug}/runs": {
        "parameters": [_SLUG_PARAM],
        "get": {"tags": ["checks"], "operationId": "listRuns", "summary": "The check's runs, newest first",
                "parameters": [_limit(50)],
                "responses": {"200": _json({"type": "object", "required": ["runs"], "properties": {
                    "runs": {"type": "array", "items": _ref("Run")}}}, "Runs"),
                    "400": _error("A bad limit"), **_NOT_FOUND}},
    },
    "/api/v1/checks/{slug}/events": {
        "parameters": [_SLUG_PARAM],
        "get": {"tags": ["checks"], "operationId": "listEvents", "summary": "The check's pings, newest first",
                "parameters": [_limit(100)],
                "responses": {"200": _json({"type": "object", "required": ["events"], "properties": {
                    "events": {"type": "array", "items": _ref("Event")}}}, "Events"),
                    "400": _error("A bad limit"), **_NOT_FOUND}},
    },
    "/api/v1/checks/{slug}/pause": {
        "parameters": [_SLUG_PARAM],
        "post": {"tags": ["checks"], "operationId": "pauseCheck", "security": _SECURE,
                 "summary": "Pause a check: no deadlines, no alerts (config checks too). With a body "
                            '{"for": "2h"} or {"until": "<ISO 8601>"}: hold its alerts until then (the check is '
                            "still watched; what is still true then is sent once)",
                 "requestBody": {"required": False, "content": {JSON: {"schema": {
                     "type": "object", "additionalProperties": False, "maxProperties": 1,
                     "properties": {"for": DURATION, "until": {"type": "string", "format": "date-time"}}}}}},
                 "responses": {"200": _CHECK, "400": _error("The body is not a JSON object"),
                               "413": _error("The body is too large"),
                               "422": _error("A bad `for` or `until`, or both given"),
                               **_WRITE_ERRORS, **_NOT_FOUND}},
    },
    "/api/v1/checks/{slug}/resume": {
        "parameters": [_SLUG_PARAM],
        "post": {"tags": ["checks"], "operationId": "resumeCheck", "security": _SECURE,
                 "summary": "Resume a paused check (or end a hold): its next expected start is computed afresh; "
                            "what is still wrong is sent once",
                 "responses": {"200": _CHECK, **_WRITE_ERRORS, **_NOT_FOUND}},
    },
    "/api/v1/checks/{slug}/mute": {
        "parameters": [_SLUG_PARAM],
        "post": {"tags": ["checks"], "operationId": "muteCheck", "security": _SECURE,
                 "summary": "Mute a check: no reminders until it recovers",
                 "responses": {"200": _CHECK, **_WRITE_ERRORS, **_NOT_FOUND}},
    },
    "/api/v1/checks/{slug}/unmute": {
        "parameters": [_SLUG_PARAM],
        "post": {"tags": ["checks"], "operationId": "unmuteCheck", "security": _SECURE,
                 "summary": "Unmute a check: reminders again while it is down",
                 "responses": {"200": _CHECK, **_WRITE_ERRORS, **_NOT_FOUND}},
    },
    "/api/v1/openapi.json": {
        "get": {"tags": ["meta"], "operationId": "openapi", "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document")}},
    },
    "/ping/{uuid}": _ping_path("Uuid", [
        {"name": "uuid", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}],
        "Ping a check by its uuid: success, or what ?step= says"),
    # /ping/<uuid>/<suffix> and /ping/<ping_key>/<slug> have the same shape, and OpenAPI allows one template
    # per shape, so one path describes both.
    "/ping/{first}/{second}": _ping_path("Two", [
        {"name": "first", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "The check's uuid, or the server's ping key"},
        {"name": "second", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "After a uuid: a suffix (start, fail, log, 0-255); after the ping key: the check's slug"}],
        "Ping by uuid with a suffix (/ping/<uuid>/<suffix>), or by slug (/ping/<ping_key>/<slug>)"),
    "/ping/{ping_key}/{slug}/{suffix}": _ping_path("SlugSuffix", [
        {"name": "ping_key", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "slug", "in": "path", "required": True, "schema": SLUG},
        {"name": "suffix", "in": "path", "required": True, "schema": _SUFFIX}],
        "Ping a check by slug with a suffix"),
    "/metrics": {
        "get": {"tags": ["meta"], "operationId": "metrics", "summary": "Prometheus metrics",
                "responses": {"200": {"description": "Prometheus text exposition format 0.0.4",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}}},
    },
    "/healthz": {
        "get": {"tags": ["meta"], "operationId": "healthz", "summary": "Liveness: the database answers",
                "responses": {"200": _json({"type": "object", "required": ["status"], "properties": {
                    "status": {"type": "string", "enum": ["ok", "degraded"]},
                    "process": {"type": "string", "description": "This process: host:port pid N"},
                    "leading": {"type": "boolean",
                                "description": "Whether this process runs the scheduler and the sender"},
                    "leader": _nullable({"type": "string", "description": "The process that does"})}},
                    "Health")}},
    },
}


def document(server_url: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "heartwatch", "version": __version__,
                 "description": "Monitor for scheduled jobs. Reads are open; writes need a bearer token."},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A token from [api] tokens or HEARTWATCH_API_TOKEN"}},
        },
        "tags": [{"name": "checks"}, {"name": "ping"}, {"name": "meta"}],
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


async def openapi_json(request: Request) -> Response:
    return JSONResponse(document(hub_of(request).settings.public_url))


routes = [Route("/api/v1/openapi.json", openapi_json, methods=["GET"])]
