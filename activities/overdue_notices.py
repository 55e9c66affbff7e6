"""Tells the failure webhook and the workspaces' notification channels when an application's
backups, drills or offsite copies become overdue, or its continuous archiving stalls, and when
they recover; and when an archiver lost its slot (``services/archive_notices.py``).

Run by ``OverdueNoticesWorkflow`` from the ``overdue-notices`` system schedule, apart from any
run, so a webhook that is down never delays or fails a backup. Each notice is recorded in the
audit log right after the webhook accepted it (``services/overdue.py``), so a retried attempt
sends only what is still untold; a worker dying between the two sends that one notice again.
Channels are told by a workflow of their own per notice (``activities/channels.dispatch``),
named by the notice, so a retried attempt starts none twice.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities.channels import dispatch
from activities.notify import deliver
from contracts.channels import ChannelNotice
from core.settings import Settings
from db.models import NotificationChannel
from services import archive_notices, offsite_targets, overdue, recovery_window

# what each kind of overdue period is about: (the event's prefix, overdue, recovered); the
# overdue words may name the period's start ({since}) and the last success ({last})
_WORDS = {
    "backup": ("application", "no successful backup since {since}", "a backup succeeded"),
    "drill": (
        "drill",
        "no successful restore drill since {since}",
        "a restore drill succeeded",
    ),
    "offsite": (
        "offsite",
        "backups have waited for their offsite copy past their allowance since {since}",
        "an offsite copy landed",
    ),
    "archive": (
        "archive",
        "continuous archiving stalled: no WAL reached the storage after {last}; a restore to a"
        " later moment is refused until the archiver ships again",
        "the archiver ships WAL again",
    ),
}


def channel_notice(notice: overdue.Notice) -> ChannelNotice:
    """A channel's ``application.overdue`` / ``application.recovered`` (backups),
    ``drill.…`` (drills), ``offsite.…`` (offsite copies) or ``archive.…`` (continuous
    archiving stalled), named by the overdue period."""
    since = notice.overdue_since.isoformat()
    last = notice.last_success.isoformat() if notice.last_success else "archiving began"
    prefix, late, back = _WORDS[notice.kind]
    return ChannelNotice(
        event=f"{prefix}.{notice.event}",
        key=f"{notice.application_id}-{since}",
        workspace_id=str(notice.workspace_id),
        application_id=str(notice.application_id),
        overdue_since=since,
        message=(
            late.format(since=since, last=last)
            if notice.event == "overdue"
            else f"{back}: no longer overdue"
        ),
        occurred_at=since,
    )


def slot_notice(lost: archive_notices.SlotLost) -> ChannelNotice:
    """A channel's ``archive.slot_lost``, named by the archiver's audit event."""
    return ChannelNotice(
        event=archive_notices.LOST,
        key=str(lost.event_id),
        workspace_id=str(lost.workspace_id),
        application_id=str(lost.application_id),
        message=lost.message(),
        occurred_at=lost.occurred_at.isoformat(),
    )


class OverdueNotifier:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        client: Client | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.client = client

    @activity.defn
    async def notify_overdue(self) -> int:
        """Sends every notice due now; returns how many were sent."""
        async with self.sessions() as alone:  # held until every notice is told and recorded
            await overdue.tell_alone(alone)
            channels = self.client is not None and bool(
                await alone.scalar(select(exists().where(NotificationChannel.enabled)))
            )
            if not self.settings.failure_webhook_url and not channels:
                return 0
            lags = await offsite_targets.offsite_lags(alone, self.settings)
            archiving = await recovery_window.archiving_states(alone, self.settings)
            due = await overdue.notices_due(alone, self.settings, offsite=lags, archiving=archiving)
            lost = await archive_notices.notices_due(alone)
            sent = 0
            async with httpx.AsyncClient(timeout=10) as client:
                for notice in due:
                    told = channel_notice(notice)
                    if await self._tell(client, channels, told, notice.payload()):
                        async with self.sessions() as session:
                            overdue.record_notice(session, notice)
                            await session.commit()
                        sent += 1
                for slot in lost:
                    if await self._tell(client, channels, slot_notice(slot), slot.payload()):
                        async with self.sessions() as session:
                            archive_notices.record(session, slot)
                            await session.commit()
                        sent += 1
            return sent

    async def _tell(
        self,
        client: httpx.AsyncClient,
        channels: bool,
        told: ChannelNotice,
        payload: dict[str, Any],
    ) -> bool:
        """Starts the channels' notice and posts the webhook's; False when nobody was told
        (no webhook, no channel chose it): the notice stays due for a channel that chooses
        it later."""
        started = False
        if channels and self.client is not None:
            started = await dispatch(self.client, self.sessions, told)
        url = self.settings.failure_webhook_url
        if url:
            await deliver(client, url, payload)
        return bool(url) or started
