"""What every page shares: the signed-in principal and its access (the API's own rules in
api/deps.py), CSRF on writes, rendering with the security headers, and refusals as pages."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from api.deps import (
    ApplicationAccess,
    SessionDep,
    WorkspaceAccess,
    application_reader,
    dedicated_app_reader,
    dedicated_reader,
    workspace_reader,
)
from api.problems import Problem
from api.ui import csrf, sessions, views
from api.ui.sessions import SignedIn, SignInRequired

TEMPLATES = Path(__file__).parents[1] / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
_env.filters.update(
    size=views.size, age=views.age, duration=views.duration, words=views.schedule_words
)
templates = Jinja2Templates(env=_env)


class UiRoute(APIRoute):
    """Turns what the shared rules and services raise into pages: sign-in, 403, 404, 409, 503…"""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return _to_sign_in(request)
            except csrf.CsrfRefused:
                return error_page(
                    request,
                    403,
                    "Request refused",
                    "this request did not carry the page's security token (CSRF); reload the"
                    " page and try again",
                )
            except Problem as exc:
                return error_page(request, exc.status, exc.title, views.in_words(exc))
            except (RequestValidationError, ValidationError) as exc:
                return error_page(request, 422, "Invalid request", views.in_words(exc))

        return run


def page_router() -> APIRouter:
    """A page module's router: under ``/ui``, refusals drawn as pages, not in the OpenAPI."""
    return APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _to_sign_in(request: Request) -> Response:
    target = "/ui/sign-in"
    if request.method == "GET" and not is_htmx(request):
        target += "?" + urlencode({"next": request.url.path})
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def go(request: Request, url: str) -> Response:
    """After a write: htmx follows HX-Redirect, a plain form follows the 303."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


# Only cairn's own files run or load: an injected <script> or inline handler would not execute
# even if escaping were ever missed, and no page can be framed (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
    " img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none';"
    " frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def render(
    request: Request,
    name: str,
    signed: SignedIn | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        name,
        {
            "user": signed.principal.user if signed else None,
            "csrf": csrf.token_for(signed.session_id) if signed else None,
            "now": datetime.now(UTC),
            **context,
        },
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    """An error in words; a signed-in caller keeps the header (who, sign-out)."""
    name = "_error.html" if is_htmx(request) else "error.html"
    signed: SignedIn | None = getattr(request.state, "signed_in", None)
    return render(request, name, signed, status, title=title, detail=detail)


def run_page(
    request: Request,
    signed: SignedIn,
    access: ApplicationAccess,
    kind: str,
    page: str,
    run: dict[str, Any],
) -> Response:
    """A backup's or restore's page, or its live part alone (``_{kind}_live.html``) when htmx
    polls it."""
    name = f"_{kind}_live.html" if is_htmx(request) else page
    return render(request, name, signed, 200, access=access, **{kind: run})


async def signed_in(request: Request, session: SessionDep) -> SignedIn:
    signed = await sessions.resume(session, request)
    request.state.signed_in = signed  # for an error page's header
    return signed


async def csrf_checked(
    request: Request, signed: Annotated[SignedIn, Depends(signed_in)]
) -> SignedIn:
    """Every write: the session, then its CSRF token (header from htmx, or the form field)."""
    await csrf.verify(request, csrf.token_for(signed.session_id))
    return signed


Reader = Annotated[SignedIn, Depends(signed_in)]
Writer = Annotated[SignedIn, Depends(csrf_checked)]


async def dedicated(
    session: SessionDep, signed: SignedIn, workspace_id: uuid.UUID
) -> WorkspaceAccess:
    return await dedicated_reader(await workspace_reader(workspace_id, signed.principal, session))


async def app_access(session: SessionDep, signed: SignedIn, app_id: uuid.UUID) -> ApplicationAccess:
    return await dedicated_app_reader(await application_reader(app_id, signed.principal, session))


REFUSALS = (Problem, RequestValidationError, ValidationError)
BodyT = TypeVar("BodyT", bound=BaseModel)


async def refused(
    request: Request, session: SessionDep, exc: Exception
) -> tuple[SignedIn, int, str]:
    """A write refused with a reason the form can show (409, 422, 503…).

    What the write flushed is rolled back; a rollback expires every row the session loaded,
    so the caller is loaded again (and must resolve its access again) before the page is
    drawn. Access refusals (403, 404) are not form errors: they propagate to the error page.
    """
    status = exc.status if isinstance(exc, Problem) else 422
    if status in (401, 403, 404):
        raise exc
    words = views.in_words(exc)
    await session.rollback()
    return await sessions.resume(session, request), status, words


def text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def optional(form: FormData, key: str) -> str | None:
    return text(form, key) or None


def checked(form: FormData, key: str) -> bool:
    return text(form, key) in ("on", "true")


def from_form(model: type[BodyT], values: dict[str, Any]) -> BodyT:
    """A request body from a form's fields: they are text, so numbers and flags are parsed
    from it here, which the API's JSON bodies never are (their schemas are strict)."""
    return model.model_validate(values, strict=False)
