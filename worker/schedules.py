"""Schedules the worker owns (not per-policy ones): the storage usage refresh."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from core.settings import CONTROL_TASK_QUEUE, Settings
from workflows.storage import RefreshStorageUsageWorkflow

USAGE_SCHEDULE_ID = "storage-usage-refresh"


def usage_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RefreshStorageUsageWorkflow.run,
            id=USAGE_SCHEDULE_ID,
            task_queue=CONTROL_TASK_QUEUE,
            execution_timeout=timedelta(minutes=settings.usage_refresh_minutes),
        ),
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(every=timedelta(minutes=settings.usage_refresh_minutes))
            ]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_usage_schedule(client: Client, settings: Settings) -> None:
    """Creates the schedule, or brings an existing one to the configured interval."""
    schedule = usage_schedule(settings)
    try:
        await client.create_schedule(USAGE_SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:

        async def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(USAGE_SCHEDULE_ID).update(replace)
