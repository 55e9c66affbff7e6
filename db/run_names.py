"""The names a run is about, read from the metadata database for its Temporal UI text
(``core/run_summary.py`` words it; this module only queries)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import run_summary
from core.restore_details import RestoreDetails
from core.run_summary import Names, RunText
from db.models import (
    Application,
    BackupExecution,
    BackupRestore,
    BackupStorage,
    RestoreDrill,
    Workspace,
)


async def lookup(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    application_id: uuid.UUID | None = None,
    storage_id: uuid.UUID | None = None,
) -> Names:
    """The names of a run's workspace, application and storage (ids for rows not found)."""
    workspace = await session.scalar(select(Workspace.name).where(Workspace.id == workspace_id))
    application = storage = None
    if application_id is not None:
        application = await session.scalar(
            select(Application.name).where(Application.id == application_id)
        )
    if storage_id is not None:
        storage = await session.scalar(
            select(BackupStorage.name).where(BackupStorage.id == storage_id)
        )
    return Names(
        workspace=workspace or str(workspace_id),
        application=application or (str(application_id) if application_id else None),
        storage=storage or (str(storage_id) if storage_id else None),
    )


async def for_run(session: AsyncSession, application: Application, workflow_id: str) -> RunText:
    """The text of the backup, restore or drill whose row (already flushed) has
    ``workflow_id``."""
    execution = await session.scalar(
        select(BackupExecution).where(BackupExecution.workflow_id == workflow_id)
    )
    if execution is not None:
        names = await lookup(
            session, application.workspace_id, application.id, execution.storage_id
        )
        return run_summary.backup(names, execution.trigger)
    restore_row = await session.scalar(
        select(BackupRestore).where(BackupRestore.workflow_id == workflow_id)
    )
    if restore_row is not None:
        source = (  # None: a restore to a moment, from no one backup
            await session.get(BackupExecution, restore_row.backup_execution_id)
            if restore_row.backup_execution_id
            else None
        )
        names = await lookup(
            session, application.workspace_id, application.id, source.storage_id if source else None
        )
        parts, into = run_summary.restored(RestoreDetails.from_dict(restore_row.details))
        return run_summary.restore(
            names,
            restore_row.restore_type,
            parts,
            into,
            run_summary.taken(source.started_at if source else None),
        )
    drill_row = await session.scalar(
        select(RestoreDrill).where(RestoreDrill.workflow_id == workflow_id)
    )
    if drill_row is None:
        raise LookupError(f"no backup, restore or drill row has workflow id {workflow_id}")
    source = (
        await session.get(BackupExecution, drill_row.backup_execution_id)
        if drill_row.backup_execution_id
        else None
    )
    names = await lookup(
        session, application.workspace_id, application.id, source.storage_id if source else None
    )
    return run_summary.drill(
        names, drill_row.trigger, run_summary.taken(source.started_at if source else None)
    )
