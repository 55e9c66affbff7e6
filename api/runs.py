"""Starting a backup or restore run, and reading its timeline back, the same way for both."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_object_session
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from api import timeline
from api.problems import Problem, conflict
from core import run_summary
from core.run_outcome import is_live
from core.search_attributes import for_run
from core.settings import CONTROL_TASK_QUEUE
from db import audit
from db.models import Application
from db.runs import (
    Run,
    kind_of,
    live_run_of,
    lock_application,
    still_running,
)
from workflows.settle_runs import SETTLE_RUNS_WORKFLOW

log = logging.getLogger(__name__)
SETTLE_NOW_ID = "runs-settle-now"
SETTLE_WAIT_SECONDS = 15.0


async def start_run(
    temporal: Client, workflow: Any, args: list[Any], workflow_id: str,
    application: Application, what: str,
) -> WorkflowHandle[Any, Any]:  # fmt: skip
    """Starts the run with the search attributes operators filter on, and its summary in words
    for the Temporal UI (from the run's row, flushed before); 503 if Temporal is down."""
    session = async_object_session(application)
    assert session is not None  # the application comes from the request's session
    text = await run_summary.for_run(session, application, workflow_id)
    try:
        return await temporal.start_workflow(
            workflow,
            args=args,
            id=workflow_id,
            task_queue=CONTROL_TASK_QUEUE,
            search_attributes=for_run(application.workspace_id, application.id, "manual"),
            static_summary=text.summary,
            static_details=text.details,
        )
    except Exception as exc:
        raise Problem(
            503, "temporal-unavailable", "Temporal unavailable",
            f"the {what} could not be started ({type(exc).__name__}); nothing was recorded",
        ) from exc  # fmt: skip


async def with_timeline(
    body: dict[str, Any], temporal: Client | None, workflow_id: str | None, run_id: str | None
) -> dict[str, Any]:
    """Adds the run's steps and live progress; an unreadable history is said, not fatal."""
    if workflow_id and temporal is None:
        body["timeline_error"] = "Temporal cannot be reached; the run's steps are not shown"
    elif workflow_id and temporal is not None:
        try:
            body["timeline"] = await timeline.read(temporal, workflow_id, run_id)
        except Exception as exc:
            log.warning("timeline of %s unreadable: %s", workflow_id, exc)
            body["timeline_error"] = f"the run's history is not readable ({type(exc).__name__})"
    return body


def _unavailable(exc: Exception) -> Problem:
    return Problem(
        503, "temporal-unavailable", "Temporal unavailable",
        f"the state of running work cannot be checked ({type(exc).__name__}); nothing was"
        " changed, retry later",
    )  # fmt: skip


async def settle_now(temporal: Client) -> None:
    """Runs the run reconciler at once (joining one already running) and waits for it.

    The reconciler, not the API, settles rows: it also sends the failure alert. A worker
    that does not answer in time leaves the row to the next scheduled pass.
    """
    try:
        handle = await temporal.start_workflow(
            SETTLE_RUNS_WORKFLOW, id=SETTLE_NOW_ID, task_queue=CONTROL_TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )  # fmt: skip
        await asyncio.wait_for(handle.result(), SETTLE_WAIT_SECONDS)
    except Exception as exc:
        log.warning("settling closed runs now failed: %s", exc)


async def settled_view(session: AsyncSession, temporal: Client | None, row: Run) -> None:
    """A row that says running while its workflow has closed is settled before it is shown."""
    if temporal is None or not still_running(row):
        return
    try:
        live = await is_live(temporal, row.workflow_id, row.run_id)
    except Exception as exc:
        log.warning("liveness of %s unknown: %s", row.workflow_id, exc)
        return
    if not live:
        await settle_now(temporal)
        await session.refresh(row)


async def refuse_if_busy(
    session: AsyncSession, temporal: Client, application: Application, what: str
) -> None:
    """Takes the application's run lock and answers 409 while a live run holds it.

    Rows that say running but whose workflow has closed do not block; the reconciler
    settles them.
    """
    await lock_application(session, application.id)
    try:
        busy = await live_run_of(session, temporal, application.id)
    except Exception as exc:
        raise _unavailable(exc) from exc
    if busy:
        raise conflict(
            f"a backup or restore of this application is running ({busy}); wait for it or"
            f" cancel it before starting a {what}",
            running_workflow_id=busy,
        )


async def cancel_run(
    session: AsyncSession, temporal: Client, row: Run, actor: audit.Actor,
    workspace_id: uuid.UUID,
) -> None:  # fmt: skip
    """Sends the cancellation to a run under way and audits it; 409 for a run that ended.

    A row that says running while its workflow has closed is settled instead, and the
    answer names the status it was settled with.
    """
    kind, target = kind_of(row)
    if still_running(row) and row.workflow_id:
        try:
            live = await is_live(temporal, row.workflow_id, row.run_id)
        except Exception:
            live = True  # let the cancel below report Temporal's state
        if not live:  # the run ended without recording it: settle it instead of pretending
            await settle_now(temporal)
            await session.refresh(row)
    if not still_running(row) or not row.workflow_id:
        raise conflict(
            f"the {kind} is {row.status}; only a {kind} under way can be cancelled",
            **{f"{kind}_status": row.status},
        )
    try:
        await temporal.get_workflow_handle(row.workflow_id, run_id=row.run_id).cancel()
    except Exception as exc:
        raise Problem(
            503, "temporal-unavailable", "Temporal unavailable",
            f"the cancellation could not be sent ({type(exc).__name__}); retry",
        ) from exc  # fmt: skip
    audit.record(
        session, actor, f"{kind}.cancel", target, row.id, workspace_id=workspace_id,
        details={"workflow_id": row.workflow_id},
    )  # fmt: skip
    await session.commit()
