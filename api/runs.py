"""A run (backup, restore, drill) as the API answers about it, the same way for each: its
timeline, its settled state, its cancellation (a run that cannot start is refused by
``api/problems.py::refusals``)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from api import timeline
from api.problems import conflict, temporal_unavailable
from contracts.task_queues import CONTROL_TASK_QUEUE
from core.run_outcome import is_live
from db import audit
from db.runs import Run, kind_of, still_running
from workflows.settle_runs import SETTLE_RUNS_WORKFLOW

log = logging.getLogger(__name__)
SETTLE_NOW_ID = "runs-settle-now"
SETTLE_WAIT_SECONDS = 15.0
# A running run is read from Temporal at most once per this many seconds per API process,
# however many clients poll it at once: the read that settles a row also shows its steps,
# and a burst of polls shares it, while no answer is more than a moment old.
POLL_FRESH_SECONDS = 0.25


async def with_timeline(body: dict[str, Any], temporal: Client | None, row: Run) -> dict[str, Any]:
    """Adds the run's steps and live progress; an unreadable history is said, not fatal.

    A row that still runs may be shown from a read :data:`POLL_FRESH_SECONDS` old; one that
    has ended never is (its closed timeline is read once, then kept).
    """
    workflow_id = row.workflow_id
    if workflow_id and temporal is None:
        body["timeline_error"] = "Temporal cannot be reached; the run's steps are not shown"
    elif workflow_id and temporal is not None:
        max_age = POLL_FRESH_SECONDS if still_running(row) else 0.0
        try:
            body["timeline"] = await timeline.read(
                temporal, workflow_id, row.run_id, max_age=max_age
            )
        except Exception as exc:
            log.warning("timeline of %s unreadable: %s", workflow_id, exc)
            body["timeline_error"] = f"the run's history is not readable ({type(exc).__name__})"
    return body


async def settle_now(temporal: Client) -> None:
    """Runs the run reconciler at once (joining one already running) and waits for it.

    The reconciler, not the API, settles rows: it also sends the failure alert. A worker
    that does not answer in time leaves the row to the next scheduled pass.
    """
    try:
        handle = await temporal.start_workflow(
            SETTLE_RUNS_WORKFLOW,
            id=SETTLE_NOW_ID,
            task_queue=CONTROL_TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        await asyncio.wait_for(handle.result(), SETTLE_WAIT_SECONDS)
    except Exception as exc:
        log.warning("settling closed runs now failed: %s", exc)


async def settled_view(
    session: AsyncSession, temporal: Client | None, row: Run, *, timeline_follows: bool = False
) -> None:
    """A row that says running while its workflow has closed is settled before it is shown
    or cancelled; a liveness Temporal cannot tell leaves the row as it is.

    A detail (``timeline_follows``) learns liveness from the timeline read it then shows
    (:data:`POLL_FRESH_SECONDS` old at most); a list or a cancellation asks Temporal with
    one describe.
    """
    if temporal is None or not still_running(row) or not row.workflow_id:
        return
    if timeline_follows:
        try:
            seen = await timeline.read(
                temporal, row.workflow_id, row.run_id, max_age=POLL_FRESH_SECONDS
            )
        except Exception as exc:  # the liveness check below says what is wrong
            log.debug("timeline of %s unreadable: %s", row.workflow_id, exc)
        else:
            if seen["workflow_status"] == "running":
                return
    try:
        live = await is_live(temporal, row.workflow_id, row.run_id)
    except Exception as exc:
        log.warning("liveness of %s unknown: %s", row.workflow_id, exc)
        return
    if not live:
        await settle_now(temporal)
        await session.refresh(row)


async def cancel_run(
    session: AsyncSession,
    temporal: Client,
    row: Run,
    actor: audit.Actor,
    workspace_id: uuid.UUID,
) -> None:
    """Sends the cancellation to a run under way and audits it; 409 for a run that ended.

    A row that says running while its workflow has closed is settled instead, and the
    answer names the status it was settled with.
    """
    kind, target = kind_of(row)
    await settled_view(session, temporal, row)
    if not still_running(row) or not row.workflow_id:
        raise conflict(
            f"the {kind} is {row.status}; only a {kind} under way can be cancelled",
            **{f"{kind}_status": row.status},
        )
    try:
        await temporal.get_workflow_handle(row.workflow_id, run_id=row.run_id).cancel()
    except Exception as exc:
        raise temporal_unavailable("the cancellation could not be sent", exc, "retry") from exc
    audit.record(
        session,
        actor,
        f"{kind}.cancel",
        target,
        row.id,
        workspace_id=workspace_id,
        details={"workflow_id": row.workflow_id},
    )
    await session.commit()
