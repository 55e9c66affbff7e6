"""Starting a backup or restore run, and reading its timeline back, the same way for both."""

from __future__ import annotations

import logging
from typing import Any

from temporalio.client import Client, WorkflowHandle

from api import timeline
from api.problems import Problem
from core.search_attributes import for_run
from core.settings import CONTROL_TASK_QUEUE
from db.models import Application

log = logging.getLogger(__name__)


async def start_run(
    temporal: Client, workflow: Any, args: list[Any], workflow_id: str,
    application: Application, what: str,
) -> WorkflowHandle[Any, Any]:  # fmt: skip
    """Starts the run with the search attributes operators filter on; 503 if Temporal is down."""
    try:
        return await temporal.start_workflow(
            workflow,
            args=args,
            id=workflow_id,
            task_queue=CONTROL_TASK_QUEUE,
            search_attributes=for_run(application.workspace_id, application.id, "manual"),
        )
    except Exception as exc:
        raise Problem(
            503, "temporal-unavailable", "Temporal unavailable",
            f"the {what} could not be started ({type(exc).__name__}); nothing was recorded",
        ) from exc  # fmt: skip


async def with_timeline(
    body: dict[str, Any], temporal: Client, workflow_id: str | None, run_id: str | None
) -> dict[str, Any]:
    """Adds the run's steps and live progress; an unreadable history is said, not fatal."""
    if workflow_id:
        try:
            body["timeline"] = await timeline.read(temporal, workflow_id, run_id)
        except Exception as exc:
            log.warning("timeline of %s unreadable: %s", workflow_id, exc)
            body["timeline_error"] = f"the run's history is not readable ({type(exc).__name__})"
    return body
