"""Links from API answers to the run in the Temporal UI."""

from __future__ import annotations

from urllib.parse import quote

from core.settings import Settings


def workflow_url(settings: Settings, workflow_id: str) -> str:
    base = settings.temporal_ui_url.rstrip("/")
    namespace = quote(settings.temporal_namespace, safe="")
    return f"{base}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"
