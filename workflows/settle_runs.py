"""Run by a schedule and on demand by the API: settles rows whose workflow has closed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.runs import RunActivities
    from workflows.shared import HEARTBEAT, alert

SETTLE_RUNS_WORKFLOW = "SettleRunsWorkflow"


@workflow.defn(name=SETTLE_RUNS_WORKFLOW)
class SettleRunsWorkflow:
    @workflow.run
    async def run(self) -> int:
        events = await workflow.execute_activity_method(
            RunActivities.settle_closed_runs,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        # Every failed or cancelled run alerts, also those nobody but the reconciler saw end.
        await asyncio.gather(*(alert(event) for event in events))
        return len(events)
