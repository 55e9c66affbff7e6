"""RFC 9457 problem details: the one error shape of the API."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.allow import allowed_methods
from api.request_id import current_request_id
from core import crypto
from core.boundaries import AdminOnly, BoundaryError
from db.availability import database_unavailable
from services import errors
from services.runs import LivenessUnknown, RunInProgress, RunNotStarted

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"

# Seconds a client is asked to wait when the metadata database cannot be reached: about the
# time a restarting PostgreSQL needs, and short enough for an operator's retry loop.
DATABASE_RETRY_AFTER_SECONDS: Final = 5


class Problem(Exception):
    """An error answer; ``kind`` becomes the stable ``type`` URI ``/problems/{kind}``."""

    def __init__(self, status: int, kind: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail, self.extra = (
            status,
            kind,
            title,
            detail,
            extra,
        )


FieldError = dict[str, str]
"""One refused field of a 422: ``field`` (dotted path), ``message`` and ``code``."""


def not_found(what: str, ident: object) -> Problem:
    """404: ``what`` (e.g. "backup storage") named ``ident`` does not exist for the caller."""
    return Problem(404, "not-found", "Not found", f"{what} {ident} does not exist")


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def field_errors(raw: Iterable[Mapping[str, Any]], *prefix: str | int) -> list[FieldError]:
    """Pydantic's errors (``loc``, ``msg``, ``type``) as the API's field errors."""
    return [
        {"field": _field((*prefix, *err["loc"])), "message": err["msg"], "code": err["type"]}
        for err in raw
    ]


def invalid_fields(errors: Sequence[FieldError], detail: str | None = None) -> Problem:
    """422 ``validation-error``: the request validator's shape, whoever refuses the fields."""
    detail = detail or "; ".join(f"{err['field']}: {err['message']}" for err in errors)
    return Problem(422, "validation-error", "Invalid request", detail, errors=list(errors))


def invalid(field: str, message: str, code: str, detail: str | None = None) -> Problem:
    """A 422 about one field, shaped like the request validator's (field, message, code)."""
    return invalid_fields([{"field": field, "message": message, "code": code}], detail)


def unprocessable(
    kind: str, title: str, detail: str, errors: Sequence[FieldError], **extra: Any
) -> Problem:
    """422 of its own ``kind``: a well-formed request this installation cannot carry out.
    Like every 422 it names the fields in ``errors`` (the documented ``ValidationProblem``)."""
    return Problem(422, kind, title, detail, errors=list(errors), **extra)


def conflict(
    detail: str, *, kind: str = "conflict", title: str = "Conflict", **extra: Any
) -> Problem:
    """409: the resource's state refuses the request; ``kind`` names a specific refusal."""
    return Problem(409, kind, title, detail, **extra)


def too_large(detail: str, limit_bytes: int) -> Problem:
    """413: the request's body is over the limit of what it sends (nothing was kept)."""
    return Problem(413, "payload-too-large", "Payload too large", detail, limit_bytes=limit_bytes)


def unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", "Unauthorized", detail)


def forbidden(detail: str, *, kind: str = "forbidden", title: str = "Forbidden") -> Problem:
    return Problem(403, kind, title, detail)


def temporal_unavailable(what: str, exc: BaseException, then: str) -> Problem:
    """503: Temporal did not answer while ``what`` was tried; ``then`` says what the caller
    may do (retry) and what state was left."""
    return Problem(
        503,
        "temporal-unavailable",
        "Temporal unavailable",
        f"{what} ({type(exc).__name__}); {then}",
    )


def secrets_unavailable(exc: BaseException) -> Problem:
    """503: the master key cannot seal or open a secret (missing or wrong)."""
    return Problem(503, "secrets-unavailable", "Secrets unavailable", str(exc))


def refused(exc: BoundaryError) -> Problem:
    """A request that reaches outside its application: 403 when only an admin may, else 422."""
    if isinstance(exc, AdminOnly):
        return forbidden(f"{exc.field}: {exc.message}")
    return invalid(exc.field, exc.message, "outside_application")


@contextmanager
def refusals(starting: str = "run") -> Iterator[None]:
    """The domain's refusals (``services.errors``, ``services.runs``' for a run that cannot
    start, named ``starting``, and ``core.boundaries``' for a request that reaches outside its
    application) as the API's problems: their one mapping."""
    try:
        yield
    except RunInProgress as exc:
        raise conflict(
            f"{exc}; wait for it or cancel it before starting a {starting}",
            running_workflow_id=exc.workflow_id,
        ) from None
    except LivenessUnknown as exc:
        raise temporal_unavailable(
            "the state of running work cannot be checked",
            exc.cause,
            "nothing was changed, retry later",
        ) from exc
    except RunNotStarted as exc:
        raise temporal_unavailable(
            f"the {starting} could not be started", exc.cause, "nothing was recorded"
        ) from exc
    except errors.Invalid as exc:
        raise invalid_fields(field_errors(exc.errors, "body")) from exc
    except errors.NotFound as exc:
        raise not_found(exc.what, exc.ident) from exc
    except errors.Conflict as exc:
        raise conflict(exc.detail, kind=exc.kind, title=exc.title, **exc.facts) from exc
    except errors.Gone as exc:
        raise Problem(410, exc.kind, exc.title, exc.detail, **exc.facts) from exc
    except errors.Unsupported as exc:
        fields = [
            {"field": f"body.{field}", "message": message, "code": exc.kind}
            for field, message in exc.fields.items()
        ]
        raise unprocessable(exc.kind, exc.title, exc.detail, fields, **exc.facts) from exc
    except errors.TemporalUnavailable as exc:
        raise temporal_unavailable(exc.what, exc.cause, exc.then) from exc
    except crypto.CryptoError as exc:
        raise secrets_unavailable(exc) from exc
    except BoundaryError as exc:
        raise refused(exc) from exc


def problem_response(
    request: Request,
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"/problems/{kind}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": current_request_id(),
        **extra,
    }
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


_HTTP_KINDS = {
    401: ("unauthorized", "Unauthorized"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
}


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(request, exc.status, exc.kind, exc.title, exc.detail, **exc.extra)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind, title = _HTTP_KINDS.get(exc.status_code, ("http-error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route matches {request.method} {request.url.path}"
    headers = None
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
        said = (exc.headers or {}).get("Allow")
        headers = {"Allow": allowed_methods(request, said)}
    return problem_response(request, exc.status_code, kind, title, detail, headers=headers)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors())
    if any(err["code"] == "json_invalid" for err in errors):
        return problem_response(
            request,
            400,
            "malformed-json",
            "Malformed JSON",
            "the request body is not valid JSON",
            errors=errors,
        )
    return await _on_problem(request, invalid_fields(errors))


def _database_unavailable_response(request: Request, exc: BaseException) -> JSONResponse:
    log.warning(
        "metadata database unavailable on %s %s: %s",
        request.method,
        request.url.path,
        str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
    )
    return problem_response(
        request,
        503,
        "database-unavailable",
        "Database unavailable",
        "the metadata database cannot be reached; nothing was changed, retry later",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    if database_unavailable(exc):
        return _database_unavailable_response(request, exc)
    return await _on_unhandled(request, exc)


async def _on_unhandled(request: Request, exc: Exception) -> JSONResponse:
    if database_unavailable(exc):
        return _database_unavailable_response(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        request,
        500,
        "internal-error",
        "Internal error",
        "the server failed to handle this request; quote the request id when reporting it",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    for database_error in (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.TimeoutError, psycopg.Error):
        app.add_exception_handler(database_error, _on_database_error)
    app.add_exception_handler(Exception, _on_unhandled)
