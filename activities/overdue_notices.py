"""Tells the failure webhook when an application becomes overdue and when it recovers.

Run by ``OverdueNoticesWorkflow`` from the ``overdue-notices`` system schedule, apart from any
run, so a webhook that is down never delays or fails a backup. Each notice is recorded in the
audit log right after the webhook accepted it (``services/overdue.py``), so a retried attempt
sends only what is still untold; a worker dying between the two sends that one notice again.
"""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.notify import deliver
from core.settings import Settings
from services import overdue


class OverdueNotifier:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings

    @activity.defn
    async def notify_overdue(self) -> int:
        """Sends every notice due now; returns how many were sent."""
        url = self.settings.failure_webhook_url
        if not url:
            return 0
        async with self.sessions() as session:
            due = await overdue.notices_due(session, self.settings)
        async with httpx.AsyncClient(timeout=10) as client:
            for notice in due:
                await deliver(client, url, notice.payload())
                async with self.sessions() as session:
                    overdue.record_notice(session, notice)
                    await session.commit()
        return len(due)
