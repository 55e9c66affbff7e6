"""The web UI's pages. Every read and write calls the API's own route functions and access
rules (api/deps.py) with the signed-in principal, so the UI can neither see nor do more than
the same person could through the API; errors come back as the API's problems, in words."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from starlette.datastructures import FormData

from api.deps import (
    ApplicationAccess,
    SessionDep,
    WorkspaceAccess,
    application_reader,
    current_principal,
    dedicated_admin,
    dedicated_app_reader,
    dedicated_app_writer,
    dedicated_reader,
    get_settings,
    get_temporal,
    get_temporal_if_up,
    workspace_admin,
    workspace_reader,
)
from api.pagination import fetch_page
from api.problems import Problem, not_found, refusals, unprocessable
from api.routes import applications as application_routes
from api.routes import audit_events as audit_routes
from api.routes import backup_policies as policy_routes
from api.routes import backup_storages as storage_routes
from api.routes import backup_usage as usage_routes
from api.routes import backups as backup_routes
from api.routes import me as me_routes
from api.routes import restores as restore_routes
from api.routes import workspaces as workspace_routes
from api.schemas.policies import PolicyIn
from api.schemas.restores import RestoreRequest, RestoreTarget
from api.schemas.storages import StorageCreate, StorageUpdate
from api.ui import charts, csrf, sessions, views
from api.ui.sessions import SignedIn, SignInRequired
from core.retention_rule import COUNTS
from core.states import RunStatus, StorageStatus
from db.models import AuditEvent, BackupExecution
from services import restores
from services.backups import backup_of

TEMPLATES = Path(__file__).parent / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
_env.filters.update(
    size=views.size, age=views.age, duration=views.duration, words=views.schedule_words
)
templates = Jinja2Templates(env=_env)
# Storage states that change by themselves: their row polls until it settles.
SETTLING = (StorageStatus.PENDING, StorageStatus.DELETING)
HISTORY_PAGE = 25
CHART_POINTS = 200


class UiRoute(APIRoute):
    """Turns what the shared route functions raise into pages: sign-in, 403, 404, 409, 503…"""

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


router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


def _is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _to_sign_in(request: Request) -> Response:
    target = "/ui/sign-in"
    if request.method == "GET" and not _is_htmx(request):
        target += "?" + urlencode({"next": request.url.path})
    if _is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _go(request: Request, url: str) -> Response:
    """After a write: htmx follows HX-Redirect, a plain form follows the 303."""
    if _is_htmx(request):
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
    name = "_error.html" if _is_htmx(request) else "error.html"
    signed: SignedIn | None = getattr(request.state, "signed_in", None)
    return render(request, name, signed, status, title=title, detail=detail)


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


async def _dedicated(
    session: SessionDep, signed: SignedIn, workspace_id: uuid.UUID
) -> WorkspaceAccess:
    return await dedicated_reader(await workspace_reader(workspace_id, signed.principal, session))


async def _app(session: SessionDep, signed: SignedIn, app_id: uuid.UUID) -> ApplicationAccess:
    return await dedicated_app_reader(await application_reader(app_id, signed.principal, session))


REFUSALS = (Problem, RequestValidationError, ValidationError)
BodyT = TypeVar("BodyT", bound=BaseModel)


async def _refused(
    request: Request, session: SessionDep, exc: Exception
) -> tuple[SignedIn, int, str]:
    """A write the API refused with a reason the form can show (409, 422, 503…).

    What the route flushed is rolled back; a rollback expires every row the session loaded,
    so the caller is loaded again (and must resolve its access again) before the page is
    drawn. Access refusals (403, 404) are not form errors: they propagate to the error page.
    """
    status = exc.status if isinstance(exc, Problem) else 422
    if status in (401, 403, 404):
        raise exc
    words = views.in_words(exc)
    await session.rollback()
    return await sessions.resume(session, request), status, words


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def _optional(form: FormData, key: str) -> str | None:
    return _text(form, key) or None


def _from_form(model: type[BodyT], values: dict[str, Any]) -> BodyT:
    """A request body from a form's fields: they are text, so numbers and flags are parsed
    from it here, which the API's JSON bodies never are (their schemas are strict)."""
    return model.model_validate(values, strict=False)


# --- sign-in ----------------------------------------------------------------------------


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
    target = _next(_text(form, "next"))
    try:
        principal = await current_principal(session, f"Bearer {_text(form, 'token')}")
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


