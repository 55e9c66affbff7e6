"""Provisioning, deletion and usage monitoring of backup storage."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.storage import DeleteStorageJob, StorageJob, StorageStatusChange, StorageUsage
    from contracts.task_queues import DATA_TASK_QUEUE
    from core.states import StorageStatus
    from workflows import steps
    from workflows.failures import reason
    from workflows.retries import (
        CONTROL_RETRY,
        CONTROL_STEP,
        HEARTBEAT,
        PERIODIC_RETRY,
        PURGE_STEP,
        STORAGE_CALL_RETRY,
        STORAGE_CALL_STEP,
        USAGE_READING_STEP,
    )


@workflow.defn
class ProvisionStorageWorkflow:
    """Creates or reprovisions a storage; it ends ``active``, or ``error`` with the reason."""

    @workflow.run
    async def run(self, job: StorageJob) -> str:
        try:
            await steps.provision_storage(
                job, start_to_close_timeout=STORAGE_CALL_STEP, retry_policy=STORAGE_CALL_RETRY
            )
        except ActivityError as error:
            await _set_status(job.storage_id, StorageStatus.ERROR, reason(error))
            return StorageStatus.ERROR
        await _set_status(job.storage_id, StorageStatus.ACTIVE, None)
        return StorageStatus.ACTIVE


@workflow.defn
class DeleteStorageWorkflow:
    """Removes backups (when forced), the PVE definition, then the row."""

    @workflow.run
    async def run(self, job: DeleteStorageJob) -> str:
        try:
            if job.force:
                await steps.remove_storage_backups(
                    job.storage,
                    task_queue=DATA_TASK_QUEUE,
                    start_to_close_timeout=PURGE_STEP,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=CONTROL_RETRY,
                )
            await steps.deprovision_storage(
                job.storage,
                start_to_close_timeout=STORAGE_CALL_STEP,
                retry_policy=STORAGE_CALL_RETRY,
            )
        except ActivityError as error:
            message = f"deletion failed: {reason(error)}"
            await _set_status(job.storage.storage_id, StorageStatus.ERROR, message)
            return StorageStatus.ERROR
        await steps.forget_storage(
            job.storage.storage_id, start_to_close_timeout=CONTROL_STEP, retry_policy=CONTROL_RETRY
        )
        return "deleted"


@workflow.defn
class RefreshStorageUsageWorkflow:
    """Run by a schedule: one usage reading per monitored storage, each its own activity."""

    @workflow.run
    async def run(self) -> list[StorageUsage]:
        storage_ids = await steps.list_monitored_storages(
            start_to_close_timeout=CONTROL_STEP, retry_policy=CONTROL_RETRY
        )
        readings = []
        for storage_id in storage_ids:
            readings.append(
                await steps.refresh_storage_usage(
                    storage_id,
                    start_to_close_timeout=USAGE_READING_STEP,
                    retry_policy=PERIODIC_RETRY,
                )
            )
        return readings


async def _set_status(storage_id: str, status: StorageStatus, message: str | None) -> None:
    await steps.set_storage_status(
        StorageStatusChange(storage_id, status, message),
        start_to_close_timeout=CONTROL_STEP,
        retry_policy=CONTROL_RETRY,
    )
