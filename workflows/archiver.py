"""An application's archiver (docs/pitr.md): streams WAL for ever, in stretches.

Never ends on its own: each stretch of ``archive_wal`` is followed by continue-as-new, so
the history stays bounded. A base backup runs beside the stream when one is due (the first
at once, then at the policy's schedule's fire times); a failed one is tried again in the
next stretch. A cancel (archiving turned off) stops the stream and
drops the replication slot, so the server no longer keeps WAL for it. A slot the server lost
(``max_slot_wal_keep_size`` passed while the archiver was down) ends its stretch; the archiver
drops it and starts again with a new slot and base backup, which leaves the gap in the window.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from contracts.archive import ARCHIVER_WORKFLOW, ArchiverJob, Stretch, StretchJob
    from contracts.task_queues import DATA_TASK_QUEUE
    from workflows.retries import DATA_RETRY, HEARTBEAT, PREPARE_STEP, TRANSFER_STEP
    from workflows.step_kinds import CLEANUP, LISTING, WAIT
    from workflows.steps import NONE, Step

archive_wal = Step[StretchJob, Stretch]("archive_wal", Stretch)
take_base_backup = Step[str, str]("take_base_backup", str)
next_base_backup = Step[str, str]("next_base_backup", str)
stop_archiving = Step[str, None]("stop_archiving", NONE)

ON_SCHEDULE = "base-backups-on-the-policy-schedule"
"""Base backups follow the policy's cron (runs recorded before this took a fixed 24 h)."""
REPLACE_LOST_SLOT = "replace-a-lost-slot"
"""A stretch that found its slot lost drops it and the spool, and the next run makes a new
slot and base backup at once (what turning archiving off and on did by hand before)."""
STOP_AFTER_TIMEOUT = "stop-archiving-when-the-cancelled-stream-timed-out"
"""Archiving turned off while the stream's worker was dead: the stretch ends in a timeout, not
a cancel; runs recorded before this failed there without dropping the slot."""

# The stream is retried without end: an archiver that gave up would silently stop protecting
# the application; each failure stays in the history and the worker's log.
STREAMING = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1)
)


@workflow.defn(name=ARCHIVER_WORKFLOW)
class ArchiverWorkflow:
    @workflow.run
    async def run(self, job: ArchiverJob) -> None:
        now = workflow.now()
        stretch = asyncio.ensure_future(
            archive_wal(
                StretchJob(job.application_id, job.stretch_seconds),
                task_queue=DATA_TASK_QUEUE,
                heartbeat_timeout=HEARTBEAT,
                start_to_close_timeout=timedelta(seconds=job.stretch_seconds) + PREPARE_STEP,
                retry_policy=STREAMING,
                summary="stream WAL",
                cancellation_type=WAIT,  # the stream has ended before the slot goes
            )
        )
        due = job.base_backup_due
        try:
            if due is None or datetime.fromisoformat(due) <= now:
                due = await self._base_backup(job, now, due)
            streamed = await stretch
            if streamed.slot_lost and workflow.patched(REPLACE_LOST_SLOT):
                due = await self._drop_lost_slot(job, due)
        except (asyncio.CancelledError, ActivityError) as exc:
            # a cancel reaches the workflow as either, by where it found it waiting; a stream
            # whose worker died ends in its heartbeat timeout, after the cancel too
            failed = isinstance(exc, ActivityError) and not isinstance(exc.cause, CancelledError)
            if failed and not (
                workflow.cancellation_reason() is not None and workflow.patched(STOP_AFTER_TIMEOUT)
            ):
                raise
            stretch.cancel()
            await asyncio.gather(stretch, return_exceptions=True)
            await asyncio.shield(
                asyncio.ensure_future(stop_archiving(job.application_id, **CLEANUP))
            )
            if failed:
                raise asyncio.CancelledError() from exc
            raise
        workflow.continue_as_new(
            ArchiverJob(job.application_id, due, job.stretch_seconds, job.base_backup_hours)
        )

    async def _drop_lost_slot(self, job: ArchiverJob, due: str | None) -> str | None:
        """The lost slot and the spool dropped, so the next run makes a new slot and takes a
        base backup at once (None: due now). The window then shows the gap from the last
        shipment's ``until`` to that base backup's ``from``, as after archiving turned off and
        on. A drop that fails is tried again after the next stretch finds the slot lost."""
        try:
            await stop_archiving(job.application_id, **CLEANUP)
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):  # archiving turned off: run() stops
                raise
            workflow.logger.warning("the lost slot was not dropped, tried again: %s", exc.cause)
            return due
        workflow.logger.warning(
            "the slot was lost and is dropped: a new slot and base backup follow, the window"
            " has a gap from its last archived moment to that base backup"
        )
        return None

    async def _base_backup(self, job: ArchiverJob, now: datetime, due: str | None) -> str | None:
        """When the next base backup is due."""
        try:
            await take_base_backup(
                job.application_id,
                task_queue=DATA_TASK_QUEUE,
                heartbeat_timeout=HEARTBEAT,
                start_to_close_timeout=TRANSFER_STEP,
                retry_policy=DATA_RETRY,
                summary="base backup",
            )
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):  # archiving turned off: run() stops
                raise
            workflow.logger.warning("base backup failed, tried again next stretch: %s", exc.cause)
            return due
        if workflow.patched(ON_SCHEDULE):
            return await next_base_backup(job.application_id, **LISTING)
        return (now + timedelta(hours=job.base_backup_hours)).isoformat()
