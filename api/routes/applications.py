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
from api.problems import conflict, invalid, refusals
from api.schemas.applications import (
    ApplicationCreate,
    ApplicationOut,
    ApplicationRow,
    KubernetesPlatformIn,
    KubernetesPlatformOut,
    LocalPlatformIn,
    LocalPlatformOut,
)
from core import crypto, secret_contexts
from core.boundaries import check_application_database, check_volume_path, check_volumes_apart
from core.database_url import database_url, split_database_url
from core.settings import Settings
from db import audit
from db.models import Application, BackupPolicy, WorkspaceMember
from services import applications, database_identity

router = APIRouter(tags=["applications"])


def check_boundaries(platform: LocalPlatformIn | KubernetesPlatformIn, settings: Settings) -> None:
    """Volumes under an allowed root and a database that is not cairn's, before anything
    is stored (core/boundaries.py)."""
    with refusals():
        if isinstance(platform, KubernetesPlatformIn):
            if platform.database:  # the same rule the worker applies before writing to it
                database = platform.database.model_dump()
                check_application_database(database, settings, field="body.platform.database")
            return
        for name, path in platform.volumes.items():
            check_volume_path(path, settings, field=f"body.platform.volumes.{name}")
        if platform.database_url:
            database, _ = split_database_url(platform.database_url)
            check_application_database(database, settings, field="body.platform.database_url")


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
    workspace_id = access.workspace.id
    platform = body.platform
    check_boundaries(platform, settings)
    if isinstance(platform, LocalPlatformIn):
        others = await applications.volumes_of_others(session, None)
        with refusals():  # nor one of its own volumes inside another
            for name, path in platform.volumes.items():
                siblings = [p for other, p in platform.volumes.items() if other != name]
                field = f"body.platform.volumes.{name}"
                check_volumes_apart(path, [*others, *siblings], field=field)
    if isinstance(platform, LocalPlatformIn) and platform.database_url:
        database, password = split_database_url(platform.database_url)
        with refusals():  # by the server's identity: no spelling of cairn's own gets through
            await database_identity.refuse_protected(
                database, password, settings, "body.platform.database_url"
            )
    if isinstance(platform, KubernetesPlatformIn):
        with refusals():
            await applications.check_namespace(settings, platform.context, platform.namespace)
    if await session.get(WorkspaceMember, (workspace_id, body.owner_id)) is None:
        raise invalid(
            "body.owner_id",
            "not a member of this workspace",
            "not_a_member",
            f"owner_id: user {body.owner_id} is not a member of this workspace; add it first",
        )
    if await session.scalar(
        select(Application.id).where(
            Application.workspace_id == workspace_id, Application.name == body.name
        )
    ):
        raise conflict(f"an application named {body.name} already exists in this workspace")
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
        with refusals():  # a master key that cannot seal: 503
            application.platform_secrets = crypto.seal_json(
                {"database_password": password},
                master_key=settings.master_key_text,
                context=secret_contexts.application_secrets(application.id),
            )
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