# --- workspaces ---------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def home(request: Request, signed: Reader, session: SessionDep) -> Response:
    """The caller's workspaces (a platform administrator sees every workspace)."""
    mine = await me_routes.me(signed.principal, session)
    workspaces = [
        {"id": m["workspace_id"], "name": m["workspace_name"], "plan": m["plan"], "role": m["role"]}
        for m in mine["memberships"]
    ]
    if signed.principal.user.is_platform_admin:
        known = {w["id"] for w in workspaces}
        listed = await workspace_routes.list_workspaces(signed.principal, session, 200, None)
        workspaces += [
            {"id": w.id, "name": w.name, "plan": w.plan, "role": None}
            for w in listed["items"]  # type: ignore[attr-defined]
            if w.id not in known
        ]
    if len(workspaces) == 1:
        return RedirectResponse(f"/ui/workspaces/{workspaces[0]['id']}", status_code=303)
    return render(request, "home.html", signed, workspaces=workspaces)


@router.get("/workspaces/{workspace_id}", response_class=HTMLResponse)
async def overview(
    request: Request,
    workspace_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
    cursor: str | None = None,
) -> Response:
    access = await workspace_reader(workspace_id, signed.principal, session)
    if access.workspace.plan != "dedicated":
        return render(request, "overview.html", signed, access=access, apps=[], usage=None)
    apps = await application_routes.list_applications(access, session, 100, cursor)
    items: list[dict[str, Any]] = apps["items"]  # type: ignore[assignment]
    usage = await usage_routes.workspace_usage(await dedicated_reader(access), session, 0)
    now = datetime.now(UTC)
    states = await views.protections(session, [a["id"] for a in items], now)
    return render(
        request,
        "overview.html",
        signed,
        access=access,
        usage=usage,
        next_cursor=apps["next_cursor"],
        apps=[{**a, "protection": states[a["id"]]} for a in items],
    )


