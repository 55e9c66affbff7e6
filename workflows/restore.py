"""The restore of one application from one backup; the application is resumed whatever happens."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.restore import RestoreActivities
    from contracts.notify import FailureEvent
    from contracts.restore import FinishRestore, RestorePlan, VolumeJob
    from core.settings import DATA_TASK_QUEUE
    from workflows.shared import (
        BEGIN_BUDGET,
        DATA,
        HEARTBEAT,
        LONG,
        METADATA,
        METADATA_BUDGET,
        METADATA_STEP,
        RUN_ERRORS,
        alert,
        checkpoint,
        ended_by,
        reason,
    )


# A cancelled step must have stopped before the application is resumed or the run recorded:
# nothing may still write into the application's data afterwards.
WAIT = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
# Starting the application again is tried for about a minute; then the restore says loudly
# that the application is down instead of hanging in "resume".
RESUME = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=15),
    maximum_attempts=6,
)  # fmt: skip


@workflow.defn
class RestoreWorkflow:
    def __init__(self) -> None:
        self.step = "starting"
        self.notes: dict[str, str] = {}
        self.resume_error: str | None = None

    @workflow.query
    def current_step(self) -> str:
        return self.step

    @workflow.run
    async def run(self, restore_id: str, application_id: str, workspace_id: str) -> str:
        try:
            # Every step, the first included, is inside the failure handling.
            self.step = "begin"
            plan = await workflow.execute_activity_method(
                RestoreActivities.begin_restore, restore_id,
                start_to_close_timeout=METADATA_STEP, schedule_to_close_timeout=BEGIN_BUDGET,
                retry_policy=METADATA,
            )  # fmt: skip
            await self._restore(plan)
            checkpoint()  # a cancelled run never records success
        except RUN_ERRORS as error:
            status, message = ended_by(error, self.step)
            if self.resume_error:
                message += f"; the application was NOT started again: {self.resume_error}"
            if await self._finish(restore_id, status, message):
                await alert(
                    FailureEvent("restore", restore_id, application_id, workspace_id,
                                 workflow.info().workflow_id, status, message)
                )  # fmt: skip
            raise
        if not await self._finish(restore_id, "succeeded", None, swallow=False):
            workflow.logger.warning("restore %s had been settled already", restore_id)
        return restore_id

    async def _restore(self, plan: RestorePlan) -> None:
        self.step = "verify backup"
        self.notes["verify"] = await workflow.execute_activity_method(
            RestoreActivities.verify_backup, plan.restore_id, summary="verify the backup",
            task_queue=DATA_TASK_QUEUE,
            start_to_close_timeout=LONG, heartbeat_timeout=HEARTBEAT, retry_policy=DATA,
        )  # fmt: skip
        failed = False
        try:
            # Inside the try: once a stop was attempted, the application is always resumed.
            self.step = "quiesce"
            self.notes["quiesce"] = await workflow.execute_activity_method(
                RestoreActivities.quiesce, plan.restore_id,
                start_to_close_timeout=timedelta(minutes=10), retry_policy=DATA,
                heartbeat_timeout=HEARTBEAT, cancellation_type=WAIT,
            )  # fmt: skip
            checkpoint()
            if plan.database:
                self.step = "restore database"
                self.notes["database"] = await workflow.execute_activity_method(
                    RestoreActivities.restore_database, plan.restore_id,
                    summary="restore the database",
                    task_queue=DATA_TASK_QUEUE, start_to_close_timeout=LONG,
                    heartbeat_timeout=HEARTBEAT, retry_policy=DATA, cancellation_type=WAIT,
                )  # fmt: skip
                checkpoint()
            for volume in plan.volumes:
                self.step = f"restore volume {volume}"
                self.notes[f"volume:{volume}"] = await workflow.execute_activity_method(
                    RestoreActivities.restore_volume, VolumeJob(plan.restore_id, volume),
                    summary=f"restore volume {volume}",
                    task_queue=DATA_TASK_QUEUE, start_to_close_timeout=LONG,
                    heartbeat_timeout=HEARTBEAT, retry_policy=DATA, cancellation_type=WAIT,
                )  # fmt: skip
                checkpoint()
            self.step = "verify result"
            await workflow.execute_activity_method(
                RestoreActivities.verify_restore, plan.restore_id,
                summary="verify the restored data", task_queue=DATA_TASK_QUEUE,
                start_to_close_timeout=timedelta(hours=1), heartbeat_timeout=HEARTBEAT,
                retry_policy=DATA,
            )  # fmt: skip
        except RUN_ERRORS:
            failed = True
            raise
        finally:
            # Resume in every outcome: success, failure or cancel.
            step, self.step = self.step, "resume"
            try:
                self.notes["resume"] = await workflow.execute_activity_method(
                    RestoreActivities.resume, plan.restore_id,
                    start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=HEARTBEAT,
                    retry_policy=RESUME,
                )  # fmt: skip
            except ActivityError as error:
                if not failed:
                    raise  # the restore itself worked; the run fails in step "resume"
                self.resume_error = reason(error)
                self.notes["resume"] = f"failed: {self.resume_error}"
            self.step = step

    async def _finish(
        self, restore_id: str, status: str, message: str | None, swallow: bool = True
    ) -> bool:
        """Records the outcome; True when this call ended the row (so it alerts once)."""
        try:
            return await workflow.execute_activity_method(
                RestoreActivities.finish_restore,
                FinishRestore(restore_id, status, message, self.notes),
                start_to_close_timeout=METADATA_STEP, schedule_to_close_timeout=METADATA_BUDGET,
                retry_policy=METADATA,
            )  # fmt: skip
        except ActivityError as error:
            if not swallow:
                raise
            # The run still ends with its own error; the reconciler settles the row later.
            workflow.logger.error("the outcome could not be recorded: %s", reason(error))
            return False
