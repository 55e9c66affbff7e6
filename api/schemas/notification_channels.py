"""Bodies of notification channels: a signed webhook, a Slack incoming webhook, or e-mail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictInt, StringConstraints

from api.schemas.common import DisplayName, Email, Input, Output, web_url
from contracts.channels import EVENTS, Event


def _hook_url(value: str) -> str:
    return web_url(value)


def _unique(events: list[str]) -> list[str]:
    if len(set(events)) != len(events):
        raise ValueError("lists an event twice")
    return events


HookUrl = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_hook_url)]
Events = Annotated[
    list[Event], Field(min_length=1, max_length=len(EVENTS)), AfterValidator(_unique)
]
HmacKey = Annotated[str, StringConstraints(min_length=16, max_length=1024)]
Host = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.\-:\[\]]+$")
]
Username = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^\S+$")]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Recipients = Annotated[list[Email], Field(min_length=1, max_length=50)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]


class NotificationChannelCreate(Input):
    """One channel. ``webhook``: ``url`` and ``secret`` (the HMAC key, 16+ characters);
    ``slack``: ``url`` (the incoming webhook's URL, sealed like a secret); ``email``:
    ``recipients``, ``smtp_host``, ``smtp_port``, ``starttls``, ``sender`` and, for SMTP AUTH,
    ``username`` and ``password``. Secrets are write-only."""

    name: DisplayName
    kind: Literal["webhook", "slack", "email"]
    events: Events
    enabled: StrictBool = True
    url: HookUrl | None = None
    secret: HmacKey | None = None
    recipients: Recipients | None = None
    sender: Email | None = None
    smtp_host: Host | None = None
    smtp_port: Port | None = None
    starttls: StrictBool | None = None
    username: Username | None = None
    password: Password | None = None


class NotificationChannelUpdate(Input):
    """Any of the fields of the channel's kind; a secret given replaces the stored one."""

    name: DisplayName | None = None
    events: Events | None = None
    enabled: StrictBool | None = None
    url: HookUrl | None = None
    secret: HmacKey | None = None
    recipients: Recipients | None = None
    sender: Email | None = None
    smtp_host: Host | None = None
    smtp_port: Port | None = None
    starttls: StrictBool | None = None
    username: Username | None = None
    password: Password | None = None


class NotificationChannelOut(Output):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    kind: str
    events: list[str]
    enabled: bool
    url: str | None = Field(None, description="webhook only; a Slack URL is a secret")
    recipients: list[str] | None = None
    sender: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    starttls: bool | None = None
    username: str | None = None
    secret_set: bool
    status: Literal["ok", "failing", "untested"] = Field(
        description="failing: the last delivery failed (see last_error)"
    )
    last_delivery_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime


class TestSendOut(Output):
    delivered: bool
    error: str | None = None
    channel: NotificationChannelOut
