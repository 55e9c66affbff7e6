"""Schedules the worker owns (not per-policy ones): usage refresh, reconciles, retention sweep."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

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
from workflows.reconcile import ReconcileSchedulesWorkflow
from workflows.retention import RetentionSweepWorkflow
from workflows.settle_runs import SettleRunsWorkflow
from workflows.storage import RefreshStorageUsageWorkflow

USAGE_SCHEDULE_ID = "storage-usage-refresh"
RECONCILE_SCHEDULE_ID = "policy-schedules-reconcile"
RETENTION_SCHEDULE_ID = "retention-sweep"
SETTLE_RUNS_SCHEDULE_ID = "runs-settle"
DAY_MINUTES = 24 * 60


def _every(workflow: Any, schedule_id: str, minutes: int) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            workflow,
            id=schedule_id,
            task_queue=CONTROL_TASK_QUEUE,
            execution_timeout=timedelta(minutes=minutes),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=minutes))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def _ensure(client: Client, schedule_id: str, schedule: Schedule) -> None:
    """Creates the schedule, or brings an existing one to the configured interval."""
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        async def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)


async def ensure_system_schedules(client: Client, settings: Settings) -> None:
    await _ensure(
        client,
        USAGE_SCHEDULE_ID,
        _every(RefreshStorageUsageWorkflow.run, USAGE_SCHEDULE_ID, settings.usage_refresh_minutes),
    )
    await _ensure(
        client,
        RECONCILE_SCHEDULE_ID,
        _every(ReconcileSchedulesWorkflow.run, RECONCILE_SCHEDULE_ID, settings.reconcile_minutes),
    )
    await _ensure(
        client,
        SETTLE_RUNS_SCHEDULE_ID,
        _every(SettleRunsWorkflow.run, SETTLE_RUNS_SCHEDULE_ID, settings.run_reconcile_minutes),
    )
    await _ensure(
        client,
        RETENTION_SCHEDULE_ID,
        _every(RetentionSweepWorkflow.run, RETENTION_SCHEDULE_ID, DAY_MINUTES),
    )
