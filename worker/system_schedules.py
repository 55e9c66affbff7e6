"""Schedules the worker owns (not per-policy ones): usage refresh, reconciles, retention sweep,
offsite retention, overdue notices."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from contracts.task_queues import CONTROL_TASK_QUEUE
from core.settings import Settings
from schedules.store import create_or_update
from workflows.offsite_retention import OffsiteRetentionWorkflow
from workflows.overdue_notices import OverdueNoticesWorkflow
from workflows.reconcile import ReconcileSchedulesWorkflow
from workflows.retention import RetentionSweepWorkflow
from workflows.settle_runs import SettleRunsWorkflow
from workflows.storage import RefreshStorageUsageWorkflow

USAGE_SCHEDULE_ID = "storage-usage-refresh"
RECONCILE_SCHEDULE_ID = "policy-schedules-reconcile"
RETENTION_SCHEDULE_ID = "retention-sweep"
OFFSITE_RETENTION_SCHEDULE_ID = "offsite-retention"
SETTLE_RUNS_SCHEDULE_ID = "runs-settle"
OVERDUE_NOTICES_SCHEDULE_ID = "overdue-notices"
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


async def ensure_system_schedules(client: Client, settings: Settings) -> None:
    """Creates each system schedule, or brings an existing one to the configured interval."""
    every = {
        USAGE_SCHEDULE_ID: (RefreshStorageUsageWorkflow.run, settings.usage_refresh_minutes),
        RECONCILE_SCHEDULE_ID: (ReconcileSchedulesWorkflow.run, settings.reconcile_minutes),
        SETTLE_RUNS_SCHEDULE_ID: (SettleRunsWorkflow.run, settings.run_reconcile_minutes),
        OVERDUE_NOTICES_SCHEDULE_ID: (OverdueNoticesWorkflow.run, settings.overdue_notice_minutes),
        RETENTION_SCHEDULE_ID: (RetentionSweepWorkflow.run, DAY_MINUTES),
        OFFSITE_RETENTION_SCHEDULE_ID: (OffsiteRetentionWorkflow.run, DAY_MINUTES),
    }
    for schedule_id, (workflow, minutes) in every.items():
        await create_or_update(client, schedule_id, _every(workflow, schedule_id, minutes))
