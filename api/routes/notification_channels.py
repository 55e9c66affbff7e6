"""Notification channels of a workspace: signed webhook, Slack, e-mail; workspace admins only.

Secrets (the HMAC key, the Slack URL, the SMTP password) are write-only: answers say only
whether one is stored (``secret_set``). ``POST …/{id}/test`` sends a test notice at once and
records the outcome on the channel like any delivery (docs/alerts.md).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response

from api.deps import SessionDep, SettingsDep, WorkspaceAdmin
from api.pagination import Cursor, Limit, Page, fetch_page
from api.problems import refusals
from api.schemas.notification_channels import (
    NotificationChannelCreate,
    NotificationChannelOut,
    NotificationChannelUpdate,
    TestSendOut,
)
from db.models import NotificationChannel
from services import notification_channels as channels

router = APIRouter(
    prefix="/api/v1/workspaces/{workspace_id}/notification-channels",
    tags=["notification channels"],
)


def present(channel: NotificationChannel) -> dict[str, Any]:
    return NotificationChannelOut.model_validate(channels.present(channel)).model_dump()


@router.post("", status_code=201, response_model=NotificationChannelOut)
async def create_notification_channel(
    body: NotificationChannelCreate,
    access: WorkspaceAdmin,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    with refusals():
        channel = await channels.create(
            session, settings, access.principal.actor, access.workspace.id, body.model_dump()
        )
    await session.commit()
    await session.refresh(channel)
    return present(channel)


@router.get("", response_model=Page[NotificationChannelOut])
async def list_notification_channels(
    access: WorkspaceAdmin, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, object]:
    items, next_cursor = await fetch_page(
        session,
        channels.of_workspace(access.workspace.id),
        NotificationChannel.created_at,
        NotificationChannel.id,
        limit,
        cursor,
    )
    return {"items": [present(c) for c in items], "next_cursor": next_cursor}


@router.get("/{channel_id}", response_model=NotificationChannelOut)
async def get_notification_channel(
    channel_id: uuid.UUID, access: WorkspaceAdmin, session: SessionDep
) -> dict[str, Any]:
    with refusals():
        return present(await channels.get(session, access.workspace.id, channel_id))


@router.patch("/{channel_id}", response_model=NotificationChannelOut)
async def update_notification_channel(
    channel_id: uuid.UUID,
    body: NotificationChannelUpdate,
    access: WorkspaceAdmin,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Rename, choose events, pause (``enabled``), change the target or replace the secret."""
    with refusals():
        channel = await channels.get(session, access.workspace.id, channel_id)
        channel = await channels.update(
            session,
            settings,
            access.principal.actor,
            channel,
            body.model_dump(exclude_unset=True),
        )
    await session.commit()
    await session.refresh(channel)
    return present(channel)


@router.delete("/{channel_id}", status_code=204)
async def delete_notification_channel(
    channel_id: uuid.UUID, access: WorkspaceAdmin, session: SessionDep
) -> Response:
    with refusals():
        channel = await channels.get(session, access.workspace.id, channel_id)
        await channels.delete(session, access.principal.actor, channel)
    await session.commit()
    return Response(status_code=204)


@router.post("/{channel_id}/test", response_model=TestSendOut)
async def test_notification_channel(
    channel_id: uuid.UUID, access: WorkspaceAdmin, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Sends a test notice now (also to a paused channel); ``delivered`` false with the
    channel's error when it did not accept it. The outcome is recorded on the channel."""
    with refusals():
        channel = await channels.get(session, access.workspace.id, channel_id)
        error = await channels.test_send(session, settings, access.principal.actor, channel)
    await session.commit()
    await session.refresh(channel)
    return {"delivered": error is None, "error": error, "channel": present(channel)}
