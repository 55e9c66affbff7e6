"""Applications of a workspace, with their platform settings (secrets write-only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import select

from api.deps import (
    ApplicationReader,
    PlatformAdmin,
    SessionDep,
    SettingsDep,
    WorkspaceReader,
)
from api.pagination import Cursor, Limit, Page, fetch_page
from api.problems import conflict, refusals
from api.schemas.applications import (
    ApplicationCreate,
    ApplicationOut,
    ApplicationRow,
    KubernetesPlatformIn,
    KubernetesPlatformOut,
    LocalPlatformIn,
    LocalPlatformOut,
)
from core.database_url import database_url, split_database_url
from db import audit
from db.models import Application, BackupPolicy
from services import applications

router = APIRouter(tags=["applications"])


def present(application: Application) -> dict[str, Any]:
    """The application as the API shows it: never a password, only whether one is set."""
    settings = application.platform_settings
    platform: LocalPlatformOut | KubernetesPlatformOut
    if application.platform_kind == "kubernetes":
        platform = KubernetesPlatformOut.model_validate({"kind": "kubernetes", **settings})
    else:
        database = settings.get("database")
        platform = LocalPlatformOut(
            kind="local",
            database_url=database_url(database) if database else None,
            database_password_set=bool(settings.get("database_password_set")),
            volumes=settings.get("volumes", {}),
            hooks=settings.get("hooks"),
        )
    row = ApplicationRow.model_validate(application, from_attributes=True)
    return {**row.model_dump(), "platform": platform.model_dump()}


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
    stored: dict[str, Any]
    if isinstance(platform, LocalPlatformIn):
        stored = {
            "volumes": platform.volumes,
            "hooks": platform.hooks.model_dump() if platform.hooks else None,
        }
        if platform.database_url:
            stored["database"], password = split_database_url(platform.database_url)
        stored["database_password_set"] = password is not None
    else:
        stored = kubernetes_settings(platform)
    new = applications.NewApplication(body.name, body.owner_id, platform.kind, stored, password)
    with refusals():
        application = await applications.register(
            session, settings, access.workspace.id, new, admin.actor
        )
    return present(application)


@router.get("/api/v1/workspaces/{workspace_id}/applications", response_model=Page[ApplicationOut])
async def list_applications(
    access: WorkspaceReader, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, object]:
    items, next_cursor = await fetch_page(
        session,
        select(Application).where(Application.workspace_id == access.workspace.id),
        Application.created_at,
        Application.id,
        limit,
        cursor,
    )
    return {"items": [present(app) for app in items], "next_cursor": next_cursor}


@router.get("/api/v1/applications/{app_id}", response_model=ApplicationOut)
async def get_application(access: ApplicationReader) -> dict[str, Any]:
    return present(access.application)


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
