"""A backup's copy to its offsite target, a workflow of its own.

The backup starts it once recorded and does not wait for it (parent close policy ABANDON),
so a slow or unreachable target never delays or fails the backup. The copy step retries
with backoff for a day (a target away for hours, a killed worker); the row says ``pending``
meanwhile and ends ``copied`` with the snapshot ids at the target, or ``failed`` with why.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.copy import OFFSITE_COPY_WORKFLOW, CopyJob, CopyOutcome
    from core.states import CopyStatus
    from workflows import steps
    from workflows.failures import reason
    from workflows.step_kinds import OFFSITE_COPY, RECORD


@workflow.defn(name=OFFSITE_COPY_WORKFLOW)
class OffsiteCopyWorkflow:
    @workflow.run
    async def run(self, job: CopyJob) -> list[str]:
        await steps.start_copy(job, **RECORD)
        try:
            copied = await steps.copy_to_offsite(
                job, summary="copy the backup offsite", **OFFSITE_COPY
            )
        except ActivityError as error:
            failed = CopyOutcome(job, CopyStatus.FAILED, reason(error))
            await steps.finish_copy(failed, **RECORD)
            raise
        await steps.finish_copy(CopyOutcome(job, CopyStatus.COPIED, None, copied), **RECORD)
        return copied
