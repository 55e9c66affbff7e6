"""The run reconciler's step: rows still running whose workflow has closed get its outcome.

A run records its own outcome; this catches what a run could not record: a workflow
terminated by an operator, a run whose recording outlived its budget during a database
outage, a row created by a request whose workflow vanished.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from contracts.notify import FailureEvent
from core import metrics
from core.run_outcome import Outcome, outcome
from core.states import RunStatus
from db import audit
from db.models import BackupExecution, BackupRestore, RestoreDrill
from db.runs import RUNNING_BACKUP, RUNNING_DRILL, RUNNING_RESTORE, Run, Settled, settle

ACTOR = audit.Actor(label="system:run-reconciler")
BATCH = 200


def _verdict(found: Outcome) -> tuple[RunStatus, str]:
    if found.status == RunStatus.SUCCEEDED:
        # A run writes its own success before its workflow completes; a completed workflow
        # with a running row means the record was lost, and a backup is not trusted unproven.
        return (
            RunStatus.FAILED,
            "the workflow completed but its outcome was never recorded; run it again",
        )
    return found.status, f"settled from Temporal: {found.reason}"


class RunActivities:
    def __init__(self, client: Client, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.client = client
        self.sessions = sessions

    @activity.defn
    async def settle_closed_runs(self) -> list[FailureEvent]:
        """Settles every stale running row whose workflow is closed; returns what to alert."""
        # Every visible row has a started workflow: the API commits a row only after its
        # workflow started, and a scheduled run's row is made by its own first step.
        settled: list[Settled] = []
        async with self.sessions() as session:
            stale: list[Run] = [
                *await session.scalars(
                    select(BackupExecution)
                    .where(BackupExecution.status.in_(RUNNING_BACKUP))
                    .limit(BATCH)
                ),
                *await session.scalars(
                    select(BackupRestore)
                    .where(BackupRestore.status.in_(RUNNING_RESTORE))
                    .limit(BATCH)
                ),
                *await session.scalars(
                    select(RestoreDrill).where(RestoreDrill.status.in_(RUNNING_DRILL)).limit(BATCH)
                ),
            ]
            for stale_row in stale:
                activity.heartbeat()
                found = await self._closed(stale_row.workflow_id, stale_row.run_id)
                if found is not None:
                    ended = await settle(session, stale_row, *_verdict(found), ACTOR)
                    settled += [ended] if ended else []
            await session.commit()
        for row in settled:
            metrics.count_unsuccessful(row.kind, row.trigger, row.started_at)
            activity.logger.warning(
                "settled %s %s as %s: %s", row.kind, row.id, row.status, row.message
            )
        return [
            FailureEvent(
                row.kind,
                row.id,
                row.application_id,
                row.workspace_id,
                row.workflow_id,
                row.status,
                row.message or row.status,
                row.trigger,
            )
            for row in settled
        ]

    async def _closed(self, workflow_id: str | None, run_id: str | None) -> Outcome | None:
        if not workflow_id:
            return Outcome(RunStatus.FAILED, "the run has no workflow id")
        return await outcome(self.client, workflow_id, run_id)
