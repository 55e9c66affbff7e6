"""Applications of a workspace, with their platform settings (secrets write-only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import select

from api import presenters
from api.deps import (
    ApplicationReader,
    PlatformAdmin,
    SessionDep,
    SettingsDep,
    WorkspaceReader,
)
from api.pagination import Cursor, Limit, Page, page_of
from api.problems import conflict, refusals
from api.schemas.applications import (
    ApplicationCreate,
    ApplicationOut,
    KubernetesPlatformIn,
    LocalPlatformIn,
)
from core.database_url import split_database_url
from db import audit
from db.models import BackupPolicy
from services import applications, offsite_targets, overdue, workspaces

router = APIRouter(tags=["applications"])


def kubernetes_settings(platform: KubernetesPlatformIn) -> dict[str, Any]:
    """What is stored of a kubernetes application (no password: it stays in its Secret)."""
    return {
        "namespace": platform.namespace,
        "context": platform.context,
        "workloads": platform.workloads.stored(),
        "volumes": platform.volumes,
        "snapshot_class": platform.snapshot_class,
        "database": platform.database.model_dump() if platform.database else None,
        "config": platform.config.model_dump(),
    }


@router.post(
    "/api/v1/workspaces/{workspace_id}/applications", status_code=201, response_model=ApplicationOut
)
async def create_application(
    body: ApplicationCreate,
    access: WorkspaceReader,
    admin: PlatformAdmin,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    platform = body.platform
    password = None
    passwords: dict[str, str] = {}
    stored: dict[str, Any]
    if isinstance(platform, LocalPlatformIn):
        stored = {
            "volumes": platform.volumes,
            "hooks": platform.hooks.model_dump() if platform.hooks else None,
        }
        if platform.database_url:
            stored["database"], password = split_database_url(platform.database_url)
        stored["database_password_set"] = password is not None
        if platform.databases:
            with refusals():
                stored["databases"], passwords = applications.named_settings(platform.databases)
    else:
        stored = kubernetes_settings(platform)
    new = applications.NewApplication(
        body.name, body.owner_id, platform.kind, stored, password, passwords
    )
    with refusals():
        application = await applications.register(
            session, settings, access.workspace.id, new, admin.actor
        )
    return presenters.application(application)


@router.get("/api/v1/workspaces/{workspace_id}/applications", response_model=Page[ApplicationOut])
async def list_applications(
    access: WorkspaceReader,
    session: SessionDep,
    settings: SettingsDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, object]:
    query = workspaces.applications_of(access.workspace.id)
    items, next_cursor = await page_of(session, query, limit, cursor)
    ids = [app.id for app in items]
    standing = await overdue.standings(session, settings, ids)
    lags = await offsite_targets.offsite_lags(session, settings, ids)
    return {
        "items": [
            presenters.application(app, standing.get(app.id), lags.get(app.id)) for app in items
        ],
        "next_cursor": next_cursor,
    }


@router.get("/api/v1/applications/{app_id}", response_model=ApplicationOut)
async def get_application(
    access: ApplicationReader, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    application = access.application
    standing = await overdue.standing_of(session, settings, application.id)
    lags = await offsite_targets.offsite_lags(session, settings, [application.id])
    return presenters.application(application, standing, lags.get(application.id))


@router.post("/api/v1/applications/{app_id}/databases/{name}/confirm")
async def confirm_database(
    name: str,
    access: ApplicationReader,
    admin: PlatformAdmin,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """A platform administrator's word that named database ``name``'s server, restarted or
    rebuilt, is still the application's: checked as at registration, then its identity is
    recorded again, so restores write to it again (docs/engines.md)."""
    with refusals():
        changed = await applications.confirm_named_database(
            session, settings, access.application, name, admin.actor
        )
    return {"database": name, "identity_changed": changed}


@router.delete("/api/v1/applications/{app_id}", status_code=204)
async def delete_application(
    access: ApplicationReader, admin: PlatformAdmin, session: SessionDep
) -> Response:
    application = access.application
    if await session.scalar(
        select(BackupPolicy.id).where(BackupPolicy.application_id == application.id)
    ):
        raise conflict(
            "the application has a backup policy; delete the policy first so no backup"
            " history is dropped by accident"
        )
    audit.record(
        session,
        admin.actor,
        "application.delete",
        "application",
        application.id,
        workspace_id=application.workspace_id,
        details={"name": application.name},
    )
    await session.delete(application)
    await session.commit()
    return Response(status_code=204)
