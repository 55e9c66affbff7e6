"""The restore of one application from one backup; the application is resumed whatever happens."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.notify import FailureEvent, Notifier
    from activities.restore import FinishRestore, RestoreActivities, RestorePlan, VolumeJob
    from core.settings import DATA_TASK_QUEUE
    from workflows.shared import BEGIN, DATA, HEARTBEAT, LONG, NOTIFY, QUICK, reason


# A cancelled step must have stopped before the application is resumed or the run recorded:
# nothing may still write into the application's data afterwards.
WAIT = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED


@workflow.defn
class RestoreWorkflow:
    def __init__(self) -> None:
        self.step = "starting"
        self.notes: dict[str, str] = {}

    @workflow.query
    def current_step(self) -> str:
        return self.step

    @workflow.run
    async def run(self, restore_id: str, application_id: str, workspace_id: str) -> str:
        self.step = "begin"
        plan = await workflow.execute_activity_method(
            RestoreActivities.begin_restore, restore_id,
            start_to_close_timeout=timedelta(seconds=60), retry_policy=BEGIN,
        )  # fmt: skip
        try:
            await self._restore(plan)
        except (ActivityError, CancelledError, asyncio.CancelledError) as error:
            cancelled = isinstance(error, (CancelledError, asyncio.CancelledError)) or (
                isinstance(error, ActivityError) and isinstance(error.cause, CancelledError)
            )
            status = "cancelled" if cancelled else "failed"
            message = (
                f"cancelled during {self.step}" if cancelled else f"{self.step}: {reason(error)}"
            )
            await self._finish(restore_id, status, message)
            await workflow.execute_activity_method(
                Notifier.notify_failure,
                FailureEvent("restore", restore_id, application_id, workspace_id,
                             workflow.info().workflow_id, status, message),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY,
            )  # fmt: skip
            raise
        await self._finish(restore_id, "succeeded", None)
        return restore_id

    async def _restore(self, plan: RestorePlan) -> None:
        self.step = "verify backup"
        self.notes["verify"] = await workflow.execute_activity_method(
            RestoreActivities.verify_backup, plan.restore_id, task_queue=DATA_TASK_QUEUE,
            start_to_close_timeout=LONG, heartbeat_timeout=HEARTBEAT, retry_policy=DATA,
        )  # fmt: skip
        try:
            # Inside the try: once a stop was attempted, the application is always resumed.
            self.step = "quiesce"
            self.notes["quiesce"] = await workflow.execute_activity_method(
                RestoreActivities.quiesce, plan.restore_id,
                start_to_close_timeout=timedelta(minutes=10), retry_policy=DATA,
                heartbeat_timeout=HEARTBEAT, cancellation_type=WAIT,
            )  # fmt: skip
            if plan.database:
                self.step = "restore database"
                self.notes["database"] = await workflow.execute_activity_method(
                    RestoreActivities.restore_database, plan.restore_id,
                    task_queue=DATA_TASK_QUEUE, start_to_close_timeout=LONG,
                    heartbeat_timeout=HEARTBEAT, retry_policy=DATA, cancellation_type=WAIT,
                )  # fmt: skip
            for volume in plan.volumes:
                self.step = f"restore volume {volume}"
                self.notes[f"volume:{volume}"] = await workflow.execute_activity_method(
                    RestoreActivities.restore_volume, VolumeJob(plan.restore_id, volume),
                    task_queue=DATA_TASK_QUEUE, start_to_close_timeout=LONG,
                    heartbeat_timeout=HEARTBEAT, retry_policy=DATA, cancellation_type=WAIT,
                )  # fmt: skip
            self.step = "verify result"
            await workflow.execute_activity_method(
                RestoreActivities.verify_restore, plan.restore_id, task_queue=DATA_TASK_QUEUE,
                start_to_close_timeout=timedelta(hours=1), retry_policy=DATA,
            )  # fmt: skip
        finally:
            # Resume in every outcome: success, failure or cancel.
            step, self.step = self.step, "resume"
            self.notes["resume"] = await workflow.execute_activity_method(
                RestoreActivities.resume, plan.restore_id,
                start_to_close_timeout=timedelta(minutes=10), retry_policy=QUICK,
            )  # fmt: skip
            self.step = step

    async def _finish(self, restore_id: str, status: str, message: str | None) -> None:
        await workflow.execute_activity_method(
            RestoreActivities.finish_restore,
            FinishRestore(restore_id, status, message, self.notes),
            start_to_close_timeout=timedelta(seconds=60), retry_policy=QUICK,
        )  # fmt: skip
