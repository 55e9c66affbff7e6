"""Run exclusivity and run starts: the one home of "one backup or restore of an app at a time".

The API, before it records a run, and the backup's first step, before it goes on, both call
``claim_application``: the same lock, the same question, the same answer.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_object_session
from temporalio.client import Client, WorkflowHandle

from contracts.task_queues import CONTROL_TASK_QUEUE
from core.search_attributes import for_run
from core.states import Trigger
from db import run_names
from db.models import Application
from db.runs import live_run_of, lock_application


class RunInProgress(Exception):
    """Another run of the application is under way; ``workflow_id`` names it."""

    def __init__(self, workflow_id: str, kind: str = "backup or restore") -> None:
        super().__init__(f"a {kind} of this application is running ({workflow_id})")
        self.workflow_id = workflow_id


class TemporalRefused(Exception):
    """Temporal did not answer or did not accept; ``cause`` is its error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


class LivenessUnknown(TemporalRefused):
    """Temporal could not say whether a run is still live."""


class RunNotStarted(TemporalRefused):
    """Temporal did not start the run's workflow; nothing of the run was committed."""


async def claim_application(
    session: AsyncSession,
    temporal: Client,
    application_id: uuid.UUID,
    exclude: uuid.UUID | None = None,
) -> None:
    """Takes the application's run lock (until the transaction ends) and refuses while
    another backup or restore of it is live (``exclude``: the caller's own row).

    Rows that say running while their workflow has closed do not block: the reconciler
    settles them. The lock is re-entrant: a caller that must write under it first (the
    backup's first step inserts its scheduled row) takes it before with
    ``db.runs.lock_application`` and still asks here.
    """
    await lock_application(session, application_id)
    try:
        busy = await live_run_of(session, temporal, application_id, exclude=exclude)
    except Exception as exc:
        raise LivenessUnknown(exc) from exc
    if busy:
        raise RunInProgress(busy)


async def start_run(
    temporal: Client,
    workflow: Any,
    args: list[Any],
    workflow_id: str,
    application: Application,
) -> WorkflowHandle[Any, Any]:
    """Starts the run with the search attributes operators filter on and its summary in words
    for the Temporal UI (from the run's row, flushed before in the application's session)."""
    session = async_object_session(application)
    assert session is not None  # the application was loaded in the caller's session
    text = await run_names.for_run(session, application, workflow_id)
    try:
        return await temporal.start_workflow(
            workflow,
            args=args,
            id=workflow_id,
            task_queue=CONTROL_TASK_QUEUE,
            search_attributes=for_run(application.workspace_id, application.id, Trigger.MANUAL),
            static_summary=text.summary,
            static_details=text.details,
        )
    except Exception as exc:
        raise RunNotStarted(exc) from exc
