"""Run by a schedule and on demand by the API: settles rows whose workflow has closed."""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import steps
    from workflows.failures import alert
    from workflows.step_kinds import SETTLE_RUNS

SETTLE_RUNS_WORKFLOW = "SettleRunsWorkflow"


@workflow.defn(name=SETTLE_RUNS_WORKFLOW)
class SettleRunsWorkflow:
    @workflow.run
    async def run(self) -> int:
        events = await steps.settle_closed_runs(**SETTLE_RUNS)
        # Every failed or cancelled run alerts, also those nobody but the reconciler saw end.
        await asyncio.gather(*(alert(event) for event in events))
        return len(events)
