"""Run by a schedule: repairs drift between backup and drill policies and their schedules."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import steps
    from workflows.step_kinds import RECONCILE


@workflow.defn
class ReconcileSchedulesWorkflow:
    @workflow.run
    async def run(self) -> dict[str, Any]:
        return await steps.reconcile_policy_schedules(**RECONCILE)
