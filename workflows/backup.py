"""The backup of one application: quota check, snapshot, dump and uploads at once, record.

Retention (forget and prune) is not a step of the backup any more: the daily retention
sweep applies it to every policy in one batch, so a backup's cost does not include
repacking the repository (issue 13). Runs started before that change replay with their
prune step (``workflow.patched``). The platform's resources of the run (snapshots, mover
Jobs, temporary claims) are released in every outcome: after a failure with the cleanup,
after success by a step of its own that never fails the recorded backup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

from temporalio import workflow
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from contracts.backup import (
        BACKUP_WORKFLOW,
        BackupRequest,
        BeginBackup,
        ExecutionRef,
        FailJob,
        NamedDumpJob,
        PartResult,
        RecordJob,
        SuccessJob,
        UploadJob,
    )
    from contracts.copy import OFFSITE_COPY_WORKFLOW, CopyJob, copy_workflow_id
    from contracts.notify import FailureEvent
    from core.states import RunStatus
    from workflows import steps
    from workflows.failures import RUN_ERRORS, alert, checkpoint, ended_by, reason
    from workflows.step_kinds import (
        BEGIN,
        CLEANUP,
        PLATFORM,
        PREPARE,
        RECORD,
        SNAPSHOT,
        TRANSFER,
        WAIT,
    )

# Marks runs that leave retention to the daily sweep; older histories still prune.
PRUNE_IN_SWEEP = "prune-in-daily-sweep"
# Marks runs that release the platform's resources after success too, not only on failure.
RELEASE_AFTER_SUCCESS = "release-after-success"
# Marks runs that dump the database and upload the volumes at once, not one after another.
PARTS_AT_ONCE = "parts-at-once"
# Marks runs that start their offsite copy (a workflow of its own) once recorded.
OFFSITE_COPY = "offsite-copy"
# Marks runs that dump the application's named databases (MariaDB, Redis) beside the rest.
NAMED_DATABASES = "named-databases"


@workflow.defn(name=BACKUP_WORKFLOW)
class BackupWorkflow:
    def __init__(self) -> None:
        self.step = "starting"

    @workflow.query
    def current_step(self) -> str:
        return self.step

    @workflow.run
    async def run(self, request: BackupRequest) -> str:
        info = workflow.info()
        begin = BeginBackup(request, info.workflow_id, info.run_id, self._schedule_id())
        execution_id = request.execution_id
        try:
            # Every step, the first included, is inside the failure handling.
            self.step = "begin"
            ref = await steps.begin_backup(begin, **BEGIN)
            execution_id = ref.execution_id
            return await self._backup(request, ref)
        except RUN_ERRORS as error:
            status, message = ended_by(error, self.step)
            await self._fail(begin, execution_id, status, message)
            raise

    async def _backup(self, request: BackupRequest, ref: ExecutionRef) -> str:
        execution_id, volumes, database = ref.execution_id, ref.volumes, ref.include_database
        started = workflow.now().isoformat()
        self.step = "quota check"
        await steps.check_quota(execution_id, **PLATFORM)
        checkpoint()
        self.step = "snapshot"
        snapshot = await steps.snapshot_volumes(execution_id, **SNAPSHOT)
        checkpoint()
        parts: list[PartResult] = []
        jobs: list[tuple[str, Callable[[], Awaitable[PartResult]]]] = []
        if database:
            jobs.append(("database dump", partial(self._dump, execution_id)))
        # only runs that have named databases reach the patch: older refs carry none
        if ref.databases and workflow.patched(NAMED_DATABASES):
            for name in ref.databases:
                named = NamedDumpJob(execution_id, name)
                jobs.append((f"dump database {name}", partial(self._dump_named, named)))
        for volume in volumes:
            job = UploadJob(execution_id, volume, snapshot.volumes[volume], request.backup_type)
            jobs.append((f"upload {volume}", partial(self._upload, job)))
        if workflow.patched(PARTS_AT_ONCE):
            parts = await self._at_once(jobs)
        else:
            for label, start in jobs:
                self.step = label
                parts.append(await start())
                checkpoint()
        checkpoint()
        self.step = "record"
        stored = await steps.store_manifest(
            RecordJob(execution_id, parts, snapshot, started),
            summary="store the manifest",
            cancellation_type=WAIT,
            **PREPARE,
        )
        checkpoint()  # a cancelled run never records success
        await steps.record_success(SuccessJob(execution_id, stored), **RECORD)
        if workflow.patched(RELEASE_AFTER_SUCCESS):
            self.step = "release"
            try:
                await steps.release_backup(execution_id, **CLEANUP)
            except ActivityError as error:
                # The backup is recorded and complete; what is left is noted on its row.
                workflow.logger.warning("release after the backup failed: %s", reason(error))
        if workflow.patched(OFFSITE_COPY):
            await self._start_copy(execution_id)
        if not workflow.patched(PRUNE_IN_SWEEP):
            self.step = "prune"
            try:
                await steps.apply_retention(request.policy_id, **TRANSFER)
            except ActivityError as error:
                # The backup itself is complete; a failed prune is retried by the sweep.
                workflow.logger.warning("retention failed, backup kept: %s", reason(error))
        self.step = "done"
        return execution_id

    async def _start_copy(self, execution_id: str) -> None:
        """Starts the offsite copy when the policy names a target, and lets it run on its own
        (ABANDON): the backup neither waits for the copy nor fails with it."""
        self.step = "offsite copy"
        try:
            target = await steps.offsite_target_of(execution_id, **RECORD)
            if target is None:
                return
            await workflow.start_child_workflow(
                OFFSITE_COPY_WORKFLOW,
                CopyJob(execution_id, target),
                id=copy_workflow_id(execution_id, target),
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            )
        except (ActivityError, WorkflowAlreadyStartedError) as error:
            workflow.logger.warning("the offsite copy was not started: %s", reason(error))

    async def _dump(self, execution_id: str) -> PartResult:
        return await steps.dump_database(
            execution_id, summary="dump the database", cancellation_type=WAIT, **TRANSFER
        )

    async def _dump_named(self, job: NamedDumpJob) -> PartResult:
        return await steps.dump_named_database(
            job, summary=f"dump database {job.database}", cancellation_type=WAIT, **TRANSFER
        )

    async def _upload(self, job: UploadJob) -> PartResult:
        return await steps.upload_volume(
            job, summary=f"upload volume {job.volume}", cancellation_type=WAIT, **TRANSFER
        )

    async def _at_once(
        self, jobs: list[tuple[str, Callable[[], Awaitable[PartResult]]]]
    ) -> list[PartResult]:
        """Runs every part at once (in order of ``jobs``); the first failure stops the rest.

        The other parts are cancelled and waited for (their cancellation waits for the
        activity), so cleanup after the failure never races an upload still writing. The
        run then fails in the step that failed first.
        """
        self.step = ", ".join(label for label, _ in jobs)
        failed: list[str] = []

        async def one(label: str, start: Callable[[], Awaitable[PartResult]]) -> PartResult:
            try:
                return await start()
            except RUN_ERRORS:
                failed.append(label)
                raise

        tasks = [asyncio.create_task(one(label, start)) for label, start in jobs]
        try:
            return list(await asyncio.gather(*tasks))
        except RUN_ERRORS:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.step = failed[0] if failed else self.step
            raise

    def _schedule_id(self) -> str | None:
        scheduled_by = workflow.info().typed_search_attributes
        for pair in scheduled_by:
            if pair.key.name == "TemporalScheduledById":
                return str(pair.value)
        return None

    async def _fail(
        self, begin: BeginBackup, execution_id: str | None, status: RunStatus, message: str
    ) -> None:
        """Record first (database only), then clean up (best effort), then alert.

        None of these may replace the run's own error: if recording is impossible for longer
        than its budget, the run still fails with its reason and the reconciler settles it.
        """
        step, self.step = self.step, status
        try:
            recorded = await steps.record_failure(
                FailJob(begin, execution_id, message, status), **RECORD
            )
        except ActivityError as error:
            workflow.logger.error("the outcome could not be recorded: %s", reason(error))
            return
        if recorded.execution_id and step != "begin":
            try:
                await steps.clean_up_failed(recorded.execution_id, **CLEANUP)
            except ActivityError as error:
                workflow.logger.warning("cleanup after failure failed: %s", reason(error))
        if not recorded.settled or recorded.execution_id is None:
            return
        request = begin.request
        await alert(
            FailureEvent(
                "backup",
                recorded.execution_id,
                request.application_id,
                request.workspace_id,
                begin.workflow_id,
                status,
                message,
                request.trigger,
            )
        )
