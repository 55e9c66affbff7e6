"""The backup of one application: quota check, snapshot, dump, upload, record, prune."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.backup import (
        BackupActivities,
        BeginBackup,
        FailJob,
        PartResult,
        RecordJob,
        UploadJob,
    )
    from activities.notify import FailureEvent, Notifier
    from activities.retention import RetentionActivities
    from core.settings import DATA_TASK_QUEUE
    from workflows.backup_request import BACKUP_WORKFLOW, BackupRequest
    from workflows.shared import BEGIN, DATA, HEARTBEAT, LONG, NOTIFY, reason


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
        self.step = "begin"
        ref = await workflow.execute_activity_method(
            BackupActivities.begin_backup,
            BeginBackup(request, info.workflow_id, info.run_id, self._schedule_id()),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=BEGIN,
        )
        try:
            return await self._backup(request, ref.execution_id, ref.volumes, ref.include_database)
        except (ActivityError, CancelledError, asyncio.CancelledError) as error:
            cancelled = isinstance(error, (CancelledError, asyncio.CancelledError)) or (
                isinstance(error, ActivityError) and isinstance(error.cause, CancelledError)
            )
            status = "cancelled" if cancelled else "failed"
            message = (
                f"cancelled during {self.step}" if cancelled else f"{self.step}: {reason(error)}"
            )
            await self._fail(request, ref.execution_id, status, message)
            raise

    async def _backup(
        self, request: BackupRequest, execution_id: str, volumes: list[str], database: bool
    ) -> str:
        started = workflow.now().isoformat()
        self.step = "quota check"
        await workflow.execute_activity_method(
            BackupActivities.check_quota,
            execution_id,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=DATA,
        )
        self.step = "snapshot"
        snapshot = await workflow.execute_activity_method(
            BackupActivities.snapshot_volumes,
            execution_id,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=DATA,
        )
        parts: list[PartResult] = []
        if database:
            self.step = "database dump"
            parts.append(
                await workflow.execute_activity_method(
                    BackupActivities.dump_database,
                    execution_id,
                    task_queue=DATA_TASK_QUEUE,
                    start_to_close_timeout=LONG,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=DATA,
                )
            )
        for volume in volumes:
            self.step = f"upload {volume}"
            parts.append(
                await workflow.execute_activity_method(
                    BackupActivities.upload_volume,
                    UploadJob(execution_id, volume, snapshot.volumes[volume], request.backup_type),
                    task_queue=DATA_TASK_QUEUE,
                    start_to_close_timeout=LONG,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=DATA,
                )
            )
        self.step = "record"
        await workflow.execute_activity_method(
            BackupActivities.record_backup,
            RecordJob(execution_id, parts, snapshot, started),
            task_queue=DATA_TASK_QUEUE,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=DATA,
        )
        self.step = "prune"
        try:
            await workflow.execute_activity_method(
                RetentionActivities.apply_retention,
                request.policy_id,
                task_queue=DATA_TASK_QUEUE,
                start_to_close_timeout=LONG,
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=DATA,
            )
        except ActivityError as error:
            # The backup itself is complete; a failed prune is retried after the next backup.
            workflow.logger.warning("retention failed, backup kept: %s", reason(error))
        self.step = "done"
        return execution_id

    def _schedule_id(self) -> str | None:
        scheduled_by = workflow.info().typed_search_attributes
        for pair in scheduled_by:
            if pair.key.name == "TemporalScheduledById":
                return str(pair.value)
        return None

    async def _fail(
        self, request: BackupRequest, execution_id: str, status: str, message: str
    ) -> None:
        self.step = status
        await workflow.execute_activity_method(
            BackupActivities.fail_backup,
            FailJob(execution_id, message, status),
            task_queue=DATA_TASK_QUEUE,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=DATA,
        )
        await workflow.execute_activity_method(
            Notifier.notify_failure,
            FailureEvent(
                "backup",
                execution_id,
                request.application_id,
                request.workspace_id,
                workflow.info().workflow_id,
                status,
                message,
                request.trigger,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=NOTIFY,
        )
