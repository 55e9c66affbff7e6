"""A restore of an application's database to a moment, from its WAL archive (docs/pitr.md).

Its own workflow, not a branch of RestoreWorkflow: it has no backup to verify and leaves the
live application alone (the database goes into a new one), so nothing is stopped or resumed.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.restore import FinishRestore
    from core.states import RunStatus
    from workflows import steps
    from workflows.failures import RUN_ERRORS, alert_restore, checkpoint, ended_by, reason
    from workflows.step_kinds import BEGIN, RECORD, TRANSFER, WAIT
    from workflows.steps import NONE, Step

begin_restore_to_time = Step[str, None]("begin_restore_to_time", NONE)
restore_to_time = Step[str, str]("restore_to_time", str)


@workflow.defn
class RestoreToTimeWorkflow:
    def __init__(self) -> None:
        self.step = "starting"
        self.notes: dict[str, str] = {}

    @workflow.query
    def current_step(self) -> str:
        return self.step

    @workflow.run
    async def run(self, restore_id: str, application_id: str, workspace_id: str) -> str:
        try:
            self.step = "begin"
            await begin_restore_to_time(restore_id, **BEGIN)
            self.step = "restore to a moment"
            self.notes["database"] = await restore_to_time(
                restore_id, summary="recover and move out", cancellation_type=WAIT, **TRANSFER
            )
            checkpoint()
        except RUN_ERRORS as error:
            status, message = ended_by(error, self.step)
            if await self._finish(restore_id, status, message):
                await alert_restore(restore_id, application_id, workspace_id, status, message)
            raise
        await self._finish(restore_id, RunStatus.SUCCEEDED, None)
        return restore_id

    async def _finish(self, restore_id: str, status: RunStatus, message: str | None) -> bool:
        """Records the outcome; True when this call ended the row (so it alerts once)."""
        try:
            return await steps.finish_restore(
                FinishRestore(restore_id, status, message, self.notes), **RECORD
            )
        except ActivityError as error:
            # the run still ends with its own outcome; the reconciler settles the row later
            workflow.logger.error("the outcome could not be recorded: %s", reason(error))
            return False
