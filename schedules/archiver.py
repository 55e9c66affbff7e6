"""An application's archiver workflow kept equal to its policy's ``continuous_archiving``.

Like a policy's schedule, the archiver is started (or cancelled) before the policy's row
commits, so a policy is never saved with archiving on and no archiver asked for;
``reconcile`` starts the archiver of every policy with archiving on that has none running
(a crash between the two, a workflow terminated by hand).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from contracts.archive import ARCHIVER_WORKFLOW, ArchiverJob, archiver_id
from contracts.task_queues import CONTROL_TASK_QUEUE
from db.models import BackupPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchiverState:
    running: bool
    started_at: datetime | None  # of the run now going (each stretch is a new run)


async def start(client: Client, application_id: object) -> None:
    """Starts the archiver; one already running is kept as it is."""
    await client.start_workflow(
        ARCHIVER_WORKFLOW,
        ArchiverJob(str(application_id)),
        id=archiver_id(application_id),
        task_queue=CONTROL_TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def stop(client: Client, application_id: object) -> bool:
    """Cancels the archiver (it stops the stream, then drops its slot); False: none ran."""
    try:
        await client.get_workflow_handle(archiver_id(application_id)).cancel()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # never started, or already closed
            return False
        raise
    return True


async def state(client: Client, application_id: object) -> ArchiverState:
    try:
        described = await client.get_workflow_handle(archiver_id(application_id)).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return ArchiverState(False, None)
        raise
    running = described.status == WorkflowExecutionStatus.RUNNING
    return ArchiverState(running, described.start_time if running else None)


async def reconcile(client: Client, sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    """Starts the missing archiver of every policy with archiving on; the ids started."""
    async with sessions() as session:
        wanted = list(
            await session.scalars(
                select(BackupPolicy.application_id).where(BackupPolicy.continuous_archiving)
            )
        )
    started = []
    for application_id in wanted:
        if not (await state(client, application_id)).running:
            await start(client, application_id)
            started.append(archiver_id(application_id))
    if started:
        log.warning("archivers started again: %s", started)
    return started
