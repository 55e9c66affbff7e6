"""Links from API answers to the run in the Temporal UI."""

from __future__ import annotations

from urllib.parse import quote

from core.settings import Settings


def workflow_url(settings: Settings, workflow_id: str) -> str:
    base = settings.temporal_ui_url.rstrip("/")
    namespace = quote(settings.temporal_namespace, safe="")
    return f"{base}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"


def run_url(settings: Settings, workflow_id: str | None) -> str | None:
    """The run's page in the Temporal UI; None for a run that has no workflow yet."""
    return workflow_url(settings, workflow_id) if workflow_id else None
