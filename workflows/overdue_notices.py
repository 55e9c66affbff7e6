"""Run by the ``overdue-notices`` schedule: tells the webhook and the channels who became
overdue or recovered, then the channels which storages or quotas became nearly full."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows import steps
    from workflows.failures import reason
    from workflows.step_kinds import ALERT

OVERDUE_NOTICES_WORKFLOW = "OverdueNoticesWorkflow"


# runs started before the nearly-full notices had one step
NEARLY_FULL_PATCH = "storage-nearly-full-notices"


@workflow.defn(name=OVERDUE_NOTICES_WORKFLOW)
class OverdueNoticesWorkflow:
    @workflow.run
    async def run(self) -> int:
        """How many notices were sent; what stays untold is tried again at the next run."""
        sent = await self._step(steps.notify_overdue, "overdue")
        if workflow.patched(NEARLY_FULL_PATCH):
            sent += await self._step(steps.notify_nearly_full, "nearly-full")
        return sent

    async def _step(self, step: steps.Listing[int], what: str) -> int:
        try:
            return await step(**ALERT)
        except ActivityError as error:
            workflow.logger.error("%s notices not delivered: %s", what, reason(error))
            return 0
