"""A restore of an application's database to a moment, from its WAL archive (docs/pitr.md).

Its own workflow, not a branch of RestoreWorkflow: it has no backup to verify. Into a new
database it leaves the live application alone, so nothing is stopped or resumed. Over the
live database (``in_place``) the moment is recovered beside it and verified first, with the
application running; only then is it stopped, the copy swapped in and the application
started again, so a failure before the swap leaves the live database as it was (the copy is
dropped after the outcome is recorded).

The in-place steps run only in runs started with ``in_place``, which no run recorded before
them was: runs into a new database issue the same commands as before, so no patch is needed.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.restore import FinishRestore
    from core.states import RunStatus
    from repository.names import DATABASE
    from workflows import steps
    from workflows.failures import RUN_ERRORS, alert_restore, checkpoint, ended_by, reason
    from workflows.step_kinds import (
        BEGIN,
        CLEANUP,
        PLATFORM,
        PREPARE,
        RECORD,
        RESUME,
        TRANSFER,
        WAIT,
    )
    from workflows.steps import NONE, Step

begin_restore_to_time = Step[str, None]("begin_restore_to_time", NONE)
restore_to_time = Step[str, str]("restore_to_time", str)
swap_in_moment = Step[str, str]("swap_in_moment", str)
abandon_moment = Step[str, str]("abandon_moment", str)


@workflow.defn
class RestoreToTimeWorkflow:
    def __init__(self) -> None:
        self.step = "starting"
        self.notes: dict[str, str] = {}
        self.resume_error: str | None = None

    @workflow.query
    def current_step(self) -> str:
        return self.step

    @workflow.run
    async def run(
        self, restore_id: str, application_id: str, workspace_id: str, in_place: bool = False
    ) -> str:
        try:
            self.step = "begin"
            await begin_restore_to_time(restore_id, **BEGIN)
            self.step = "restore to a moment"
            self.notes[DATABASE] = await restore_to_time(
                restore_id, summary="recover and move out", cancellation_type=WAIT, **TRANSFER
            )
            checkpoint()
            if in_place:
                await self._swap_in(restore_id)
                checkpoint()
        except RUN_ERRORS as error:
            status, message = ended_by(error, self.step)
            if self.resume_error:
                message += f"; the application was NOT started again: {self.resume_error}"
            ended = await self._finish(restore_id, status, message)
            if in_place:
                await self._abandon(restore_id)
            if ended:
                await alert_restore(restore_id, application_id, workspace_id, status, message)
            raise
        await self._finish(restore_id, RunStatus.SUCCEEDED, None)
        return restore_id

    async def _swap_in(self, restore_id: str) -> None:
        """The verified copy swapped in while the application is stopped; it is started
        again in every outcome once a stop was attempted (as RestoreWorkflow does)."""
        failed = False
        try:
            self.step = "quiesce"
            self.notes["quiesce"] = await steps.quiesce(
                restore_id, cancellation_type=WAIT, **PLATFORM
            )
            checkpoint()
            self.step = "swap in"
            self.notes["swap"] = await swap_in_moment(
                restore_id, summary="swap the copy in", cancellation_type=WAIT, **PREPARE
            )
        except RUN_ERRORS:
            failed = True
            raise
        finally:
            step, self.step = self.step, "resume"
            try:
                self.notes["resume"] = await steps.resume(restore_id, **RESUME)
            except ActivityError as error:
                if not failed:
                    raise  # the swap itself worked; the run fails in step "resume"
                self.resume_error = reason(error)
                self.notes["resume"] = f"failed: {self.resume_error}"
            self.step = step

    async def _abandon(self, restore_id: str) -> None:
        """Best effort after the outcome is recorded: the copy beside the live database goes
        (and a swap stopped half way is undone); a swap that finished is kept."""
        try:
            await asyncio.shield(asyncio.ensure_future(abandon_moment(restore_id, **CLEANUP)))
        except ActivityError as error:
            workflow.logger.warning("the restored copy was not removed: %s", reason(error))

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
