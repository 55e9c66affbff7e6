"""The daily retention sweep over every policy; one failing repository does not stop the rest."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.retention import RetentionActivities
    from core.settings import DATA_TASK_QUEUE
    from workflows.shared import DATA, LONG, QUICK, reason


@workflow.defn
class RetentionSweepWorkflow:
    @workflow.run
    async def run(self) -> dict[str, list[str]]:
        policies = await workflow.execute_activity_method(
            RetentionActivities.list_retained_policies,
            task_queue=DATA_TASK_QUEUE,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=QUICK,
        )
        pruned: dict[str, list[str]] = {}
        for policy_id in policies:
            try:
                pruned[policy_id] = await workflow.execute_activity_method(
                    RetentionActivities.apply_retention,
                    policy_id,
                    task_queue=DATA_TASK_QUEUE,
                    start_to_close_timeout=LONG,
                    heartbeat_timeout=timedelta(minutes=2),
                    retry_policy=DATA,
                )
            except ActivityError as error:
                workflow.logger.warning(
                    "retention of policy %s failed: %s", policy_id, reason(error)
                )
        return {k: v for k, v in pruned.items() if v}
