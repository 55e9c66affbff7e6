"""A restore drill: the newest backup restored into scratch copies, proven, timed, removed."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.drill import CLEANUP_ATTEMPTS, DRILL_WORKFLOW, DrillActivities
    from contracts.drill import (
        BeginDrill,
        CheckOutcome,
        DrillPlan,
        DrillRecorded,
        DrillRequest,
        DrillVolume,
        FinishDrill,
    )
    from contracts.notify import FailureEvent
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

# A cancelled restore must have stopped before its scratch copy is removed.
WAIT = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
# The scratch copy is removed in every outcome: retried for about five minutes.
CLEANUP = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=60),
    maximum_attempts=CLEANUP_ATTEMPTS,
)  # fmt: skip


@workflow.defn(name=DRILL_WORKFLOW)
class RestoreDrillWorkflow:
    def __init__(self) -> None:
        self.step = "starting"
        self.notes: dict[str, str] = {}
        self.checks: list[CheckOutcome] = []
        self.bytes_restored: int | None = None

    @workflow.query
    def current_step(self) -> str:
        return self.step

    @workflow.run
    async def run(self, request: DrillRequest) -> str:
        info = workflow.info()
        begin = BeginDrill(request, info.workflow_id, info.run_id)
        plan: DrillPlan | None = None
        try:
            # Every step, the first included, is inside the failure handling.
            self.step = "begin"
            plan = await workflow.execute_activity_method(
                DrillActivities.begin_drill, begin,
                start_to_close_timeout=METADATA_STEP, schedule_to_close_timeout=BEGIN_BUDGET,
                retry_policy=METADATA,
            )  # fmt: skip
            recovery_seconds = await self._drill(plan)
            checkpoint()  # a cancelled drill never records success
        except (*RUN_ERRORS, ApplicationError) as error:
            status, message = ended_by(error, self.step)
            drill_id = plan.drill_id if plan else request.drill_id
            recorded = await self._finish(FinishDrill(
                begin, drill_id, status, message, bytes_restored=self.bytes_restored,
                checks=self.checks, notes=self.notes,
            ))  # fmt: skip
            if plan is not None:
                await self._clean_up(plan.drill_id)
            if recorded.settled and recorded.drill_id:
                await alert(
                    FailureEvent("drill", recorded.drill_id, request.application_id,
                                 request.workspace_id, info.workflow_id, status, message,
                                 request.trigger)
                )  # fmt: skip
            raise
        finish = FinishDrill(
            begin, plan.drill_id, "succeeded", None, recovery_seconds, self.bytes_restored,
            self.checks, self.notes,
        )  # fmt: skip
        try:
            if not (await self._finish(finish, swallow=False)).settled:
                workflow.logger.warning("drill %s had been settled already", plan.drill_id)
        finally:
            await self._clean_up(plan.drill_id)
        return plan.drill_id

    async def _drill(self, plan: DrillPlan) -> float:
        """Restores, verifies and checks; the recovery time runs from restore to verified."""
        self.step = "verify backup"
        self.notes["verify backup"] = await workflow.execute_activity_method(
            DrillActivities.verify_drill_backup, plan.drill_id, task_queue=DATA_TASK_QUEUE,
            start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=HEARTBEAT,
            retry_policy=DATA,
        )  # fmt: skip
        restore_started: datetime = workflow.now()
        database_bytes = 0
        if plan.database:
            self.step = "restore database"
            database_bytes = await workflow.execute_activity_method(
                DrillActivities.restore_drill_database, plan.drill_id, task_queue=DATA_TASK_QUEUE,
                start_to_close_timeout=LONG, heartbeat_timeout=HEARTBEAT, retry_policy=DATA,
                cancellation_type=WAIT,
            )  # fmt: skip
            checkpoint()
        for volume in plan.volumes:
            self.step = f"restore volume {volume}"
            self.notes[f"volume:{volume}"] = await workflow.execute_activity_method(
                DrillActivities.restore_drill_volume, DrillVolume(plan.drill_id, volume),
                task_queue=DATA_TASK_QUEUE, start_to_close_timeout=LONG,
                heartbeat_timeout=HEARTBEAT, retry_policy=DATA, cancellation_type=WAIT,
            )  # fmt: skip
            checkpoint()
        self.step = "verify result"
        verified = await workflow.execute_activity_method(
            DrillActivities.verify_drill, plan, task_queue=DATA_TASK_QUEUE,
            start_to_close_timeout=timedelta(hours=1), heartbeat_timeout=HEARTBEAT,
            retry_policy=DATA,
        )  # fmt: skip
        recovery_seconds = (workflow.now() - restore_started).total_seconds()
        self.notes["verify result"] = verified.summary
        self.bytes_restored = database_bytes + verified.volume_bytes
        self.step = "checks"
        self.checks = await workflow.execute_activity_method(
            DrillActivities.run_drill_checks, plan, task_queue=DATA_TASK_QUEUE,
            start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=HEARTBEAT,
            retry_policy=DATA,
        )  # fmt: skip
        failing = [c for c in self.checks if c.outcome != "passed"]
        if failing:
            raise ApplicationError(
                "; ".join(f"check {c.name!r} {c.outcome} ({c.message})" for c in failing),
                type="CheckFailed", non_retryable=True,
            )  # fmt: skip
        return recovery_seconds

    async def _finish(self, finish: FinishDrill, swallow: bool = True) -> DrillRecorded:
        """Records the outcome; a record that cannot be made is left to the reconciler."""
        try:
            return await workflow.execute_activity_method(
                DrillActivities.finish_drill, finish,
                start_to_close_timeout=METADATA_STEP, schedule_to_close_timeout=METADATA_BUDGET,
                retry_policy=METADATA,
            )  # fmt: skip
        except ActivityError as error:
            if not swallow:
                raise
            # The run still ends with its own error; the reconciler settles the row later.
            workflow.logger.error("the outcome could not be recorded: %s", reason(error))
            return DrillRecorded(finish.drill_id, settled=False)

    async def _clean_up(self, drill_id: str) -> None:
        """Removes the scratch copy; a failure is noted on the row, never the run's outcome."""
        try:
            await workflow.execute_activity_method(
                DrillActivities.clean_up_drill, drill_id, task_queue=DATA_TASK_QUEUE,
                start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=HEARTBEAT,
                retry_policy=CLEANUP,
            )  # fmt: skip
        except ActivityError as error:
            workflow.logger.error("drill %s left scratch copies: %s", drill_id, reason(error))
