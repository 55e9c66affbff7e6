"""Sign-in with an API token, and sign-out (docs/ui.md, Sign-in, session, CSRF)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.deps import SessionDep, current_principal, get_settings
from api.problems import Problem
from api.ui import csrf, sessions, views
from api.ui.pages.shared import Writer, page_router, render, text

router = page_router()


def _next(value: str | None) -> str:
    """Only a path inside the UI: a sign-in never redirects to another site."""
    if value and value.startswith("/ui") and not value.startswith("//"):
        return value
    return "/ui"


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(
    request: Request, next_path: Annotated[str | None, Query(alias="next", max_length=2000)] = None
) -> Response:
    token = csrf.sign_in_token(request)
    response = render(request, "sign_in.html", sign_in_csrf=token, next=_next(next_path))
    csrf.set_sign_in_cookie(request, response, token)
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request, session: SessionDep) -> Response:
    await csrf.verify_sign_in(request)
    form = await request.form()
    target = _next(text(form, "next"))
    try:
        principal = await current_principal(session, f"Bearer {text(form, 'token')}")
    except Problem as exc:
        token = csrf.sign_in_token(request)
        return render(
            request,
            "sign_in.html",
            status_code=exc.status,
            sign_in_csrf=token,
            next=target,
            error=views.in_words(exc),
        )
    earlier = request.cookies.get(sessions.COOKIE)
    if earlier:  # a new sign-in replaces the browser's earlier session
        await sessions.end(session, earlier, None)
    session_id, expires = await sessions.start(session, principal, get_settings(request))
    response = RedirectResponse(target, status_code=303)
    sessions.set_cookie(request, response, session_id, expires)
    response.delete_cookie(csrf.SIGN_IN_COOKIE, path="/ui")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, signed: Writer, session: SessionDep) -> Response:
    await sessions.end(session, signed.session_id, signed.principal)
    response = RedirectResponse("/ui/sign-in", status_code=303)
    sessions.clear_cookie(request, response)
    return response
