"""Restores of an application from one of its backups."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import (
    DedicatedAppReader,
    DedicatedAppWriter,
    OptionalTemporalDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
)
from api.pagination import Cursor, Limit, Page, fetch_page
from api.problems import not_found, refusals
from api.runs import cancel_run, settled_view, with_timeline
from api.schemas.restores import RestoreDetail, RestoreOut, RestoreRequest
from api.temporal_links import run_url
from core.settings import Settings
from db.models import Application, BackupRestore
from services import restores

router = APIRouter(prefix="/api/v1/applications/{app_id}", tags=["restores"])


def present(restore: BackupRestore, settings: Settings) -> dict[str, Any]:
    shown = RestoreOut.model_validate(restore, from_attributes=True).model_dump()
    return {**shown, "temporal_ui_url": run_url(settings, restore.workflow_id)}


@router.post("/backups/{backup_id}/restore", status_code=202, response_model=RestoreOut)
async def start_restore(
    backup_id: uuid.UUID,
    body: RestoreRequest,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    principal = access.workspace.principal
    with refusals(starting="restore"):
        restore = await restores.request_restore(
            session,
            temporal,
            settings,
            access.application,
            backup_id,
            principal.actor,
            restore_type=body.restore_type,
            asked=restores.Parts(body.database, body.volumes, body.config),
            target=body.target.model_dump(exclude_none=True) if body.target else None,
            by_platform_admin=principal.user.is_platform_admin,
        )
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
    await settled_view(session, temporal, restore, timeline_follows=True)
    return await with_timeline(present(restore, settings), temporal, restore)


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
        session,
        temporal,
        restore,
        access.workspace.principal.actor,
        access.application.workspace_id,
    )
    return present(restore, settings)
