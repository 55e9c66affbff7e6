"""The failure event a run hands to the notifier activity."""

from __future__ import annotations

from dataclasses import dataclass

from core.states import RunStatus, Trigger


@dataclass
class FailureEvent:
    kind: str  # backup | restore
    id: str  # the execution or restore id
    application_id: str
    workspace_id: str
    workflow_id: str
    status: RunStatus  # failed or cancelled
    message: str
    trigger: Trigger | None = None
