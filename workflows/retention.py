"""The daily retention sweep over every policy; one failing repository does not stop the rest."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows import steps
    from workflows.failures import reason
    from workflows.step_kinds import LISTING, PRUNE


@workflow.defn
class RetentionSweepWorkflow:
    @workflow.run
    async def run(self) -> dict[str, list[str]]:
        policies = await steps.list_retained_policies(**LISTING)
        pruned: dict[str, list[str]] = {}
        for policy_id in policies:
            try:
                pruned[policy_id] = await steps.apply_retention(policy_id, **PRUNE)
            except ActivityError as error:
                workflow.logger.warning(
                    "retention of policy %s failed: %s", policy_id, reason(error)
                )
        return {k: v for k, v in pruned.items() if v}
