"""Backups of an application: manual trigger, history, step timeline, cancel."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from api import presenters
from api.deps import (
    ApplicationAccess,
    DedicatedAppReader,
    DedicatedAppWriter,
    IdempotencyKey,
    OptionalTemporalDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
)
from api.pagination import Cursor, Limit, Page
from api.problems import refusals
from api.runs import cancel_run
from api.schemas.backups import BackupDetail, BackupOut, BackupTrigger, Status
from db.models import BackupExecution
from services import backups

router = APIRouter(prefix="/api/v1/applications/{app_id}/backups", tags=["backups"])


@router.post("", status_code=202, response_model=BackupOut)
async def trigger_backup(
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    idempotency_key: IdempotencyKey = None,
    body: BackupTrigger | None = None,
) -> dict[str, Any]:
    with refusals(starting="backup"):
        execution = await backups.request_backup(
            session, temporal, access.workspace.principal.actor, access.application, idempotency_key
        )
    await session.commit()
    return presenters.backup(execution, settings)


@router.get("", response_model=Page[BackupOut])
async def list_backups(
    access: DedicatedAppReader,
    session: SessionDep,
    settings: SettingsDep,
    temporal: OptionalTemporalDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Annotated[Status | None, Query(description="only backups in this state")] = None,
) -> dict[str, object]:
    return await presenters.backup_page(
        session, temporal, settings, access.application, limit, cursor, status
    )


@router.get("/{backup_id}", response_model=BackupDetail)
async def get_backup(
    backup_id: uuid.UUID,
    access: DedicatedAppReader,
    session: SessionDep,
    settings: SettingsDep,
    request_temporal: OptionalTemporalDep,
) -> dict[str, Any]:
    return await presenters.backup_detail(
        session, request_temporal, settings, access.application, backup_id
    )


@router.post("/{backup_id}/cancel", status_code=202, response_model=BackupOut)
async def cancel_backup(
    backup_id: uuid.UUID,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    with refusals():
        execution = await backups.backup_of(session, access.application, backup_id)
    await cancel_run(
        session,
        temporal,
        execution,
        access.workspace.principal.actor,
        access.application.workspace_id,
    )
    return presenters.backup(execution, settings)


async def _set_protection(
    backup_id: uuid.UUID, access: ApplicationAccess, session: AsyncSession, protect: bool
) -> BackupExecution:
    with refusals():
        execution = await backups.set_protection(
            session, access.workspace.principal.actor, access.application, backup_id, protect
        )
    await session.commit()
    return execution


@router.post("/{backup_id}/protect", response_model=BackupOut)
async def protect_backup(
    backup_id: uuid.UUID, access: DedicatedAppWriter, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Retention never prunes a protected backup; its storage is not deleted without force."""
    return presenters.backup(await _set_protection(backup_id, access, session, True), settings)


@router.post("/{backup_id}/unprotect", response_model=BackupOut)
async def unprotect_backup(
    backup_id: uuid.UUID, access: DedicatedAppWriter, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Hands the backup back to the retention rule."""
    return presenters.backup(await _set_protection(backup_id, access, session, False), settings)
