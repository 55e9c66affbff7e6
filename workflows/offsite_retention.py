"""Offsite retention over every target; one failing target does not stop the rest."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows import steps
    from workflows.failures import reason
    from workflows.step_kinds import CONTROL, PRUNE


@workflow.defn
class OffsiteRetentionWorkflow:
    @workflow.run
    async def run(self) -> dict[str, list[str]]:
        targets = await steps.list_offsite_targets(**CONTROL)
        expired: dict[str, list[str]] = {}
        for target_id in targets:
            try:
                expired[target_id] = await steps.apply_offsite_retention(target_id, **PRUNE)
            except ActivityError as error:
                workflow.logger.warning(
                    "offsite retention of target %s failed: %s", target_id, reason(error)
                )
        return {k: v for k, v in expired.items() if v}
