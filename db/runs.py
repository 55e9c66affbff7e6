"""The one way a backup or restore row ends: status, reason, time and audit in one transaction.

Settling needs nothing but the metadata database (no restic, no platform, no secrets), so
it cannot fail for the reason the run failed. A row that already ended is left alone: the
first truthful outcome wins, whoever records it (the run itself or the reconciler).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from core.run_outcome import is_live, shorten
from core.states import LIVE, RunStatus, Trigger
from db import audit
from db.models import Application, BackupExecution, BackupRestore, RestoreDrill

# A backup row is made when its run starts; a restore or drill row waits ``pending`` first.
RUNNING_BACKUP = (RunStatus.RUNNING,)
RUNNING_RESTORE = LIVE
RUNNING_DRILL = LIVE
Run = BackupExecution | BackupRestore | RestoreDrill
# per table: the kind a run is called by (audit actions, alerts), its audit target, and the
# statuses that mean it is still under way
_KINDS: dict[type, tuple[str, str, tuple[str, ...]]] = {
    BackupExecution: ("backup", "backup_execution", RUNNING_BACKUP),
    BackupRestore: ("restore", "backup_restore", RUNNING_RESTORE),
    RestoreDrill: ("drill", "restore_drill", RUNNING_DRILL),
}


@dataclass(frozen=True)
class Settled:
    """A row that this call moved to its final status (for metrics and the failure alert)."""

    kind: str  # backup | restore | drill
    id: str
    application_id: str
    workspace_id: str
    workflow_id: str
    status: RunStatus
    message: str | None
    trigger: Trigger | None
    started_at: datetime | None


async def _workspace_of(session: AsyncSession, application_id: uuid.UUID) -> uuid.UUID:
    workspace_id = await session.scalar(
        select(Application.workspace_id).where(Application.id == application_id)
    )
    assert workspace_id is not None  # rows cascade with their application
    return workspace_id


def kind_of(row: Run) -> tuple[str, str]:
    """The run's kind (backup, restore, drill) and its audit target type."""
    kind, target, _ = _KINDS[type(row)]
    return kind, target


def still_running(row: Run) -> bool:
    """Whether the row says its run is under way (a restore or drill may still be pending)."""
    return row.status in _KINDS[type(row)][2]


async def settle(
    session: AsyncSession,
    row: Run,
    status: RunStatus,
    message: str | None,
    actor: audit.Actor,
) -> Settled | None:
    """Ends a backup, restore or drill row that is still under way (the caller commits).

    None if the row had ended already: the first truthful outcome stays.
    """
    if not still_running(row):
        return None
    kind, target, _ = _KINDS[type(row)]
    message = shorten(message) if message else None
    row.status, row.error_message = status, message
    row.completed_at = datetime.now(UTC)
    workspace_id = await _workspace_of(session, row.application_id)
    audit.record(
        session,
        actor,
        f"{kind}.{status}",
        target,
        row.id,
        workspace_id=workspace_id,
        details={"message": message, "workflow_id": row.workflow_id} if message else {},
    )
    trigger = None if isinstance(row, BackupRestore) else Trigger(row.trigger)
    return Settled(
        kind,
        str(row.id),
        str(row.application_id),
        str(workspace_id),
        row.workflow_id or "",
        status,
        message,
        trigger,
        row.started_at,
    )


async def lock_application(session: AsyncSession, application_id: uuid.UUID) -> None:
    """Serialises run starts of one application (API and workflow take the same lock)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"backup:{application_id}"}
    )


async def live_run_of(
    session: AsyncSession,
    client: Client,
    application_id: uuid.UUID,
    exclude: uuid.UUID | None = None,
) -> str | None:
    """The workflow id of a backup or restore of the app that is really running, if any.

    A row that still says running while Temporal has closed its workflow does not count:
    the reconciler settles it, and it must not block the application's next run.
    """
    backups = select(BackupExecution.workflow_id, BackupExecution.run_id).where(
        BackupExecution.application_id == application_id,
        BackupExecution.status.in_(RUNNING_BACKUP),
    )
    if exclude is not None:
        backups = backups.where(BackupExecution.id != exclude)
    restores = select(BackupRestore.workflow_id, BackupRestore.run_id).where(
        BackupRestore.application_id == application_id,
        BackupRestore.status.in_(RUNNING_RESTORE),
    )
    if exclude is not None:
        restores = restores.where(BackupRestore.id != exclude)
    for workflow_id, run_id in [*await session.execute(backups), *await session.execute(restores)]:
        if await is_live(client, workflow_id, run_id):
            return workflow_id or "starting"
    return None


async def newest_success(
    session: AsyncSession, application_id: uuid.UUID
) -> BackupExecution | None:
    """The application's newest successful backup: never pruned, and the size of the next."""
    found: BackupExecution | None = await session.scalar(
        select(BackupExecution)
        .where(
            BackupExecution.application_id == application_id,
            BackupExecution.status == RunStatus.SUCCEEDED,
        )
        .order_by(BackupExecution.completed_at.desc())
        .limit(1)
    )
    return found
