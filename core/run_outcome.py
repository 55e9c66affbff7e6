"""What Temporal says about a run: still live, or closed with which outcome and why.

The API's "already running" rule and the run reconciler trust only this: a row that says
``running`` while its workflow is closed is settled from here, never believed.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from core.states import RunStatus

# Longest reason stored on a row; restic and pg_dump can print far more than a person reads.
REASON_LIMIT = 2000

_STATUS = {
    WorkflowExecutionStatus.COMPLETED: RunStatus.SUCCEEDED,
    WorkflowExecutionStatus.FAILED: RunStatus.FAILED,
    WorkflowExecutionStatus.TIMED_OUT: RunStatus.FAILED,
    WorkflowExecutionStatus.TERMINATED: RunStatus.FAILED,
    WorkflowExecutionStatus.CANCELED: RunStatus.CANCELLED,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: RunStatus.FAILED,
}


@dataclass(frozen=True)
class Outcome:
    status: RunStatus  # succeeded, failed or cancelled
    reason: str


def shorten(text: str, limit: int = REASON_LIMIT) -> str:
    """Keeps the head (what failed) and the tail (the tool's last words) of a long message."""
    text = text.strip()
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} […] {text[-half:]}"


def failure_reason(failure: Failure) -> str:
    """The innermost message of a failure chain: the application's own words, not wrappers."""
    messages = []
    current: Failure | None = failure
    while current is not None:
        if current.message:
            messages.append(current.message)
        current = current.cause if current.HasField("cause") else None
    return messages[-1] if messages else "no reason recorded"


async def _close_reason(client: Client, workflow_id: str, run_id: str | None) -> str:
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            return failure_reason(event.workflow_execution_failed_event_attributes.failure)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            why = event.workflow_execution_terminated_event_attributes.reason
            return f"terminated in Temporal{': ' + why if why else ''}"
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
            return "the workflow ran past its timeout"
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
            return "cancelled"
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            return "continued as a new run"
    return "closed"


async def outcome(client: Client, workflow_id: str, run_id: str | None) -> Outcome | None:
    """None while the workflow is live; otherwise how it ended (unknown workflows failed)."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return Outcome(
            RunStatus.FAILED,
            f"Temporal has no workflow {workflow_id}: it never started, or its history"
            " was removed by the namespace's retention",
        )
    status = description.status
    if status is None or status == WorkflowExecutionStatus.RUNNING:
        return None
    if status == WorkflowExecutionStatus.COMPLETED:
        return Outcome(RunStatus.SUCCEEDED, "completed")
    return Outcome(_STATUS[status], shorten(await _close_reason(client, workflow_id, run_id)))


async def is_live(client: Client, workflow_id: str | None, run_id: str | None) -> bool:
    """A row without a workflow id counts as live: it was just created and starts now."""
    if not workflow_id:
        return True
    return await outcome(client, workflow_id, run_id) is None