@router.get("/workspaces/{workspace_id}/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    workspace_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
    action: Annotated[str, Query(max_length=100)] = "",
    actor: Annotated[str, Query(max_length=320)] = "",
    target: Annotated[str, Query(max_length=255)] = "",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The workspace's audit trail (administrators), narrowed by action, actor and target."""
    access = await workspace_admin(await workspace_reader(workspace_id, signed.principal, session))
    query = audit_routes.events_of(access.workspace.id)
    if action:
        query = query.where(AuditEvent.action == action)
    if actor:
        query = query.where(func.lower(AuditEvent.actor).contains(actor.lower(), autoescape=True))
    if target:
        query = query.where(AuditEvent.target_id == target)
    events, next_cursor = await fetch_page(
        session, query, AuditEvent.occurred_at, AuditEvent.id, 50, cursor
    )
    actions = await session.scalars(
        audit_routes.events_of(access.workspace.id)
        .with_only_columns(AuditEvent.action)
        .distinct()
        .order_by(AuditEvent.action)
    )
    return render(
        request,
        "audit.html",
        signed,
        access=access,
        events=events,
        next_cursor=next_cursor,
        actions=list(actions),
        filters={"action": action, "actor": actor, "target": target},
    )


# --- storages -----------------------------------------------------------------------------


def _connection(form: FormData, kind: str) -> dict[str, Any]:
    """The storage type's connection settings from the form's fields (empty ones left out)."""
    if kind == "nfs":
        fields = {k: _optional(form, f"nfs_{k}") for k in ("server", "export", "options")}
    elif kind == "ceph":
        monhost = [h for h in _text(form, "ceph_monhost").replace(",", " ").split() if h]
        fields = {
            k: _optional(form, f"ceph_{k}") for k in ("username", "fs_name", "subdir", "keyring")
        }
        fields["monhost"] = monhost or None  # type: ignore[assignment]
    else:
        return {}
    return {k: v for k, v in fields.items() if v is not None}


async def _storages_page(
    request: Request,
    signed: SignedIn,
    session: SessionDep,
    access: WorkspaceAccess,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    listed = await storage_routes.list_storages(access, session, 200, None)
    usage = await usage_routes.workspace_usage(access, session, 0)
    return render(
        request,
        "storages.html",
        signed,
        status_code,
        access=access,
        storages=listed["items"],
        usage=usage,
        settling=SETTLING,
        **extra,
    )


@router.get("/workspaces/{workspace_id}/storages", response_class=HTMLResponse)
async def storages_page(
    request: Request, workspace_id: uuid.UUID, signed: Reader, session: SessionDep
) -> Response:
    access = await _dedicated(session, signed, workspace_id)
    return await _storages_page(request, signed, session, access)


@router.post("/workspaces/{workspace_id}/storages", response_class=HTMLResponse)
async def create_storage(
    request: Request, workspace_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    access = await dedicated_admin(await _dedicated(session, signed, workspace_id))
    form = await request.form()
    kind = _text(form, "type")
    try:
        body = _from_form(
            StorageCreate,
            {
                "name": _text(form, "name"),
                "type": kind,
                "capacity_gb": _text(form, "capacity_gb"),
                "connection": _connection(form, kind),
            },
        )
        await storage_routes.create_storage(
            body, access, session, get_settings(request), await get_temporal(request)
        )
    except REFUSALS as exc:
        signed, status, words = await _refused(request, session, exc)
        access = await _dedicated(session, signed, workspace_id)
        return await _storages_page(
            request, signed, session, access, status, error=words, form=form
        )
    return _go(request, f"/ui/workspaces/{workspace_id}/storages")


@router.get("/workspaces/{workspace_id}/storages/{storage_id}/row", response_class=HTMLResponse)
async def storage_row(
    request: Request,
    workspace_id: uuid.UUID,
    storage_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
) -> Response:
    """The live row of a storage being provisioned or deleted; empty once it is gone."""
    access = await _dedicated(session, signed, workspace_id)
    try:
        storage = await storage_routes.get_storage(storage_id, access, session)
    except Problem as exc:
        if exc.status == 404:
            return HTMLResponse("")
        raise
    return render(
        request, "_storage_row.html", signed, access=access, storage=storage, settling=SETTLING
    )


async def _storage_page(
    request: Request,
    signed: SignedIn,
    session: SessionDep,
    access: WorkspaceAccess,
    storage_id: uuid.UUID,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    storage = await storage_routes.get_storage(storage_id, access, session)
    return render(
        request,
        "storage.html",
        signed,
        status_code,
        access=access,
        storage=storage,
        settling=SETTLING,
        error=error,
    )


@router.get("/workspaces/{workspace_id}/storages/{storage_id}", response_class=HTMLResponse)
async def storage_page(
    request: Request,
    workspace_id: uuid.UUID,
    storage_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
) -> Response:
    access = await _dedicated(session, signed, workspace_id)
    return await _storage_page(request, signed, session, access, storage_id)


async def _storage_write(
    request: Request,
    workspace_id: uuid.UUID,
    storage_id: uuid.UUID,
    signed: SignedIn,
    session: SessionDep,
    action: Callable[[WorkspaceAccess, FormData], Coroutine[Any, Any, Any]],
    done: str,
) -> Response:
    access = await dedicated_admin(await _dedicated(session, signed, workspace_id))
    try:
        await action(access, await request.form())
    except REFUSALS as exc:
        signed, status, words = await _refused(request, session, exc)
        access = await _dedicated(session, signed, workspace_id)
        return await _storage_page(request, signed, session, access, storage_id, status, words)
    return _go(request, done)


@router.post("/workspaces/{workspace_id}/storages/{storage_id}", response_class=HTMLResponse)
async def update_storage(
    request: Request,
    workspace_id: uuid.UUID,
    storage_id: uuid.UUID,
    signed: Writer,
    session: SessionDep,
) -> Response:
    async def action(access: WorkspaceAccess, form: FormData) -> None:
        storage = await storage_routes.get_storage(storage_id, access, session)
        connection = _connection(form, storage["type"])
        body = _from_form(
            StorageUpdate,
            {
                "name": _text(form, "name"),
                "capacity_gb": _text(form, "capacity_gb"),
                "connection": connection if storage["type"] != "local" else None,
            },
        )
        await storage_routes.update_storage(
            storage_id, body, access, session, get_settings(request), await get_temporal(request)
        )

    here = f"/ui/workspaces/{workspace_id}/storages/{storage_id}"
    return await _storage_write(request, workspace_id, storage_id, signed, session, action, here)


@router.post("/workspaces/{workspace_id}/storages/{storage_id}/delete", response_class=HTMLResponse)
async def delete_storage(
    request: Request,
    workspace_id: uuid.UUID,
    storage_id: uuid.UUID,
    signed: Writer,
    session: SessionDep,
) -> Response:
    async def action(access: WorkspaceAccess, form: FormData) -> None:
        await storage_routes.delete_storage(
            storage_id,
            access,
            session,
            get_settings(request),
            await get_temporal(request),
            force=_text(form, "force") == "true",
        )

    back = f"/ui/workspaces/{workspace_id}/storages"
    return await _storage_write(request, workspace_id, storage_id, signed, session, action, back)


@router.get("/workspaces/{workspace_id}/storages/{storage_id}/usage.svg")
async def storage_chart(
    workspace_id: uuid.UUID, storage_id: uuid.UUID, signed: Reader, session: SessionDep
) -> Response:
    access = await _dedicated(session, signed, workspace_id)
    storage = await storage_routes.get_storage(storage_id, access, session)
    usage = await usage_routes.workspace_usage(access, session, 2016)
    samples = next(s["history"] for s in usage["storages"] if s["storage_id"] == storage_id)
    return charts.usage(samples, storage["capacity_gb"] * 1024**3)


# --- applications -------------------------------------------------------------------------


async def _application_page(
    request: Request,
    signed: SignedIn,
    session: SessionDep,
    access: ApplicationAccess,
    cursor: str | None = None,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    settings = get_settings(request)
    temporal = await get_temporal_if_up(request)
    application = access.application
    state = (await views.protections(session, [application.id], datetime.now(UTC)))[application.id]
    policy = None
    if state.policy is not None and temporal is not None:
        policy = await policy_routes.get_policy(access, session, temporal)
    storages = await storage_routes.list_storages(access.workspace, session, 200, None)
    history = await backup_routes.list_backups(
        access, session, settings, temporal, HISTORY_PAGE, cursor, None
    )
    restores = await restore_routes.list_restores(access, session, settings, 10, None)
    shown = state.policy
    preview = views.saved(shown.schedule, shown.timezone) if shown else None
    return render(
        request,
        "application.html",
        signed,
        status_code,
        access=access,
        app=await application_routes.get_application(access),
        state=state,
        policy=policy,
        storages=storages["items"],
        history=history,
        restores=restores["items"],
        preview=preview,
        timezone=shown.timezone if shown else None,
        temporal_up=temporal is not None,
        **extra,
    )


@router.get("/applications/{app_id}", response_class=HTMLResponse)
async def application_page(
    request: Request,
    app_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
    cursor: str | None = None,
) -> Response:
    access = await _app(session, signed, app_id)
    return await _application_page(request, signed, session, access, cursor)


@router.get("/applications/{app_id}/policy/preview", response_class=HTMLResponse)
async def policy_preview(
    request: Request,
    app_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
    schedule: Annotated[str, Query(max_length=100)] = "",
    timezone: Annotated[str, Query(max_length=64)] = "UTC",
) -> Response:
    """The schedule as typed: in words and its next 5 runs, or why it is refused."""
    await _app(session, signed, app_id)
    minimum = timedelta(minutes=get_settings(request).policy_min_interval_minutes)
    return render(
        request,
        "_preview.html",
        signed,
        preview=views.preview(schedule, timezone, minimum),
        timezone=timezone,
    )


def _checked(form: FormData, key: str) -> bool:
    return _text(form, key) in ("on", "true")


@router.post("/applications/{app_id}/policy", response_class=HTMLResponse)
async def save_policy(
    request: Request, app_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    access = await dedicated_app_writer(await _app(session, signed, app_id))
    form = await request.form()
    try:
        body = _from_form(
            PolicyIn,
            {
                "storage_id": _text(form, "storage_id"),
                "schedule": _text(form, "schedule"),
                "timezone": _text(form, "timezone") or "UTC",
                "retention_days": _text(form, "retention_days") or None,  # empty: no age rule
                **{count: _text(form, count) or 0 for count in COUNTS},
                "backup_type": _text(form, "backup_type"),
                "enabled": not _checked(form, "paused"),
                "include_database": _checked(form, "include_database"),
                "include_volumes": _checked(form, "include_volumes"),
            },
        )
        await policy_routes.put_policy(
            body, access, session, get_settings(request), await get_temporal(request), Response()
        )
    except REFUSALS as exc:
        signed, status, words = await _refused(request, session, exc)
        access = await _app(session, signed, app_id)
        return await _application_page(
            request, signed, session, access, None, status, policy_error=words, form=form
        )
    return _go(request, f"/ui/applications/{app_id}")


@router.get("/applications/{app_id}/retention", response_class=HTMLResponse)
async def retention_page(
    request: Request, app_id: uuid.UUID, signed: Reader, session: SessionDep
) -> Response:
    """Which backups the saved rule keeps and which the next prune removes, and why."""
    access = await _app(session, signed, app_id)
    preview = await policy_routes.retention_preview(
        access, session, None, None, None, None, None, None, None
    )
    return render(request, "retention.html", signed, access=access, preview=preview)


@router.post("/applications/{app_id}/run", response_class=HTMLResponse)
async def run_now(
    request: Request, app_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    """'Run now': the API's manual trigger; then the backup's own page follows its progress."""
    access = await dedicated_app_writer(await _app(session, signed, app_id))
    backup = await backup_routes.trigger_backup(
        access, session, get_settings(request), await get_temporal(request), None, None
    )
    return _go(request, f"/ui/applications/{app_id}/backups/{backup['id']}")


def _run_page(
    request: Request,
    signed: SignedIn,
    access: ApplicationAccess,
    kind: str,
    page: str,
    run: dict[str, Any],
) -> Response:
    """A backup's or restore's page, or its live part alone (``_{kind}_live.html``) when htmx
    polls it."""
    name = f"_{kind}_live.html" if _is_htmx(request) else page
    return render(request, name, signed, 200, access=access, **{kind: run})


async def _backup(
    request: Request, session: SessionDep, access: ApplicationAccess, backup_id: uuid.UUID
) -> dict[str, Any]:
    body = await backup_routes.get_backup(
        backup_id, access, session, get_settings(request), await get_temporal_if_up(request)
    )
    body["seconds"] = views.run_seconds(body["started_at"], body["completed_at"])
    return views.with_live_state(body, datetime.now(UTC))


@router.get("/applications/{app_id}/backups/{backup_id}", response_class=HTMLResponse)
async def backup_page(
    request: Request, app_id: uuid.UUID, backup_id: uuid.UUID, signed: Reader, session: SessionDep
) -> Response:
    """The backup's page; its live part alone when htmx polls it."""
    access = await _app(session, signed, app_id)
    backup = await _backup(request, session, access, backup_id)
    return _run_page(request, signed, access, "backup", "backup.html", backup)


@router.post("/applications/{app_id}/backups/{backup_id}/cancel", response_class=HTMLResponse)
async def cancel_backup(
    request: Request, app_id: uuid.UUID, backup_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    access = await dedicated_app_writer(await _app(session, signed, app_id))
    await backup_routes.cancel_backup(
        backup_id, access, session, get_settings(request), await get_temporal(request)
    )
    return _go(request, f"/ui/applications/{app_id}/backups/{backup_id}")


@router.post("/applications/{app_id}/backups/{backup_id}/protection", response_class=HTMLResponse)
async def set_protection(
    request: Request, app_id: uuid.UUID, backup_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    """Keeps a backup out of retention's reach, or hands it back (the API's protect routes)."""
    access = await dedicated_app_writer(await _app(session, signed, app_id))
    change = (
        backup_routes.protect_backup
        if _text(await request.form(), "protect") == "true"
        else backup_routes.unprotect_backup
    )
    await change(backup_id, access, session, get_settings(request))
    return _go(request, f"/ui/applications/{app_id}/backups/{backup_id}")


@router.get("/applications/{app_id}/chart.svg")
async def backups_chart(app_id: uuid.UUID, signed: Reader, session: SessionDep) -> Response:
    """Size and duration of the application's last successful backups."""
    access = await _app(session, signed, app_id)
    rows = (
        await session.execute(
            select(
                BackupExecution.started_at, BackupExecution.completed_at, BackupExecution.size_bytes
            )
            .where(
                BackupExecution.application_id == access.application.id,
                BackupExecution.status == RunStatus.SUCCEEDED,
            )
            .order_by(BackupExecution.started_at.desc())
            .limit(CHART_POINTS)
        )
    ).all()
    return charts.backups(
        [
            (started, size, views.run_seconds(started, done))
            for started, done, size in reversed(rows)
        ]
    )


# --- restores -----------------------------------------------------------------------------


def _parts(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """What a backup holds, from its manifest: the database and which volumes."""
    held = restores.parts_held(manifest)
    return {"database": held.database, "volumes": held.volumes}


async def _wizard(
    request: Request,
    signed: SignedIn,
    session: SessionDep,
    access: ApplicationAccess,
    backup_id: uuid.UUID | None,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    settings = get_settings(request)
    temporal = await get_temporal_if_up(request)
    backups = await backup_routes.list_backups(
        access, session, settings, temporal, 50, None, RunStatus.SUCCEEDED
    )
    chosen = None
    if backup_id is not None:
        chosen = await backup_routes.get_backup(backup_id, access, session, settings, None)
        chosen["parts"] = _parts(chosen.get("metadata"))
    return render(
        request,
        "restore.html",
        signed,
        status_code,
        access=access,
        app=await application_routes.get_application(access),
        backups=backups["items"],
        chosen=chosen,
        **extra,
    )


@router.get("/applications/{app_id}/restore", response_class=HTMLResponse)
async def restore_wizard(
    request: Request,
    app_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
    backup: uuid.UUID | None = None,
) -> Response:
    access = await _app(session, signed, app_id)
    return await _wizard(request, signed, session, access, backup)


def _restore_request(form: FormData) -> RestoreRequest:
    kind = _text(form, "restore_type")
    target = None
    if _text(form, "target") == "new_database":
        target = RestoreTarget(database_name=_text(form, "database_name"))
    if kind == "selective":
        return RestoreRequest(
            restore_type="selective",
            database=_checked(form, "database"),
            volumes=[v for v in form.getlist("volumes") if isinstance(v, str)],
            target=target,
        )
    return RestoreRequest.model_validate({"restore_type": kind, "target": target})


@router.post("/applications/{app_id}/restore", response_class=HTMLResponse)
async def start_restore(
    request: Request, app_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    """A full restore over the live application needs its name typed: it overwrites it all."""
    access = await dedicated_app_writer(await _app(session, signed, app_id))
    form = await request.form()
    try:
        backup_id = uuid.UUID(_text(form, "backup_id"))
    except ValueError:
        raise not_found("backup", _text(form, "backup_id")[:40]) from None
    try:
        body = _restore_request(form)
        with refusals():
            backup = await backup_of(session, access.application, backup_id)
        # a full restore writes over the live application unless all of it goes elsewhere
        # (the database into a target, and no volumes in the backup)
        in_place = body.restore_type == "full" and (
            body.target is None or _parts(backup.metadata_)["volumes"]
        )
        if in_place and _text(form, "confirm") != access.application.name:
            raise unprocessable(
                "confirmation-required",
                "Confirmation required",
                "a full restore in place overwrites the application's database and its"
                " volumes; type the application's name exactly to confirm",
                [
                    {
                        "field": "confirm",
                        "message": "type the application's name exactly to confirm",
                        "code": "confirmation-required",
                    }
                ],
            )
        restore = await restore_routes.start_restore(
            backup_id, body, access, session, get_settings(request), await get_temporal(request)
        )
    except REFUSALS as exc:
        signed, status, words = await _refused(request, session, exc)
        access = await _app(session, signed, app_id)
        return await _wizard(
            request, signed, session, access, backup_id, status, error=words, form=form
        )
    return _go(request, f"/ui/applications/{app_id}/restores/{restore['id']}")


async def _restore(
    request: Request, session: SessionDep, access: ApplicationAccess, restore_id: uuid.UUID
) -> dict[str, Any]:
    body = await restore_routes.get_restore(
        restore_id, access, session, get_settings(request), await get_temporal_if_up(request)
    )
    return views.with_live_state(body, datetime.now(UTC))


@router.get("/applications/{app_id}/restores/{restore_id}", response_class=HTMLResponse)
async def restore_page(
    request: Request, app_id: uuid.UUID, restore_id: uuid.UUID, signed: Reader, session: SessionDep
) -> Response:
    """The restore's page; its live part alone when htmx polls it."""
    access = await _app(session, signed, app_id)
    restore = await _restore(request, session, access, restore_id)
    return _run_page(request, signed, access, "restore", "restore_status.html", restore)
