"""Retry policies, timeouts and failure wording shared by the workflows."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TimeoutError,
    TimeoutType,
)

with workflow.unsafe.imports_passed_through():
    from activities.notify import Notifier
    from contracts.notify import FailureEvent

QUICK = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# Steps that only read and write the metadata database (begin, record the outcome): retried
# without an attempt limit, bounded in time by METADATA_BUDGET, so a database outage of
# minutes delays the record instead of losing it. Past the budget the run still ends, and
# the run reconciler settles its row from Temporal once the database is back.
METADATA = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=15),
)  # fmt: skip
METADATA_BUDGET = timedelta(minutes=30)
# The first step also waits for the API's row to become visible; if it never does, the
# request that started the run failed, and the run ends instead of waiting forever.
BEGIN_BUDGET = timedelta(minutes=5)
METADATA_STEP = timedelta(seconds=30)
# Data steps: five attempts over about half a minute ride out a storage or tool hiccup; past
# that the run fails with the reason instead of hiding the problem. (A metadata database
# outage is waited out inside the step: activities/support.py::read_metadata.)
DATA = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=5,
)
# Cleanup after a failure is best effort: a few tries, then a note on the row.
CLEANUP = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3)
NOTIFY = RetryPolicy(maximum_interval=timedelta(minutes=5), maximum_attempts=20)
HEARTBEAT = timedelta(seconds=30)
LONG = timedelta(hours=12)


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


def ended_by(error: BaseException, step: str) -> tuple[str, str]:
    """The status and message a run records when ``error`` stopped it during ``step``."""
    cancelled = isinstance(error, (CancelledError, asyncio.CancelledError)) or (
        isinstance(error, ActivityError) and isinstance(error.cause, CancelledError)
    )
    if cancelled:
        return "cancelled", f"cancelled during {step}"
    return "failed", f"{step}: {reason(error)}"


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
        await workflow.execute_activity_method(
            Notifier.notify_failure, event,
            start_to_close_timeout=timedelta(seconds=30), retry_policy=NOTIFY,
        )  # fmt: skip
    except ActivityError as error:
        workflow.logger.error("failure alert for %s not delivered: %s", event.id, reason(error))
