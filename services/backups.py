"""Backups asked for by a person: a manual run of the application's policy, and protection
from retention.

The run's row, its audit event and its workflow are recorded together: the caller commits
only after Temporal took the run.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from core.states import RunStatus, Trigger
from db import audit
from db.models import Application, BackupExecution, BackupPolicy, RestoreDrill
from schedules.backup_policy import request_for
from services.errors import Conflict, NotFound
from services.runs import claim_application, start_run
from workflows.backup import BackupWorkflow


def of_application(application: Application, status: str | None = None) -> Select[Any]:
    """The application's backups, whatever their policy (policies come and go); only those
    in ``status`` when it is given."""
    query = select(BackupExecution).where(BackupExecution.application_id == application.id)
    return query.where(BackupExecution.status == status) if status else query


async def backup_of(
    session: AsyncSession, application: Application, backup_id: uuid.UUID, *, lock: bool = False
) -> BackupExecution:
    """One of the application's backups (NotFound otherwise); ``lock`` holds its row until
    the transaction ends, so a retention run in progress and this change come in order."""
    query = of_application(application).where(BackupExecution.id == backup_id)
    execution: BackupExecution | None = await session.scalar(
        query.with_for_update() if lock else query
    )
    if execution is None:
        raise NotFound("backup", backup_id)
    return execution


async def recent_successes(
    session: AsyncSession, application: Application, limit: int
) -> list[tuple[datetime, datetime | None, int | None]]:
    """Start, end and size of the application's last ``limit`` successful backups, oldest
    first (the UI's chart of size and duration)."""
    rows = await session.execute(
        select(BackupExecution.started_at, BackupExecution.completed_at, BackupExecution.size_bytes)
        .where(
            BackupExecution.application_id == application.id,
            BackupExecution.status == RunStatus.SUCCEEDED,
        )
        .order_by(BackupExecution.started_at.desc())
        .limit(limit)
    )
    return [(started, done, size) for started, done, size in reversed(rows.all())]


@dataclass(frozen=True)
class Facts:
    """What the protection state of applications is read from, by application: its policy,
    its newest success and failure (by end), its newest running backup (by start)."""

    policies: dict[uuid.UUID, BackupPolicy]
    successes: dict[uuid.UUID, BackupExecution]
    failures: dict[uuid.UUID, BackupExecution]
    running: dict[uuid.UUID, BackupExecution]


async def protection_facts(session: AsyncSession, application_ids: Sequence[uuid.UUID]) -> Facts:
    """One query per kind of fact for all the listed applications, not one per application."""
    policies = {
        p.application_id: p
        for p in await session.scalars(
            select(BackupPolicy).where(BackupPolicy.application_id.in_(application_ids))
        )
    }

    async def newest(status: RunStatus, column: Any) -> dict[uuid.UUID, BackupExecution]:
        rows = await session.scalars(
            select(BackupExecution)
            .where(
                BackupExecution.application_id.in_(application_ids),
                BackupExecution.status == status,
            )
            .ext(distinct_on(BackupExecution.application_id))
            .order_by(BackupExecution.application_id, column.desc().nulls_last())
        )
        return {row.application_id: row for row in rows}

    return Facts(
        policies,
        await newest(RunStatus.SUCCEEDED, BackupExecution.completed_at),
        await newest(RunStatus.FAILED, BackupExecution.completed_at),
        await newest(RunStatus.RUNNING, BackupExecution.started_at),
    )


async def last_verified(
    session: AsyncSession, backup_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, datetime]:
    """When a successful restore drill last proved each of these backups."""
    rows = await session.execute(
        select(RestoreDrill.backup_execution_id, func.max(RestoreDrill.completed_at))
        .where(
            RestoreDrill.backup_execution_id.in_(backup_ids),
            RestoreDrill.status == RunStatus.SUCCEEDED,
        )
        .group_by(RestoreDrill.backup_execution_id)
    )
    return {backup: at for backup, at in rows if backup is not None and at is not None}


async def request_backup(
    session: AsyncSession,
    temporal: Client,
    actor: audit.Actor,
    application: Application,
    idempotency_key: str | None,
) -> BackupExecution:
    """Starts a backup with the policy's settings now; the same key returns the same run.

    Refusals: Conflict ``policy-required``, and services.runs' RunInProgress,
    LivenessUnknown, RunNotStarted.
    """
    policy = await session.scalar(
        select(BackupPolicy).where(BackupPolicy.application_id == application.id)
    )
    if policy is None:
        raise Conflict(
            "the application has no backup policy; create one (it names the storage) first",
            "policy-required",
            "No backup policy",
        )
    if idempotency_key:
        earlier: BackupExecution | None = await session.scalar(
            of_application(application).where(BackupExecution.idempotency_key == idempotency_key)
        )
        if earlier is not None:
            return earlier
    await claim_application(session, temporal, application.id)
    execution_id = uuid.uuid4()
    workflow_id = f"backup-{execution_id}"
    execution = BackupExecution(
        id=execution_id,
        policy_id=policy.id,
        application_id=application.id,
        storage_id=policy.storage_id,
        workflow_id=workflow_id,
        trigger=Trigger.MANUAL,
        idempotency_key=idempotency_key,
        status=RunStatus.RUNNING,
        started_at=datetime.now(UTC),
    )
    session.add(execution)
    audit.record(
        session,
        actor,
        "backup.trigger",
        "backup_execution",
        execution_id,
        workspace_id=application.workspace_id,
        details={"workflow_id": workflow_id},
    )
    await session.flush()
    request = request_for(policy, application, Trigger.MANUAL)
    request.execution_id = str(execution_id)
    handle = await start_run(temporal, BackupWorkflow.run, [request], workflow_id, application)
    execution.run_id = handle.first_execution_run_id
    return execution


async def set_protection(
    session: AsyncSession,
    actor: audit.Actor,
    application: Application,
    backup_id: uuid.UUID,
    protect: bool,
) -> BackupExecution:
    """Protects or unprotects; the row lock orders this against a retention run in progress
    (NotFound, or Conflict for a backup that did not succeed).

    Asking for the state the backup already has changes and audits nothing.
    """
    execution = await backup_of(session, application, backup_id, lock=True)
    if execution.protected == protect:
        return execution
    if protect and execution.status != RunStatus.SUCCEEDED:
        raise Conflict(
            f"the backup is {execution.status}; only a succeeded backup holds data to protect",
            backup_status=execution.status,
        )
    execution.protected = protect
    execution.protected_by = actor.label if protect else None
    execution.protected_at = datetime.now(UTC) if protect else None
    audit.record(
        session,
        actor,
        "backup.protect" if protect else "backup.unprotect",
        "backup_execution",
        execution.id,
        workspace_id=application.workspace_id,
    )
    return execution
