"""The daily retention sweep over every policy; one failing repository does not stop the rest."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.task_queues import DATA_TASK_QUEUE
    from workflows import steps
    from workflows.failures import reason
    from workflows.retries import (
        CONTROL_RETRY,
        DATA_RETRY,
        LISTING_STEP,
        PRUNE_HEARTBEAT,
        TRANSFER_STEP,
    )


@workflow.defn
class RetentionSweepWorkflow:
    @workflow.run
    async def run(self) -> dict[str, list[str]]:
        policies = await steps.list_retained_policies(
            task_queue=DATA_TASK_QUEUE,
            start_to_close_timeout=LISTING_STEP,
            retry_policy=CONTROL_RETRY,
        )
        pruned: dict[str, list[str]] = {}
        for policy_id in policies:
            try:
                pruned[policy_id] = await steps.apply_retention(
                    policy_id,
                    task_queue=DATA_TASK_QUEUE,
                    start_to_close_timeout=TRANSFER_STEP,
                    heartbeat_timeout=PRUNE_HEARTBEAT,
                    retry_policy=DATA_RETRY,
                )
            except ActivityError as error:
                workflow.logger.warning(
                    "retention of policy %s failed: %s", policy_id, reason(error)
                )
        return {k: v for k, v in pruned.items() if v}
