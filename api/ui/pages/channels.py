"""A workspace's notification channels (workspace admins, as in the API): the list with each
channel's state, adding one, choosing its events, sending a test and removing it.

Every write goes through ``services/notification_channels.py`` with the API's bodies, so the
rules, the sealing of secrets and the audit are the API's. Secrets are write-only here too: a
form drawn again after a refusal never carries them back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData

from api.deps import SessionDep, WorkspaceAccess, get_settings, workspace_admin, workspace_reader
from api.pagination import page_of
from api.problems import refusals
from api.schemas.notification_channels import NotificationChannelCreate, NotificationChannelUpdate
from api.ui.pages.shared import (
    REFUSALS,
    Reader,
    Writer,
    checked,
    from_form,
    go,
    optional,
    page_router,
    refused,
    render,
    text,
)
from api.ui.sessions import SignedIn
from contracts.channels import EVENTS
from services import notification_channels as channels

router = page_router()
KINDS = (("webhook", "signed webhook"), ("slack", "Slack"), ("email", "e-mail (SMTP)"))


async def _admin(session: SessionDep, signed: SignedIn, workspace_id: uuid.UUID) -> WorkspaceAccess:
    return await workspace_admin(await workspace_reader(workspace_id, signed.principal, session))


def _target(form: FormData, kind: str) -> dict[str, Any]:
    """The fields of the chosen kind (each kind has its own inputs); empty ones left out."""
    fields: dict[str, Any]
    if kind == "webhook":
        fields = {"url": optional(form, "webhook_url"), "secret": optional(form, "webhook_secret")}
    elif kind == "slack":
        fields = {"url": optional(form, "slack_url")}
    elif kind == "email":
        recipients = [r for r in text(form, "recipients").replace(",", " ").split() if r]
        fields = {
            "recipients": recipients or None,
            "sender": optional(form, "sender"),
            "smtp_host": optional(form, "smtp_host"),
            "smtp_port": optional(form, "smtp_port"),
            "starttls": checked(form, "starttls"),
            "username": optional(form, "username"),
            "password": optional(form, "password"),
        }
    else:
        return {}
    return {k: v for k, v in fields.items() if v is not None}


def _events(form: FormData) -> list[str]:
    return [e for e in form.getlist("events") if isinstance(e, str)]


async def _page(
    request: Request,
    signed: SignedIn,
    session: SessionDep,
    access: WorkspaceAccess,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    listed, _ = await page_of(session, channels.of_workspace(access.workspace.id), 200, None)
    return render(
        request,
        "channels.html",
        signed,
        status_code,
        access=access,
        channels=[channels.present(c) for c in listed],
        events=EVENTS,
        kinds=KINDS,
        **extra,
    )


@router.get("/workspaces/{workspace_id}/channels", response_class=HTMLResponse)
async def channels_page(
    request: Request, workspace_id: uuid.UUID, signed: Reader, session: SessionDep
) -> Response:
    access = await _admin(session, signed, workspace_id)
    return await _page(request, signed, session, access)


async def _write(
    request: Request,
    workspace_id: uuid.UUID,
    signed: SignedIn,
    session: SessionDep,
    action: Callable[[WorkspaceAccess, FormData], Coroutine[Any, Any, dict[str, Any] | None]],
    refused_at: Callable[[FormData], dict[str, Any]],
) -> Response:
    """Runs a write as the API's route would; its refusal is shown on the page (``refused_at``
    says where), its outcome (a test's) too, else the browser goes back to the list."""
    access = await _admin(session, signed, workspace_id)
    form = await request.form()
    try:
        shown = await action(access, form)
        await session.commit()
    except REFUSALS as exc:
        signed, status, words = await refused(request, session, exc)
        access = await _admin(session, signed, workspace_id)
        shown = {**refused_at(form), "error": words}
        return await _page(request, signed, session, access, status, **shown)
    if shown is not None:
        return await _page(request, signed, session, access, **shown)
    return go(request, f"/ui/workspaces/{workspace_id}/channels")


def _at(channel_id: uuid.UUID) -> Callable[[FormData], dict[str, Any]]:
    """A refusal about one channel: shown above the list."""
    return lambda _: {"refused_at": str(channel_id)}


def _new_form(form: FormData) -> dict[str, Any]:
    """The add form drawn again with what was typed, except every secret."""
    kept = {k: v for k, v in form.items() if k not in ("webhook_secret", "slack_url", "password")}
    return {"form": kept, "chosen": _events(form), "refused_at": "new"}


@router.post("/workspaces/{workspace_id}/channels", response_class=HTMLResponse)
async def create_channel(
    request: Request, workspace_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    async def action(access: WorkspaceAccess, form: FormData) -> None:
        kind = text(form, "kind")
        values = {"name": text(form, "name"), "kind": kind, "events": _events(form)}
        body = from_form(NotificationChannelCreate, {**values, **_target(form, kind)})
        with refusals():
            await channels.create(
                session,
                get_settings(request),
                access.principal.actor,
                access.workspace.id,
                body.model_dump(),
            )

    return await _write(request, workspace_id, signed, session, action, _new_form)


@router.post("/workspaces/{workspace_id}/channels/{channel_id}", response_class=HTMLResponse)
async def update_channel(
    request: Request,
    workspace_id: uuid.UUID,
    channel_id: uuid.UUID,
    signed: Writer,
    session: SessionDep,
) -> Response:
    """The channel's events and whether it is paused (its target and secret: through the API)."""

    async def action(access: WorkspaceAccess, form: FormData) -> None:
        body = from_form(
            NotificationChannelUpdate,
            {"events": _events(form), "enabled": not checked(form, "paused")},
        )
        with refusals():
            channel = await channels.get(session, access.workspace.id, channel_id)
            await channels.update(
                session,
                get_settings(request),
                access.principal.actor,
                channel,
                body.model_dump(exclude_unset=True),
            )

    return await _write(request, workspace_id, signed, session, action, _at(channel_id))


@router.post("/workspaces/{workspace_id}/channels/{channel_id}/test", response_class=HTMLResponse)
async def test_channel(
    request: Request,
    workspace_id: uuid.UUID,
    channel_id: uuid.UUID,
    signed: Writer,
    session: SessionDep,
) -> Response:
    """Sends a test notice now and shows whether the channel took it (recorded on it)."""

    async def action(access: WorkspaceAccess, form: FormData) -> dict[str, Any]:
        with refusals():
            channel = await channels.get(session, access.workspace.id, channel_id)
            error = await channels.test_send(
                session, get_settings(request), access.principal.actor, channel
            )
        return {"tested": {"id": str(channel_id), "name": channel.name, "error": error}}

    return await _write(request, workspace_id, signed, session, action, _at(channel_id))


@router.post("/workspaces/{workspace_id}/channels/{channel_id}/delete", response_class=HTMLResponse)
async def delete_channel(
    request: Request,
    workspace_id: uuid.UUID,
    channel_id: uuid.UUID,
    signed: Writer,
    session: SessionDep,
) -> Response:
    async def action(access: WorkspaceAccess, form: FormData) -> None:
        with refusals():
            channel = await channels.get(session, access.workspace.id, channel_id)
            await channels.delete(session, access.principal.actor, channel)

    return await _write(request, workspace_id, signed, session, action, _at(channel_id))
