"""Tells the workspaces' notification channels that chose ``storage.nearly_full`` when a storage
or a workspace's quota becomes nearly full (``services/storage_notices.py``), once per period.

Run by ``OverdueNoticesWorkflow`` (the ``overdue-notices`` schedule) after the overdue notices,
apart from any run. Each notice starts a channel notices workflow named by the period
(``activities/channels.dispatch``), then is recorded in the audit log; a period nobody's
channel chose is neither told nor recorded, so a channel that chooses the event later hears of
it while it lasts.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities.channels import dispatch
from contracts.channels import ChannelNotice
from db.models import NotificationChannel
from services import overdue, storage_notices
from services.storage_notices import FullNotice


def channel_notice(notice: FullNotice) -> ChannelNotice:
    return ChannelNotice(
        event="storage.nearly_full",
        key=notice.key,
        workspace_id=str(notice.workspace_id),
        storage_id=str(notice.storage_id) if notice.storage_id else None,
        message=notice.message(),
        occurred_at=datetime.now(UTC).isoformat(),
    )


class StorageNotifier:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], client: Client) -> None:
        self.sessions = sessions
        self.client = client

    @activity.defn
    async def notify_nearly_full(self) -> int:
        """Starts every nearly-full notice due now; returns how many were started."""
        async with self.sessions() as alone:  # held until every notice is started and recorded
            await overdue.tell_alone(alone)
            if not await alone.scalar(select(exists().where(NotificationChannel.enabled))):
                return 0
            due = await storage_notices.notices_due(alone)
            started = 0
            for notice in due:
                if notice.fullness is not None:
                    if not await dispatch(self.client, self.sessions, channel_notice(notice)):
                        continue  # nobody chose it: stays due
                    started += 1
                async with self.sessions() as session:
                    storage_notices.record(session, notice)
                    await session.commit()
            return started
