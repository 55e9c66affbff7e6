"""The restore wizard (pick a backup, what to restore and where) and a restore's page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData

from api import presenters
from api.deps import (
    ApplicationAccess,
    SessionDep,
    dedicated_app_writer,
    get_settings,
    get_temporal,
    get_temporal_if_up,
)
from api.problems import Problem, not_found, refusals, unprocessable
from api.schemas.recovery import RestoreToTimeRequest, moment
from api.schemas.restores import RestoreRequest, RestoreTarget
from api.ui import views
from api.ui.pages.shared import (
    REFUSALS,
    Reader,
    Writer,
    app_access,
    checked,
    go,
    page_router,
    refused,
    render,
    run_page,
    text,
)
from api.ui.sessions import SignedIn
from core.states import RunStatus
from services import recovery_window, restores, restores_to_time
from services.backups import backup_of

router = page_router()


def _parts(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """What a backup holds, from its manifest: the database, which volumes, and which named
    databases (name -> engine)."""
    held = restores.parts_held(manifest)
    described = (manifest or {}).get("databases") or {}
    databases = {d: (described.get(d) or {}).get("engine", "") for d in held.databases}
    return {"database": held.database, "volumes": held.volumes, "databases": databases}


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
    application = access.application
    backups = await presenters.backup_page(
        session, temporal, settings, application, 50, None, RunStatus.SUCCEEDED
    )
    chosen = None
    if backup_id is not None:
        chosen = await presenters.backup_detail(session, None, settings, application, backup_id)
        chosen["parts"] = _parts(chosen.get("metadata"))
    window, window_error = None, None
    if await recovery_window.archiving_on(session, application.id):
        try:
            with refusals():
                window = await recovery_window.read(session, settings, temporal, application)
        except Problem as exc:
            window_error = exc.detail
    return render(
        request,
        "restore.html",
        signed,
        status_code,
        access=access,
        app=presenters.application(application),
        backups=backups["items"],
        chosen=chosen,
        window=window,
        window_error=window_error,
        latest=window.latest.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if window and window.latest
        else None,
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
    access = await app_access(session, signed, app_id)
    return await _wizard(request, signed, session, access, backup)


def _restore_request(form: FormData) -> RestoreRequest:
    kind = text(form, "restore_type")
    target = None
    if text(form, "target") == "new_database":
        target = RestoreTarget(database_name=text(form, "database_name"))
    if kind == "selective":
        return RestoreRequest(
            restore_type="selective",
            database=checked(form, "database"),
            volumes=[v for v in form.getlist("volumes") if isinstance(v, str)],
            databases=[d for d in form.getlist("databases") if isinstance(d, str)],
            target=target,
        )
    return RestoreRequest.model_validate({"restore_type": kind, "target": target})


@router.post("/applications/{app_id}/restore", response_class=HTMLResponse)
async def start_restore(
    request: Request, app_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    """A full restore over the live application needs its name typed: it overwrites it all."""
    access = await dedicated_app_writer(await app_access(session, signed, app_id))
    form = await request.form()
    try:
        backup_id = uuid.UUID(text(form, "backup_id"))
    except ValueError:
        raise not_found("backup", text(form, "backup_id")[:40]) from None
    try:
        body = _restore_request(form)
        with refusals():
            backup = await backup_of(session, access.application, backup_id)
        # a full restore writes over the live application unless all of it goes elsewhere
        # (the database into a target, and no volumes or named databases in the backup)
        held = _parts(backup.metadata_)
        in_place = body.restore_type == "full" and bool(
            body.target is None or held["volumes"] or held["databases"]
        )
        if in_place and text(form, "confirm") != access.application.name:
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
        temporal = await get_temporal(request)
        principal = access.workspace.principal
        with refusals(starting="restore"):
            restore = await restores.request_restore(
                session,
                temporal,
                get_settings(request),
                access.application,
                backup_id,
                principal.actor,
                restore_type=body.restore_type,
                asked=restores.Parts(body.database, body.volumes, body.config, body.databases),
                target=body.target.model_dump(exclude_none=True) if body.target else None,
                by_platform_admin=principal.user.is_platform_admin,
            )
    except REFUSALS as exc:
        signed, status, words = await refused(request, session, exc)
        access = await app_access(session, signed, app_id)
        return await _wizard(
            request, signed, session, access, backup_id, status, error=words, form=form
        )
    return go(request, f"/ui/applications/{app_id}/restores/{restore.id}")


def _moment_request(form: FormData) -> RestoreToTimeRequest:
    """A restore to a moment from the wizard's form: into a new database (named, or after
    the moment) unless *over the live database* is chosen."""
    target: dict[str, Any] | None = None
    if text(form, "moment_target") == "in_place":
        target = {"in_place": True}
    elif text(form, "moment_database_name"):
        target = {"database_name": text(form, "moment_database_name")}
    return RestoreToTimeRequest.model_validate(
        {
            "target_time": text(form, "target_time"),
            "target": target,
            "confirm": text(form, "confirm"),
        }
    )


@router.post("/applications/{app_id}/restore-to-time", response_class=HTMLResponse)
async def start_restore_to_time(
    request: Request, app_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    """The database to a moment of the window; over the live one only with its name typed
    (the service asks, as the API does)."""
    access = await dedicated_app_writer(await app_access(session, signed, app_id))
    form = await request.form()
    try:
        body = _moment_request(form)
        temporal = await get_temporal(request)
        principal = access.workspace.principal
        with refusals(starting="restore"):
            restore = await restores_to_time.request(
                session,
                temporal,
                get_settings(request),
                access.application,
                principal.actor,
                moment=moment(body.target_time),
                database_name=body.target.database_name if body.target else None,
                by_platform_admin=principal.user.is_platform_admin,
                in_place=bool(body.target and body.target.in_place),
                confirm=body.confirm,
            )
    except REFUSALS as exc:
        signed, status, words = await refused(request, session, exc)
        access = await app_access(session, signed, app_id)
        return await _wizard(
            request, signed, session, access, None, status, moment_error=words, moment_form=form
        )
    return go(request, f"/ui/applications/{app_id}/restores/{restore.id}")


async def _restore(
    request: Request, session: SessionDep, access: ApplicationAccess, restore_id: uuid.UUID
) -> dict[str, Any]:
    temporal, settings = await get_temporal_if_up(request), get_settings(request)
    body = await presenters.restore_detail(
        session, temporal, settings, access.application, restore_id
    )
    return views.with_live_state(body, datetime.now(UTC))


@router.get("/applications/{app_id}/restores/{restore_id}", response_class=HTMLResponse)
async def restore_page(
    request: Request, app_id: uuid.UUID, restore_id: uuid.UUID, signed: Reader, session: SessionDep
) -> Response:
    """The restore's page; its live part alone when htmx polls it."""
    access = await app_access(session, signed, app_id)
    restore = await _restore(request, session, access, restore_id)
    return run_page(request, signed, access, "restore", "restore_status.html", restore)
