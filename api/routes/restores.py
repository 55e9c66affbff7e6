"""Restores of an application from one of its backups."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import (
    ApplicationAccess,
    DedicatedAppReader,
    DedicatedAppWriter,
    OptionalTemporalDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
)
from api.pagination import Cursor, Limit, Page, fetch_page
from api.problems import Problem, conflict, invalid, not_found
from api.routes.applications import refused
from api.routes.backups import backup_of
from api.runs import cancel_run, refuse_if_busy, settled_view, start_run, with_timeline
from api.schemas.restores import RestoreDetail, RestoreOut, RestoreRequest, RestoreTarget
from api.temporal_links import workflow_url
from core import crypto, secret_contexts
from core.boundaries import (
    BoundaryError,
    check_application_database,
    check_restore_target,
    check_volume_path,
)
from core.local_platform import database_url, split_database_url
from core.settings import Settings
from db import audit
from db.models import Application, BackupRestore
from workflows.restore import RestoreWorkflow

router = APIRouter(prefix="/api/v1/applications/{app_id}", tags=["restores"])


def present(restore: BackupRestore, settings: Settings) -> dict[str, Any]:
    details = restore.details or {}
    target = details.get("target")
    return {
        **{c.key: getattr(restore, c.key) for c in BackupRestore.__mapper__.column_attrs},
        "backup_id": restore.backup_execution_id,
        "database": bool(details.get("database")),
        "volumes": details.get("volumes", []),
        "target": {k: v for k, v in target.items() if k != "password_sealed"} if target else None,
        "notes": details.get("notes"),
        "temporal_ui_url": workflow_url(settings, restore.workflow_id)
        if restore.workflow_id
        else None,
    }


async def other_databases(
    session: AsyncSession, application: Application, dbname: str
) -> list[dict[str, Any]]:
    """Databases of other applications with that name, on any server (same_server decides)."""
    rows = await session.scalars(
        select(Application.platform_settings).where(
            Application.id != application.id,
            Application.platform_settings["database"]["dbname"].astext == dbname,
        )
    )
    return [row["database"] for row in rows]


async def check_target(
    session: AsyncSession, access: ApplicationAccess, target: RestoreTarget, settings: Settings
) -> None:
    """The target stays on the application's side: 403 for a URL from a non-admin, else 422."""
    application = access.application
    if target.database_name:
        stored: dict[str, Any] = {"database_name": target.database_name}
        dbname = target.database_name
    else:
        assert target.database_url is not None
        stored = {"database_url": target.database_url}
        dbname = split_database_url(target.database_url)[0]["dbname"]
    try:
        check_restore_target(
            stored, application.platform_settings.get("database"), settings,
            by_platform_admin=access.workspace.principal.user.is_platform_admin,
            other_applications=await other_databases(session, application, dbname),
            field="body.target",
        )  # fmt: skip
    except BoundaryError as exc:
        raise refused(exc) from None


def check_registration(
    application: Application, database: bool, volumes: list[str], settings: Settings
) -> None:
    """An application registered before the boundaries existed may still point outside them."""
    platform = application.platform_settings
    try:
        if database and platform.get("database"):
            check_application_database(platform["database"], settings, field="database_url")
        for name in volumes:
            path = (platform.get("volumes") or {}).get(name)
            if path is not None:
                check_volume_path(path, settings, field=f"volumes.{name}")
    except BoundaryError as exc:
        raise conflict(
            f"the application's registered {exc.field} is refused ({exc.message}); a platform"
            " administrator must correct the registration before it can be restored"
        ) from None


def _invalid(field: str, message: str) -> Problem:
    return invalid(field, message, "invalid_restore")


