"""A run's steps read back from its Temporal history, and live progress from heartbeats.

History alone cannot tell a running step: for an activity with a retry policy Temporal
writes ``ActivityTaskStarted`` only when the attempt ends, so a step that is executing
has just its ``ActivityTaskScheduled`` event. The workflow's pending activities say what
is happening now (started, waiting to retry, cancel requested), and they win over history
for the steps they list.

A closed run's steps never change, so its timeline is kept in this process after the
first read (bounded, least recently used first out): showing a finished backup or restore
again costs no Temporal call. A running run's timeline is kept for ``max_age`` seconds when
the caller allows it, so the clients polling one run share a Temporal read.
"""

from __future__ import annotations

import copy
import json
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client, WorkflowExecutionStatus

_OUTCOMES = {
    "activity_task_started_event_attributes": "running",
    "activity_task_completed_event_attributes": "completed",
    "activity_task_failed_event_attributes": "failed",
    "activity_task_timed_out_event_attributes": "timed_out",
    "activity_task_canceled_event_attributes": "cancelled",
}


_PENDING = {
    PendingActivityState.PENDING_ACTIVITY_STATE_STARTED: "running",
    PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED: "cancelling",
}


# Timelines of closed runs by (workflow id, run id); a few KB each.
_CLOSED: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
CLOSED_KEPT = 4096
# Timelines of running runs, with when they were read (time.monotonic()).
_RUNNING: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()
RUNNING_KEPT = 4096


def _keep(
    kept: OrderedDict[tuple[str, str], Any], limit: int, key: tuple[str, str], value: Any
) -> None:
    kept[key] = value
    kept.move_to_end(key)
    while len(kept) > limit:
        kept.popitem(last=False)


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


def _decode(payloads: Any) -> Any:
    items = list(payloads.payloads) if payloads is not None else []
    if not items:
        return None
    try:
        return json.loads(items[-1].data)
    except ValueError:
        return None


async def read(
    client: Client, workflow_id: str, run_id: str | None, *, max_age: float = 0.0
) -> dict[str, Any]:
    """The run's steps and live progress; a closed run's come from memory after one read,
    a running run's when they were read less than ``max_age`` seconds ago."""
    key = (workflow_id, run_id or "")
    if run_id and key in _CLOSED:
        _CLOSED.move_to_end(key)
        return copy.deepcopy(_CLOSED[key])
    if max_age > 0 and key in _RUNNING:
        read_at, kept = _RUNNING[key]
        if time.monotonic() - read_at <= max_age:
            return copy.deepcopy(kept)
    read_at = time.monotonic()
    timeline, closed = await _read(client, workflow_id, run_id)
    _RUNNING.pop(key, None)
    if run_id and closed:
        _keep(_CLOSED, CLOSED_KEPT, key, copy.deepcopy(timeline))
    elif not closed:
        _keep(_RUNNING, RUNNING_KEPT, key, (read_at, copy.deepcopy(timeline)))
    return timeline


async def _read(
    client: Client, workflow_id: str, run_id: str | None
) -> tuple[dict[str, Any], bool]:
    """What Temporal holds of the run (history, pending activities), then its timeline;
    True when the run has closed."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    events = [event async for event in handle.fetch_history_events()]
    description = await handle.describe()
    steps = _steps(events)
    progress = _live(steps, description.raw_description.pending_activities)
    timeline = {
        "workflow_status": description.status.name.lower() if description.status else None,
        "steps": [steps[k] for k in sorted(steps)],
        "progress": progress,
    }
    return timeline, description.status not in (None, WorkflowExecutionStatus.RUNNING)


def _steps(events: Iterable[HistoryEvent]) -> dict[int, dict[str, Any]]:
    """Each activity the history scheduled, by its scheduling event, with its last outcome."""
    steps: dict[int, dict[str, Any]] = {}
    for event in events:
        kind = event.WhichOneof("attributes")
        if kind == "activity_task_scheduled_event_attributes":
            scheduled = event.activity_task_scheduled_event_attributes
            steps[event.event_id] = {
                "activity_id": scheduled.activity_id,
                "step": scheduled.activity_type.name,
                "status": "scheduled",
                "scheduled_at": _time(event),
                "started_at": None,
                "completed_at": None,
                "attempts": 0,
                "last_failure": None,
            }
            continue
        status = _OUTCOMES.get(kind or "")
        if status is None:
            continue
        attrs = getattr(event, kind or "")
        step = steps.get(attrs.scheduled_event_id)
        if step is None:
            continue
        step["status"] = status
        if status == "running":
            step["started_at"] = _time(event)
            step["attempts"] = attrs.attempt
            if attrs.HasField("last_failure"):
                step["last_failure"] = attrs.last_failure.message or None
            continue
        step["completed_at"] = _time(event)
        if status in ("failed", "timed_out"):
            step["last_failure"] = attrs.failure.message or status.replace("_", " ")
    return steps


def _live(
    steps: dict[int, dict[str, Any]], pending_activities: Iterable[PendingActivityInfo]
) -> dict[str, Any] | None:
    """Lays what is happening now over the history's steps; the progress a step heartbeats."""
    progress = None
    by_id = {s["activity_id"]: s for s in steps.values()}
    for pending in pending_activities:
        step = by_id.get(pending.activity_id)
        if step is not None:
            step["attempts"] = max(step["attempts"], pending.attempt)
            if pending.HasField("last_failure") and pending.last_failure.message:
                step["last_failure"] = pending.last_failure.message
            live = _PENDING.get(pending.state)
            if live is not None:
                step["status"] = live
                if pending.HasField("last_started_time"):
                    step["started_at"] = pending.last_started_time.ToDatetime(tzinfo=UTC)
            elif pending.attempt > 1:
                step["status"] = "retrying"  # waiting for its next attempt (backoff)
        details = _decode(pending.heartbeat_details)
        if isinstance(details, dict) and details:
            progress = {"step": pending.activity_type.name, **details}
    return progress
