"""A restore drill: the newest backup (or a moment of the WAL archive) restored into scratch
copies, proven, timed, removed."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.drill import (
        DRILL_WORKFLOW,
        BeginDrill,
        CheckOutcome,
        DrillDatabase,
        DrillPlan,
        DrillRecorded,
        DrillRequest,
        DrillVolume,
        FinishDrill,
    )
    from contracts.notify import FailureEvent
    from core.states import RunStatus
    from repository.names import database_part, volume_part
    from workflows import steps
    from workflows.failures import RUN_ERRORS, alert, checkpoint, ended_by, reason
    from workflows.step_kinds import (
        BEGIN,
        DRILL_CHECKS,
        DRILL_CLEANUP,
        PREPARE,
        RECORD,
        TRANSFER,
        VERIFY_RESULT,
        WAIT,
    )

# Marks runs that drill the backup's named databases (MariaDB, Redis); older plans have none.
NAMED_DATABASES = "drill-named-databases"


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
            plan = await steps.begin_drill(begin, **BEGIN)
            recovery_seconds = await self._drill(plan)
            checkpoint()  # a cancelled drill never records success
        except (*RUN_ERRORS, ApplicationError) as error:
            status, message = ended_by(error, self.step)
            drill_id = plan.drill_id if plan else request.drill_id
            recorded = await self._finish(
                FinishDrill(
                    begin,
                    drill_id,
                    status,
                    message,
                    bytes_restored=self.bytes_restored,
                    checks=self.checks,
                    notes=self.notes,
                )
            )
            if plan is not None:
                await self._clean_up(plan.drill_id)
            if recorded.settled and recorded.drill_id:
                await alert(
                    FailureEvent(
                        "drill",
                        recorded.drill_id,
                        request.application_id,
                        request.workspace_id,
                        info.workflow_id,
                        status,
                        message,
                        request.trigger,
                    )
                )
            raise
        finish = FinishDrill(
            begin,
            plan.drill_id,
            RunStatus.SUCCEEDED,
            None,
            recovery_seconds,
            self.bytes_restored,
            self.checks,
            self.notes,
        )
        try:
            if not (await self._finish(finish, swallow=False)).settled:
                workflow.logger.warning("drill %s had been settled already", plan.drill_id)
        finally:
            await self._clean_up(plan.drill_id)
        return plan.drill_id

    async def _drill(self, plan: DrillPlan) -> float:
        """Restores, verifies and checks; the recovery time runs from restore to verified."""
        if plan.target_time is not None:
            return await self._drill_to_moment(plan)
        self.step = "verify backup"
        self.notes["verify backup"] = await steps.verify_drill_backup(plan.drill_id, **PREPARE)
        restore_started: datetime = workflow.now()
        database_bytes = 0
        if plan.database:
            self.step = "restore database"
            database_bytes = await steps.restore_drill_database(
                plan.drill_id, cancellation_type=WAIT, **TRANSFER
            )
            checkpoint()
        for volume in plan.volumes:
            self.step = f"restore volume {volume}"
            self.notes[volume_part(volume)] = await steps.restore_drill_volume(
                DrillVolume(plan.drill_id, volume), cancellation_type=WAIT, **TRANSFER
            )
            checkpoint()
        if plan.databases and workflow.patched(NAMED_DATABASES):
            for name in plan.databases:
                self.step = f"drill database {name}"
                drilled = await steps.drill_named_database(
                    DrillDatabase(plan.drill_id, name), cancellation_type=WAIT, **TRANSFER
                )
                self.notes[database_part(name)] = drilled.summary
                database_bytes += drilled.bytes
                checkpoint()
        self.step = "verify result"
        verified = await steps.verify_drill(plan, **VERIFY_RESULT)
        recovery_seconds = (workflow.now() - restore_started).total_seconds()
        self.notes["verify result"] = verified.summary
        self.bytes_restored = database_bytes + verified.volume_bytes
        await self._check(plan)
        return recovery_seconds

    async def _drill_to_moment(self, plan: DrillPlan) -> float:
        """The database recovered to the drill's moment from the WAL archive (the restore to
        a moment's recovery, verified as it verifies), then checked. Only runs whose drill
        asked for a moment take this branch, and none did before it existed: older
        histories replay unchanged without a patch."""
        self.step = "recover database"
        restore_started: datetime = workflow.now()
        recovered = await steps.recover_drill_database(
            plan.drill_id, cancellation_type=WAIT, **TRANSFER
        )
        recovery_seconds = (workflow.now() - restore_started).total_seconds()
        checkpoint()
        self.notes["recover database"] = recovered.summary
        self.bytes_restored = recovered.database_bytes
        await self._check(plan)
        return recovery_seconds

    async def _check(self, plan: DrillPlan) -> None:
        """The application's SQL checks on the scratch copy; any that did not pass fails."""
        self.step = "checks"
        self.checks = await steps.run_drill_checks(plan, **DRILL_CHECKS)
        failing = [c for c in self.checks if c.outcome != "passed"]
        if failing:
            raise ApplicationError(
                "; ".join(f"check {c.name!r} {c.outcome} ({c.message})" for c in failing),
                type="CheckFailed",
                non_retryable=True,
            )

    async def _finish(self, finish: FinishDrill, swallow: bool = True) -> DrillRecorded:
        """Records the outcome; a record that cannot be made is left to the reconciler."""
        try:
            return await steps.finish_drill(finish, **RECORD)
        except ActivityError as error:
            if not swallow:
                raise
            # The run still ends with its own error; the reconciler settles the row later.
            workflow.logger.error("the outcome could not be recorded: %s", reason(error))
            return DrillRecorded(finish.drill_id, settled=False)

    async def _clean_up(self, drill_id: str) -> None:
        """Removes the scratch copy; a failure is noted on the row, never the run's outcome."""
        try:
            await steps.clean_up_drill(drill_id, **DRILL_CLEANUP)
        except ActivityError as error:
            workflow.logger.error("drill %s left scratch copies: %s", drill_id, reason(error))
