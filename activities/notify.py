"""The failure notifier: an audit event and a JSON POST to the configured webhook."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.settings import Settings
from db import audit

ACTOR = audit.Actor(label="system:notifier")
TARGETS = {"backup": "backup_execution", "restore": "backup_restore"}


@dataclass
class FailureEvent:
    kind: str  # backup | restore
    id: str  # the execution or restore id
    application_id: str
    workspace_id: str
    workflow_id: str
    status: str  # failed | cancelled
    message: str
    trigger: str | None = None


class Notifier:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings

    @activity.defn
    async def notify_failure(self, event: FailureEvent) -> None:
        """Audits the failure once, then alerts the webhook (Temporal retries a failed POST)."""
        if activity.info().attempt == 1:
            async with self.sessions() as session:
                audit.record(
                    session, ACTOR, f"{event.kind}.{event.status}", TARGETS[event.kind], event.id,
                    workspace_id=uuid.UUID(event.workspace_id),
                    details={"message": event.message, "workflow_id": event.workflow_id},
                )  # fmt: skip
                await session.commit()
        url = self.settings.failure_webhook_url
        if not url:
            return
        payload = {"event": f"{event.kind}.{event.status}", **asdict(event)}
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(url, json=payload)
        if response.status_code >= 300:
            raise ApplicationError(f"webhook answered {response.status_code}", type="WebhookError")
