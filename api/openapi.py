"""The served OpenAPI documents every error answer: problem+json (RFC 9457) per operation.

FastAPI only documents the success response and its own 422 shape, which the API never
sends (``api.problems`` turns validation errors into problems). Clients and the fuzz suite
(tests/fuzz) read the schema as a contract, so each operation gets the 4xx/5xx problems it
can answer, derived from what it takes: a token, path ids, a body, a cursor, a mutation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from api.problems import MEDIA_TYPE

PROBLEM = "Problem"
VALIDATION_PROBLEM = "ValidationProblem"
FIELD_ERROR = "ProblemFieldError"
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_MUTATIONS = {"post", "put", "patch", "delete"}
# Outside /api/v1, the routes that read the database or Temporal (and so may answer 503).
_READS_DEPENDENCIES = {"/readyz", "/metrics"}
_API_PREFIX = "/api/v1/"
# GET /me answers any valid token: it has no role to refuse.
_NO_FORBIDDEN = {("get", "/api/v1/me")}

_DESCRIPTIONS = {
    400: "Bad request: `malformed-json` (the body is not JSON) or `invalid-cursor`.",
    401: "No token, a malformed Authorization header, or an unknown or revoked token"
    " (`unauthorized`).",
    403: "The caller's role does not allow this (`forbidden`), or the workspace is not on the"
    " Dedicated plan (`plan-required`).",
    404: "The object does not exist or belongs to another workspace (`not-found`).",
    409: "The request conflicts with the current state: a duplicate name, a run in progress,"
    " a quota or capacity rule, a plan change that would strand storages or policies"
    " (`conflict`, `quota-exceeded`, `capacity-below-usage`, `plan-in-use`, ...).",
    422: "The request is well-formed but invalid (`validation-error`: a wrong value or JSON"
    " type; numbers and booleans are never each other) or asks what this installation cannot"
    " do (`proxmox-not-configured`, `fixed-connection-setting`); `errors` lists each field.",
    500: "An unexpected server error (`internal-error`); quote `request_id` when reporting it.",
    503: "A dependency is unavailable (`temporal-unavailable`, `database-unavailable`,"
    " `secrets-unavailable`, `not-ready`); nothing was changed, retry later.",
}


def _component_schemas() -> dict[str, dict[str, Any]]:
    field_error = {
        "title": FIELD_ERROR,
        "type": "object",
        "required": ["field", "message", "code"],
        "properties": {
            "field": {"type": "string", "description": "where: `body.name`, `query.limit`"},
            "message": {"type": "string"},
            "code": {"type": "string", "description": "machine-readable reason"},
        },
    }
    problem = {
        "title": PROBLEM,
        "type": "object",
        "description": "RFC 9457 problem details; kinds may add members (`failing`, ...).",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "description": "`/problems/<kind>`, stable"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string", "description": "what happened and what to do"},
            "instance": {"type": "string", "description": "the request path"},
            "request_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "errors": {"type": "array", "items": {"$ref": f"#/components/schemas/{FIELD_ERROR}"}},
        },
        "additionalProperties": True,
    }
    validation = {
        "title": VALIDATION_PROBLEM,
        "allOf": [
            {"$ref": f"#/components/schemas/{PROBLEM}"},
            {"type": "object", "required": ["errors"]},
        ],
    }
    return {FIELD_ERROR: field_error, PROBLEM: problem, VALIDATION_PROBLEM: validation}


def _statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The problems an operation can answer, from what it takes."""
    params = operation.get("parameters", [])
    names = {(p.get("in"), p.get("name", "").lower()) for p in params}
    statuses = {500}
    if path.startswith(_API_PREFIX) or path in _READS_DEPENDENCIES:
        statuses.add(503)
    if ("header", "authorization") in names:
        statuses.add(401)
        if (method, path) not in _NO_FORBIDDEN:
            statuses.add(403)
    if any(p.get("in") == "path" for p in params):
        statuses.add(404)
    if path.startswith(_API_PREFIX) and method in _MUTATIONS:
        statuses.add(409)
    if "requestBody" in operation or ("query", "cursor") in names:
        statuses.add(400)
    if params or "requestBody" in operation:
        statuses.add(422)
    return statuses


def _problem_response(status: int) -> dict[str, Any]:
    name = VALIDATION_PROBLEM if status == 422 else PROBLEM
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS[status],
        "content": {MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{name}"}}},
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"description": "always `Bearer`", "schema": {"type": "string"}}
        }
    if status == 503:
        response["headers"] = {
            "Retry-After": {
                "description": "seconds to wait (`database-unavailable`)",
                "schema": {"type": "string"},
            }
        }
    return response


def _uses_fastapi_validation(response: dict[str, Any]) -> bool:
    for media in response.get("content", {}).values():
        ref = media.get("schema", {}).get("$ref", "")
        if ref.rsplit("/", 1)[-1] in _FASTAPI_VALIDATION_SCHEMAS:
            return True
    return False


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Adds the problem responses to every operation of ``schema`` (in place; idempotent).

    A route's own documented response for a status is kept, except FastAPI's 422 shape,
    which the API never sends.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(_component_schemas())
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "put", "post", "delete", "patch", "head", "options"}:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(_statuses(path, method, operation)):
                current = responses.get(str(status))
                if current is None or _uses_fastapi_validation(current):
                    responses[str(status)] = _problem_response(status)
            operation["responses"] = dict(sorted(responses.items()))
    text = repr(schema.get("paths", {}))
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        if f"#/components/schemas/{name}'" not in text:
            components.pop(name, None)
    return schema


def install(app: FastAPI) -> None:
    """Makes ``app.openapi()`` (and /openapi.json, /docs) serve the documented problems.

    Idempotent, so a caller that installs it on an app from ``create_app`` stays correct.
    """
    if getattr(app.state, "problems_documented", False):
        return
    app.state.problems_documented = True
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
