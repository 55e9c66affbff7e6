"""Run by a schedule: repairs drift between backup and drill policies and their schedules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.schedule_repair import ScheduleActivities


@workflow.defn
class ReconcileSchedulesWorkflow:
    @workflow.run
    async def run(self) -> dict[str, Any]:
        return await workflow.execute_activity_method(
            ScheduleActivities.reconcile_policy_schedules,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
