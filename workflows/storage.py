"""Provisioning, deletion and usage monitoring of backup storage."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from contracts.storage import DeleteStorageJob

with workflow.unsafe.imports_passed_through():
    from activities.storage import StorageActivities
    from contracts.storage import StorageJob, StorageStatusChange, StorageUsage
    from core.settings import DATA_TASK_QUEUE
    from workflows.shared import HEARTBEAT, reason

# PVE answers in seconds; eight attempts over about four minutes ride out a node
# restart without retrying a refused configuration forever.
PVE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=8,
)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
PVE_TIMEOUT = timedelta(seconds=60)


@workflow.defn
class ProvisionStorageWorkflow:
    """Creates or reprovisions a storage; it ends ``active``, or ``error`` with the reason."""

    @workflow.run
    async def run(self, job: StorageJob) -> str:
        try:
            await workflow.execute_activity_method(
                StorageActivities.provision_storage,
                job,
                start_to_close_timeout=PVE_TIMEOUT,
                retry_policy=PVE_RETRY,
            )
        except ActivityError as error:
            await self._set(job.storage_id, "error", reason(error))
            return "error"
        await self._set(job.storage_id, "active", None)
        return "active"

    async def _set(self, storage_id: str, status: str, message: str | None) -> None:
        await workflow.execute_activity_method(
            StorageActivities.set_storage_status,
            StorageStatusChange(storage_id, status, message),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
        )


@workflow.defn
class DeleteStorageWorkflow:
    """Removes backups (when forced), the PVE definition, then the row."""

    @workflow.run
    async def run(self, job: DeleteStorageJob) -> str:
        try:
            if job.force:
                await workflow.execute_activity_method(
                    StorageActivities.remove_storage_backups,
                    job.storage,
                    task_queue=DATA_TASK_QUEUE,
                    start_to_close_timeout=timedelta(hours=2),
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=DB_RETRY,
                )
            await workflow.execute_activity_method(
                StorageActivities.deprovision_storage,
                job.storage,
                start_to_close_timeout=PVE_TIMEOUT,
                retry_policy=PVE_RETRY,
            )
        except ActivityError as error:
            await workflow.execute_activity_method(
                StorageActivities.set_storage_status,
                StorageStatusChange(
                    job.storage.storage_id, "error", f"deletion failed: {reason(error)}"
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=DB_RETRY,
            )
            return "error"
        await workflow.execute_activity_method(
            StorageActivities.forget_storage,
            job.storage.storage_id,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
        )
        return "deleted"


@workflow.defn
class RefreshStorageUsageWorkflow:
    """Run by a schedule: one usage reading per monitored storage, each its own activity."""

    @workflow.run
    async def run(self) -> list[StorageUsage]:
        storage_ids = await workflow.execute_activity_method(
            StorageActivities.list_monitored_storages,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
        )
        readings = []
        for storage_id in storage_ids:
            readings.append(
                await workflow.execute_activity_method(
                    StorageActivities.refresh_storage_usage,
                    storage_id,
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
            )
        return readings


WORKFLOWS = [ProvisionStorageWorkflow, DeleteStorageWorkflow, RefreshStorageUsageWorkflow]
