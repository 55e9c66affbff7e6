"""Backups of an application: manual trigger, history, step timeline, cancel."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

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
from api.pagination import Cursor, Limit, Page, fetch_page
from api.problems import refusals
from api.runs import cancel_run, settled_view, with_timeline
from api.schemas.backups import BackupDetail, BackupOut, BackupTrigger, Status
from api.temporal_links import run_url
from core.settings import Settings
from db.models import BackupExecution
from services import backups

router = APIRouter(prefix="/api/v1/applications/{app_id}/backups", tags=["backups"])


def present(execution: BackupExecution, settings: Settings, **extra: Any) -> dict[str, Any]:
    """The backup with its link into the Temporal UI."""
    link = run_url(settings, execution.workflow_id)
    return BackupOut.of(
        execution, metadata=execution.metadata_, temporal_ui_url=link, **extra
    ).model_dump()


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
    return present(execution, settings)


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
    query = backups.of_application(access.application)
    if status:
        query = query.where(BackupExecution.status == status)
    items, next_cursor = await fetch_page(
        session, query, BackupExecution.created_at, BackupExecution.id, limit, cursor
    )
    for execution in items:
        await settled_view(session, temporal, execution)
    verified = await backups.last_verified(session, [e.id for e in items])
    return {
        "items": [
            present(e, settings, last_verified_by_drill_at=verified.get(e.id)) for e in items
        ],
        "next_cursor": next_cursor,
    }


@router.get("/{backup_id}", response_model=BackupDetail)
async def get_backup(
    backup_id: uuid.UUID,
    access: DedicatedAppReader,
    session: SessionDep,
    settings: SettingsDep,
    request_temporal: OptionalTemporalDep,
) -> dict[str, Any]:
    with refusals():
        execution = await backups.backup_of(session, access.application, backup_id)
    await settled_view(session, request_temporal, execution, timeline_follows=True)
    verified = await backups.last_verified(session, [execution.id])
    body = present(execution, settings, last_verified_by_drill_at=verified.get(execution.id))
    return await with_timeline(body, request_temporal, execution)


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
    return present(execution, settings)


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
    return present(await _set_protection(backup_id, access, session, True), settings)


@router.post("/{backup_id}/unprotect", response_model=BackupOut)
async def unprotect_backup(
    backup_id: uuid.UUID, access: DedicatedAppWriter, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Hands the backup back to the retention rule."""
    return present(await _set_protection(backup_id, access, session, False), settings)
