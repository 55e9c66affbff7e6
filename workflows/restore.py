"""The restore of one application from one backup; the application is resumed whatever happens."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.restore import FinishRestore, NamedDatabaseJob, RestorePlan, VolumeJob
    from core.states import RunStatus
    from repository.names import CONFIG, DATABASE, database_part, volume_part
    from workflows import steps
    from workflows.failures import RUN_ERRORS, alert_restore, checkpoint, ended_by, reason
    from workflows.step_kinds import (
        BEGIN,
        PLATFORM,
        PREPARE,
        RECORD,
        RESUME,
        TRANSFER,
        VERIFY_RESULT,
        WAIT,
    )

# Marks runs that may restore the configuration part; older histories never asked for it.
CONFIG_PART = "restore-config-part"
# Marks runs that restore named databases (MariaDB, Redis); older plans have none.
NAMED_DATABASES = "restore-named-databases"


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
            plan = await steps.begin_restore(restore_id, **BEGIN)
            await self._restore(plan)
            checkpoint()  # a cancelled run never records success
        except RUN_ERRORS as error:
            status, message = ended_by(error, self.step)
            if self.resume_error:
                message += f"; the application was NOT started again: {self.resume_error}"
            if await self._finish(restore_id, status, message):
                await alert_restore(restore_id, application_id, workspace_id, status, message)
            raise
        if not await self._finish(restore_id, RunStatus.SUCCEEDED, None, swallow=False):
            workflow.logger.warning("restore %s had been settled already", restore_id)
        return restore_id

    async def _restore(self, plan: RestorePlan) -> None:
        self.step = "verify backup"
        self.notes["verify"] = await steps.verify_backup(
            plan.restore_id, summary="verify the backup", **TRANSFER
        )
        failed = False
        try:
            # Inside the try: once a stop was attempted, the application is always resumed.
            self.step = "quiesce"
            self.notes["quiesce"] = await steps.quiesce(
                plan.restore_id, cancellation_type=WAIT, **PLATFORM
            )
            checkpoint()
            if plan.database:
                self.step = "restore database"
                self.notes[DATABASE] = await steps.restore_database(
                    plan.restore_id,
                    summary="restore the database",
                    cancellation_type=WAIT,
                    **TRANSFER,
                )
                checkpoint()
            if plan.databases and workflow.patched(NAMED_DATABASES):
                for name in plan.databases:
                    self.step = f"restore database {name}"
                    self.notes[database_part(name)] = await steps.restore_named_database(
                        NamedDatabaseJob(plan.restore_id, name),
                        summary=f"restore database {name}",
                        cancellation_type=WAIT,
                        **TRANSFER,
                    )
                    checkpoint()
            for volume in plan.volumes:
                self.step = f"restore volume {volume}"
                self.notes[volume_part(volume)] = await steps.restore_volume(
                    VolumeJob(plan.restore_id, volume),
                    summary=f"restore volume {volume}",
                    cancellation_type=WAIT,
                    **TRANSFER,
                )
                checkpoint()
            if plan.config and workflow.patched(CONFIG_PART):
                self.step = "restore config"
                self.notes[CONFIG] = await steps.restore_config(
                    plan.restore_id,
                    summary="restore the configuration objects",
                    cancellation_type=WAIT,
                    **PREPARE,
                )
                checkpoint()
            self.step = "verify result"
            await steps.verify_restore(
                plan.restore_id, summary="verify the restored data", **VERIFY_RESULT
            )
        except RUN_ERRORS:
            failed = True
            raise
        finally:
            # Resume in every outcome: success, failure or cancel.
            step, self.step = self.step, "resume"
            try:
                self.notes["resume"] = await steps.resume(plan.restore_id, **RESUME)
            except ActivityError as error:
                if not failed:
                    raise  # the restore itself worked; the run fails in step "resume"
                self.resume_error = reason(error)
                self.notes["resume"] = f"failed: {self.resume_error}"
            self.step = step

    async def _finish(
        self, restore_id: str, status: RunStatus, message: str | None, swallow: bool = True
    ) -> bool:
        """Records the outcome; True when this call ended the row (so it alerts once)."""
        try:
            return await steps.finish_restore(
                FinishRestore(restore_id, status, message, self.notes), **RECORD
            )
        except ActivityError as error:
            if not swallow:
                raise
            # The run still ends with its own error; the reconciler settles the row later.
            workflow.logger.error("the outcome could not be recorded: %s", reason(error))
            return False
