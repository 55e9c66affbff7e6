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
from api.problems import Problem, conflict, invalid
from api.schemas.applications import ApplicationCreate, ApplicationOut, LocalPlatformIn
from core import crypto, secret_contexts
from core.boundaries import AdminOnly, BoundaryError, check_application_database, check_volume_path
from core.database_url import database_url, split_database_url
from core.settings import Settings
from db import audit
from db.models import Application, BackupPolicy, WorkspaceMember

router = APIRouter(tags=["applications"])


def refused(exc: BoundaryError) -> Problem:
    """A request that reaches outside its application: 403 when only an admin may, else 422."""
    if isinstance(exc, AdminOnly):
        return Problem(403, "forbidden", "Forbidden", f"{exc.field}: {exc.message}")
    return invalid(exc.field, exc.message, "outside_application")


def check_boundaries(platform: LocalPlatformIn, settings: Settings) -> None:
    """Volumes under an allowed root and a database that is not cairn's, before anything
    is stored (core/boundaries.py)."""
    try:
        for name, path in platform.volumes.items():
            check_volume_path(path, settings, field=f"body.platform.volumes.{name}")
        if platform.database_url:
            database, _ = split_database_url(platform.database_url)
            check_application_database(database, settings, field="body.platform.database_url")
    except BoundaryError as exc:
        raise refused(exc) from None


def present(application: Application) -> dict[str, Any]:
    settings = application.platform_settings
    database = settings.get("database")
    return {
        "id": application.id,
        "workspace_id": application.workspace_id,
        "owner_id": application.owner_id,
        "name": application.name,
        "platform": {
            "kind": application.platform_kind,
            "database_url": database_url(database) if database else None,
            "database_password_set": bool(settings.get("database_password_set")),
            "volumes": settings.get("volumes", {}),
            "hooks": settings.get("hooks"),
        },
        "created_at": application.created_at,
        "updated_at": application.updated_at,
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
    workspace_id = access.workspace.id
    check_boundaries(body.platform, settings)
    if await session.get(WorkspaceMember, (workspace_id, body.owner_id)) is None:
        raise invalid(
            "body.owner_id", "not a member of this workspace", "not_a_member",
            f"owner_id: user {body.owner_id} is not a member of this workspace; add it first",
        )  # fmt: skip
    if await session.scalar(
        select(Application.id).where(
            Application.workspace_id == workspace_id, Application.name == body.name
        )
    ):
        raise conflict(f"an application named {body.name} already exists in this workspace")
    platform = body.platform
    stored: dict[str, Any] = {
        "volumes": platform.volumes,
        "hooks": platform.hooks.model_dump() if platform.hooks else None,
    }
    password = None
    if platform.database_url:
        stored["database"], password = split_database_url(platform.database_url)
    stored["database_password_set"] = password is not None
    application = Application(
        workspace_id=workspace_id,
        owner_id=body.owner_id,
        name=body.name,
        platform_kind=platform.kind,
        platform_settings=stored,
    )
    session.add(application)
    await session.flush()
    if password is not None:
        try:
            application.platform_secrets = crypto.seal_json(
                {"database_password": password},
                master_key=settings.master_key_text,
                context=secret_contexts.application_secrets(application.id),
            )
        except crypto.CryptoError as exc:
            raise Problem(503, "secrets-unavailable", "Secrets unavailable", str(exc)) from exc
    audit.record(
        session,
        admin.actor,
        "application.create",
        "application",
        application.id,
        workspace_id=workspace_id,
        details={"name": body.name, "owner_id": str(body.owner_id), "kind": platform.kind},
    )
    await session.commit()
    await session.refresh(application)
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
