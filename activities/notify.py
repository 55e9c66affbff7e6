"""The failure alert: a JSON POST to the configured webhook for every failed or cancelled run,
and the notice to the workspace's notification channels that chose the event.

The audit event of the failure is written with the row's status (``db/runs.py``); this step
only tells the outside world, and Temporal retries it while the webhook is down. The channels
are told by a workflow of their own (``workflows/channel_notices.py``), started here first,
so a platform webhook that is down delays no channel, and a channel that is down delays
nothing.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.channels import dispatch
from contracts.channels import ChannelNotice
from contracts.notify import FailureEvent
from core.settings import Settings
from core.states import RunStatus

# (run kind, status) -> the channels' event; restores and cancelled drills have none
CHANNEL_EVENTS = {
    ("backup", RunStatus.FAILED): "backup.failed",
    ("backup", RunStatus.CANCELLED): "backup.cancelled",
    ("drill", RunStatus.FAILED): "drill.failed",
}


def channel_notice(event: FailureEvent) -> ChannelNotice | None:
    name = CHANNEL_EVENTS.get((event.kind, RunStatus(event.status)))
    if name is None:
        return None
    return ChannelNotice(
        event=name,
        key=event.id,
        workspace_id=event.workspace_id,
        application_id=event.application_id,
        run_kind=event.kind,
        run_id=event.id,
        status=str(event.status),
        trigger=str(event.trigger) if event.trigger else None,
        workflow_id=event.workflow_id,
        message=event.message,
        occurred_at=datetime.now(UTC).isoformat(),
    )


class Notifier:
    def __init__(
        self,
        settings: Settings,
        client: Client | None = None,
        sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.sessions = sessions

    @activity.defn
    async def notify_failure(self, event: FailureEvent) -> None:
        notice = channel_notice(event)
        if notice is not None and self.client is not None and self.sessions is not None:
            await dispatch(self.client, self.sessions, notice)
        url = self.settings.failure_webhook_url
        if not url:
            return
        payload = {"event": f"{event.kind}.{event.status}", **asdict(event)}
        async with httpx.AsyncClient(timeout=10) as client:
            await deliver(client, url, payload)


async def deliver(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> None:
    """One JSON POST to the webhook; a failure is a retryable ``WebhookError``."""
    try:
        response = await client.post(url, json=payload)
    except httpx.HTTPError as exc:
        raise ApplicationError(f"webhook unreachable: {exc}", type="WebhookError") from None
    if response.status_code >= 300:
        raise ApplicationError(f"webhook answered {response.status_code}", type="WebhookError")
