"""Provisioning, deletion and usage monitoring of backup storage."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.storage import DeleteStorageJob, StorageJob, StorageStatusChange, StorageUsage
    from core.states import StorageStatus
    from workflows import steps
    from workflows.failures import reason
    from workflows.step_kinds import CONTROL, PURGE, STORAGE_CALL, USAGE_READING


@workflow.defn
class ProvisionStorageWorkflow:
    """Creates or reprovisions a storage; it ends ``active``, or ``error`` with the reason."""

    @workflow.run
    async def run(self, job: StorageJob) -> str:
        try:
            await steps.provision_storage(job, **STORAGE_CALL)
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
                await steps.remove_storage_backups(job.storage, **PURGE)
            await steps.deprovision_storage(job.storage, **STORAGE_CALL)
        except ActivityError as error:
            message = f"deletion failed: {reason(error)}"
            await _set_status(job.storage.storage_id, StorageStatus.ERROR, message)
            return StorageStatus.ERROR
        await steps.forget_storage(job.storage.storage_id, **CONTROL)
        return "deleted"


@workflow.defn
class RefreshStorageUsageWorkflow:
    """Run by a schedule: one usage reading per monitored storage, each its own activity."""

    @workflow.run
    async def run(self) -> list[StorageUsage]:
        storage_ids = await steps.list_monitored_storages(**CONTROL)
        readings = []
        for storage_id in storage_ids:
            readings.append(await steps.refresh_storage_usage(storage_id, **USAGE_READING))
        return readings


async def _set_status(storage_id: str, status: StorageStatus, message: str | None) -> None:
    await steps.set_storage_status(StorageStatusChange(storage_id, status, message), **CONTROL)
