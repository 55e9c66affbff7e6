"""Backups of an application: manual trigger, history, step timeline, cancel."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sqlalchemy import func, select
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
from api.problems import Problem, conflict, not_found
from api.runs import cancel_run, refuse_if_busy, settled_view, start_run, with_timeline
from api.schemas.backups import BackupDetail, BackupOut, BackupTrigger, Status
from api.temporal_links import workflow_url
from core.settings import Settings
from db import audit
from db.models import Application, BackupExecution, BackupPolicy, RestoreDrill
from schedules.backup_policy import request_for
from workflows.backup import BackupWorkflow

router = APIRouter(prefix="/api/v1/applications/{app_id}/backups", tags=["backups"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="a retried POST with the same key returns the same run",
    ),
]


def present(
    execution: BackupExecution, application_id: uuid.UUID, settings: Settings
) -> dict[str, Any]:
    return {
        **{c.key: getattr(execution, c.key) for c in BackupExecution.__mapper__.column_attrs},
        "metadata": execution.metadata_,
        "application_id": application_id,
        "temporal_ui_url": workflow_url(settings, execution.workflow_id)
        if execution.workflow_id
        else None,
    }


async def last_verified(
    session: AsyncSession, backup_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, datetime]:
    """When a successful restore drill last proved each of these backups."""
    rows = await session.execute(
        select(RestoreDrill.backup_execution_id, func.max(RestoreDrill.completed_at))
        .where(RestoreDrill.backup_execution_id.in_(backup_ids), RestoreDrill.status == "succeeded")
        .group_by(RestoreDrill.backup_execution_id)
    )
    return {backup: at for backup, at in rows if backup is not None and at is not None}


def _of_application(application: Application) -> Any:
    return select(BackupExecution).where(BackupExecution.application_id == application.id)


@router.post("", status_code=202, response_model=BackupOut)
async def trigger_backup(
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    idempotency_key: IdempotencyKey = None,
    body: BackupTrigger | None = None,
) -> dict[str, Any]:
    application = access.application
    policy = await session.scalar(
        select(BackupPolicy).where(BackupPolicy.application_id == application.id)
    )
    if policy is None:
        raise Problem(
            409,
            "policy-required",
            "No backup policy",
            "the application has no backup policy; create one (it names the storage) first",
        )
    if idempotency_key:
        earlier = await session.scalar(
            select(BackupExecution).where(
                BackupExecution.application_id == application.id,
                BackupExecution.idempotency_key == idempotency_key,
            )
        )
        if earlier is not None:
            return present(earlier, application.id, settings)
    await refuse_if_busy(session, temporal, application, "backup")
    execution_id = uuid.uuid4()
    workflow_id = f"backup-{execution_id}"
    execution = BackupExecution(
        id=execution_id,
        policy_id=policy.id,
        application_id=application.id,
        storage_id=policy.storage_id,
        workflow_id=workflow_id,
        trigger="manual",
        idempotency_key=idempotency_key,
        status="running",
        started_at=datetime.now(UTC),
    )
    session.add(execution)
    audit.record(
        session, access.workspace.principal.actor, "backup.trigger", "backup_execution",
        execution_id, workspace_id=application.workspace_id, details={"workflow_id": workflow_id},
    )  # fmt: skip
    await session.flush()
    request = request_for(policy, application, "manual")
    request.execution_id = str(execution_id)
    handle = await start_run(
        temporal, BackupWorkflow.run, [request], workflow_id, application, "backup"
    )
    execution.run_id = handle.first_execution_run_id
    await session.commit()
    return present(execution, application.id, settings)


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
    query = _of_application(access.application)
    if status:
        query = query.where(BackupExecution.status == status)
    items, next_cursor = await fetch_page(
        session, query, BackupExecution.created_at, BackupExecution.id, limit, cursor
    )
    for execution in items:
        await settled_view(session, temporal, execution)
    verified = await last_verified(session, [e.id for e in items])
    return {
        "items": [
            {
                **present(e, access.application.id, settings),
                "last_verified_by_drill_at": verified.get(e.id),
            }
            for e in items
        ],
        "next_cursor": next_cursor,
    }


async def backup_of(
    session: AsyncSession, application: Application, backup_id: uuid.UUID
) -> BackupExecution:
    execution: BackupExecution | None = await session.scalar(
        _of_application(application).where(BackupExecution.id == backup_id)
    )
    if execution is None:
        raise not_found("backup", backup_id)
    return execution


@router.get("/{backup_id}", response_model=BackupDetail)
async def get_backup(
    backup_id: uuid.UUID,
    access: DedicatedAppReader,
    session: SessionDep,
    settings: SettingsDep,
    request_temporal: OptionalTemporalDep,
) -> dict[str, Any]:
    execution = await backup_of(session, access.application, backup_id)
    await settled_view(session, request_temporal, execution)
    body = present(execution, access.application.id, settings)
    verified = await last_verified(session, [execution.id])
    body["last_verified_by_drill_at"] = verified.get(execution.id)
    return await with_timeline(body, request_temporal, execution.workflow_id, execution.run_id)


@router.post("/{backup_id}/cancel", status_code=202, response_model=BackupOut)
async def cancel_backup(
    backup_id: uuid.UUID,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    execution = await backup_of(session, access.application, backup_id)
    await cancel_run(
        session, temporal, execution, access.workspace.principal.actor,
        access.application.workspace_id,
    )  # fmt: skip
    return present(execution, access.application.id, settings)


async def _set_protection(
    backup_id: uuid.UUID, access: ApplicationAccess, session: AsyncSession, protect: bool
) -> BackupExecution:
    """Protects or unprotects; the row lock orders this against a retention run in progress."""
    execution: BackupExecution | None = await session.scalar(
        _of_application(access.application).where(BackupExecution.id == backup_id).with_for_update()
    )
    if execution is None:
        raise not_found("backup", backup_id)
    if execution.protected == protect:
        return execution  # idempotent: nothing changes, nothing is audited
    if protect and execution.status != "succeeded":
        raise conflict(
            f"the backup is {execution.status}; only a succeeded backup holds data to protect",
            backup_status=execution.status,
        )
    actor = access.workspace.principal.actor
    execution.protected = protect
    execution.protected_by = actor.label if protect else None
    execution.protected_at = datetime.now(UTC) if protect else None
    audit.record(
        session, actor, "backup.protect" if protect else "backup.unprotect", "backup_execution",
        execution.id, workspace_id=access.application.workspace_id,
    )  # fmt: skip
    await session.commit()
    return execution


@router.post("/{backup_id}/protect", response_model=BackupOut)
async def protect_backup(
    backup_id: uuid.UUID, access: DedicatedAppWriter, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Retention never prunes a protected backup; its storage is not deleted without force."""
    execution = await _set_protection(backup_id, access, session, True)
    return present(execution, access.application.id, settings)


@router.post("/{backup_id}/unprotect", response_model=BackupOut)
async def unprotect_backup(
    backup_id: uuid.UUID, access: DedicatedAppWriter, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Hands the backup back to the retention rule."""
    execution = await _set_protection(backup_id, access, session, False)
    return present(execution, access.application.id, settings)
