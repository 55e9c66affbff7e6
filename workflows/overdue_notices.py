"""Run by the ``overdue-notices`` schedule: tells the webhook who became overdue or recovered."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows import steps
    from workflows.failures import reason
    from workflows.step_kinds import ALERT

OVERDUE_NOTICES_WORKFLOW = "OverdueNoticesWorkflow"


@workflow.defn(name=OVERDUE_NOTICES_WORKFLOW)
class OverdueNoticesWorkflow:
    @workflow.run
    async def run(self) -> int:
        """How many notices were sent; what stays untold is tried again at the next run."""
        try:
            return await steps.notify_overdue(**ALERT)
        except ActivityError as error:
            workflow.logger.error("overdue notices not delivered: %s", reason(error))
            return 0
