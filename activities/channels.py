"""Sends notices to a workspace's notification channels (``workflows/channel_notices.py``)
and starts that workflow for an event (``dispatch``) from the steps that notice one.

Secrets are opened here, by channel id, from the sealed column: never carried by a workflow.
"""

from __future__ import annotations

import contextlib
import logging
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from contracts.channels import (
    CHANNEL_NOTICES_WORKFLOW,
    ChannelNotice,
    ChannelSend,
    notices_workflow_id,
)
from contracts.task_queues import CONTROL_TASK_QUEUE
from core.crypto import CryptoError
from core.settings import Settings
from core.states import RunStatus
from db.models import Application, BackupExecution, NotificationChannel
from services import notification_channels as channels

log = logging.getLogger(__name__)


async def subscribed(session: AsyncSession, notice: ChannelNotice) -> list[str]:
    """The enabled channels of the notice's workspace that chose its event."""
    found = await session.scalars(
        select(NotificationChannel)
        .where(
            NotificationChannel.workspace_id == uuid.UUID(notice.workspace_id),
            NotificationChannel.enabled.is_(True),
        )
        .order_by(NotificationChannel.created_at)
    )
    return [str(c.id) for c in found if notice.event in c.events]


async def dispatch(
    client: Client, sessions: async_sessionmaker[AsyncSession], notice: ChannelNotice
) -> bool:
    """Starts the notice's workflow when a channel wants it; True when started (or already)."""
    async with sessions() as session:
        if not await subscribed(session, notice):
            return False
    with contextlib.suppress(WorkflowAlreadyStartedError):  # a retried step: already told
        await client.start_workflow(
            CHANNEL_NOTICES_WORKFLOW,
            notice,
            id=notices_workflow_id(notice),
            task_queue=CONTROL_TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    return True


class ChannelActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings

    @activity.defn
    async def channels_for_notice(self, notice: ChannelNotice) -> list[str]:
        async with self.sessions() as session:
            return await subscribed(session, notice)

    @activity.defn
    async def send_channel_notice(self, job: ChannelSend) -> str:
        """One delivery attempt, recorded on the channel; a refusal is retried."""
        notice = job.notice
        async with self.sessions() as session:
            channel = await session.get(NotificationChannel, uuid.UUID(job.channel_id))
            if channel is None or not channel.enabled or notice.event not in channel.events:
                return "skipped"  # removed, paused or changed its mind since
            body = await channels.payload(session, self.settings, notice.__dict__)
            try:
                await channels.send(self.settings, channel, body)
                error = None
            except channels.DeliveryFailed as exc:
                error = str(exc)
            except CryptoError as exc:
                error = str(exc)
                channels.record_delivery(channel, error)
                await session.commit()
                raise ApplicationError(error, type="ChannelUnusable") from None
            channels.record_delivery(channel, error)
            await session.commit()
        if error is not None:
            raise ApplicationError(error, type="ChannelDeliveryFailed")
        return "delivered"


async def recovery_of(session: AsyncSession, execution: BackupExecution) -> ChannelNotice | None:
    """``backup.recovered`` when the application's previous finished backup (a cancel is not
    an outcome) failed: the first success after a failure."""
    previous = await session.scalar(
        select(BackupExecution.status)
        .where(
            BackupExecution.application_id == execution.application_id,
            BackupExecution.id != execution.id,
            BackupExecution.completed_at.is_not(None),
            BackupExecution.status.in_([RunStatus.SUCCEEDED, RunStatus.PRUNED, RunStatus.FAILED]),
        )
        .order_by(BackupExecution.completed_at.desc())
        .limit(1)
    )
    if previous != RunStatus.FAILED:
        return None
    application = await session.get(Application, execution.application_id)
    assert application is not None
    return ChannelNotice(
        event="backup.recovered",
        key=str(execution.id),
        workspace_id=str(application.workspace_id),
        application_id=str(execution.application_id),
        run_kind="backup",
        run_id=str(execution.id),
        status=str(RunStatus.SUCCEEDED),
        trigger=str(execution.trigger) if execution.trigger else None,
        workflow_id=execution.workflow_id,
        message="the backup succeeded after a failed one",
        occurred_at=execution.completed_at.isoformat() if execution.completed_at else None,
    )


async def tell_recovery(
    client: Client, sessions: async_sessionmaker[AsyncSession], execution_id: uuid.UUID
) -> None:
    """After a success is recorded: starts the recovered notice, never failing the backup
    (a Temporal that cannot take it is logged; the backup stays succeeded)."""
    try:
        async with sessions() as session:
            execution = await session.get(BackupExecution, execution_id)
            notice = await recovery_of(session, execution) if execution else None
        if notice is not None:
            await dispatch(client, sessions, notice)
    except Exception as exc:  # the success is recorded; a lost notice is only logged
        log.warning("recovered notice for backup %s not started: %s", execution_id, exc)