@router.post("/backups/{backup_id}/restore", status_code=202, response_model=RestoreOut)
async def start_restore(
    backup_id: uuid.UUID,
    body: RestoreRequest,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    application = access.application
    execution = await backup_of(session, application, backup_id)
    if execution.status != "succeeded":
        raise conflict(
            f"the backup is {execution.status}; only completed backups can be restored",
            backup_status=execution.status,
        )
    manifest = execution.metadata_ or {}
    parts = {p["part"] for p in manifest.get("parts", [])}
    in_backup = sorted(p.removeprefix("volume:") for p in parts if p.startswith("volume:"))
    if body.restore_type == "full":
        database, volumes = "database" in parts, in_backup
    else:
        database, volumes = body.database, body.volumes
        if database and "database" not in parts:
            raise _invalid("body.database", "this backup holds no database")
        unknown = sorted(set(volumes) - set(in_backup))
        if unknown:
            raise _invalid(
                "body.volumes", f"not in this backup: {', '.join(unknown)} (it holds {in_backup})"
            )
    restore_id = uuid.uuid4()
    target: dict[str, Any] | None = None
    if body.target is not None:
        if not database:
            raise _invalid("body.target", "a target applies only when the database is restored")
        await check_target(session, access, body.target, settings)
        if body.target.database_name:
            target = {"database_name": body.target.database_name}
        elif body.target.database_url:
            parts_url, password = split_database_url(body.target.database_url)
            target = {"database_url": database_url(parts_url)}
            if password:
                target["password_sealed"] = crypto.seal(
                    password.encode(), master_key=settings.master_key_text,
                    context=secret_contexts.restore_target_password(restore_id),
                )  # fmt: skip
    check_registration(application, database and target is None, volumes, settings)
    await refuse_if_busy(session, temporal, application, "restore")
    workflow_id = f"restore-{restore_id}"
    restore = BackupRestore(
        id=restore_id, backup_execution_id=execution.id, application_id=application.id,
        workflow_id=workflow_id, status="pending", restore_type=body.restore_type,
        details={"database": database, "volumes": volumes, "target": target},
    )  # fmt: skip
    session.add(restore)
    audit.record(
        session, access.workspace.principal.actor, "restore.request", "backup_restore",
        restore_id, workspace_id=application.workspace_id,
        details={"backup_id": str(execution.id), "restore_type": body.restore_type,
                 "database": database, "volumes": volumes,
                 "target": {k: v for k, v in (target or {}).items() if k != "password_sealed"}},
    )  # fmt: skip
    await session.flush()
    handle = await start_run(
        temporal, RestoreWorkflow.run,
        [str(restore_id), str(application.id), str(application.workspace_id)],
        workflow_id, application, "restore",
    )  # fmt: skip
    restore.run_id = handle.first_execution_run_id
    await session.commit()
    await session.refresh(restore)
    return present(restore, settings)


@router.get("/restores", response_model=Page[RestoreOut])
async def list_restores(
    access: DedicatedAppReader,
    session: SessionDep,
    settings: SettingsDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, object]:
    items, next_cursor = await fetch_page(
        session,
        select(BackupRestore).where(BackupRestore.application_id == access.application.id),
        BackupRestore.created_at,
        BackupRestore.id,
        limit,
        cursor,
    )
    return {"items": [present(r, settings) for r in items], "next_cursor": next_cursor}


async def restore_of(
    session: AsyncSession, application: Application, restore_id: uuid.UUID
) -> BackupRestore:
    restore = await session.get(BackupRestore, restore_id)
    if restore is None or restore.application_id != application.id:
        raise not_found("restore", restore_id)
    return restore


@router.get("/restores/{restore_id}", response_model=RestoreDetail)
async def get_restore(
    restore_id: uuid.UUID,
    access: DedicatedAppReader,
    session: SessionDep,
    settings: SettingsDep,
    temporal: OptionalTemporalDep,
) -> dict[str, Any]:
    restore = await restore_of(session, access.application, restore_id)
    await settled_view(session, temporal, restore)
    return await with_timeline(
        present(restore, settings), temporal, restore.workflow_id, restore.run_id
    )


@router.post("/restores/{restore_id}/cancel", status_code=202, response_model=RestoreOut)
async def cancel_restore(
    restore_id: uuid.UUID,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    """Stops a pending or running restore; the application is started again either way."""
    restore = await restore_of(session, access.application, restore_id)
    await cancel_run(
        session, temporal, restore, access.workspace.principal.actor,
        access.application.workspace_id,
    )  # fmt: skip
    return present(restore, settings)
