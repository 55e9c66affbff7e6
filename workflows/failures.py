"""How a run reads, words and reports what stopped it: failure reasons, cancels and alerts."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TimeoutError,
    TimeoutType,
)

with workflow.unsafe.imports_passed_through():
    from contracts.notify import FailureEvent
    from core.states import RunStatus
    from workflows import steps
    from workflows.step_kinds import ALERT


def reason(error: BaseException) -> str:
    """The message a person can act on, from an activity failure or any error."""
    cause = error.cause if isinstance(error, ActivityError) else error
    if isinstance(cause, ApplicationError):
        return cause.message
    if isinstance(cause, TimeoutError):
        kind = cause.type.name.lower().replace("_", "-") if cause.type else "activity"
        last = cause.cause
        if isinstance(last, ApplicationError):
            return f"{last.message} (still failing when its {kind} time ran out)"
        if cause.type in (TimeoutType.HEARTBEAT, TimeoutType.START_TO_CLOSE):
            return f"no answer from the worker ({kind} timeout: the worker died or hung)"
        return f"gave up after its {kind} timeout"
    return str(cause or error)


def ended_by(error: BaseException, step: str) -> tuple[RunStatus, str]:
    """The status and message a run records when ``error`` stopped it during ``step``."""
    cancelled = isinstance(error, (CancelledError, asyncio.CancelledError)) or (
        isinstance(error, ActivityError) and isinstance(error.cause, CancelledError)
    )
    if cancelled:
        return RunStatus.CANCELLED, f"cancelled during {step}"
    return RunStatus.FAILED, f"{step}: {reason(error)}"


# What a run's failure handling catches: every way an activity or the run itself can stop.
RUN_ERRORS = (ActivityError, CancelledError, asyncio.CancelledError)

STOP_WHEN_CANCELLED = "stop-after-a-step-when-cancelled"


def checkpoint() -> None:
    """Stops the run here if a cancel arrived while the last step was finishing.

    A step that waits for its cancellation returns normally when it completes before it
    hears of the cancel (at its next heartbeat, up to half a minute later); asyncio then
    keeps the request only as a count on the task, and the run would go on to "succeeded"
    after the API accepted the cancel. Runs recorded before this check replay as they ran.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling() and workflow.patched(STOP_WHEN_CANCELLED):
        raise asyncio.CancelledError("cancel requested while the step was finishing")


async def alert(event: FailureEvent) -> None:
    """Sends the failure alert; a webhook that stays down is logged, never the run's outcome."""
    try:
        await steps.notify_failure(event, **ALERT)
    except ActivityError as error:
        workflow.logger.error("failure alert for %s not delivered: %s", event.id, reason(error))


async def alert_restore(
    restore_id: str, application_id: str, workspace_id: str, status: RunStatus, message: str
) -> None:
    """The failure alert of a restore, of either kind (a backup's or a moment's)."""
    await alert(
        FailureEvent(
            "restore",
            restore_id,
            application_id,
            workspace_id,
            workflow.info().workflow_id,
            status,
            message,
        )
    )
