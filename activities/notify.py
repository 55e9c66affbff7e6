"""The failure alert: a JSON POST to the configured webhook for every failed or cancelled run.

The audit event of the failure is written with the row's status (``db/runs.py``); this step
only tells the outside world, and Temporal retries it while the webhook is down.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.notify import FailureEvent
from core.settings import Settings


class Notifier:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn
    async def notify_failure(self, event: FailureEvent) -> None:
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
