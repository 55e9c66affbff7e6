"""Notification channels of a workspace: stored with their secret sealed, and the sending.

A channel is a signed webhook, a Slack incoming webhook or e-mail over SMTP. The secret (the
webhook's HMAC key, the Slack URL, the SMTP password) is sealed with the channel's own context
and opened only here, when a notice is sent: workflows carry the channel's id and the event,
never a secret. Every delivery (a notice or a test) is recorded on the channel: a channel whose
last delivery failed shows ``failing`` with its error (docs/alerts.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
import ssl
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import secret_contexts
from core.crypto import open_sealed, seal
from core.settings import Settings
from db import audit
from db.models import Application, BackupStorage, NotificationChannel, Workspace
from services.errors import Conflict, Invalid, NotFound

WEBHOOK_FIELDS = ("url",)
EMAIL_FIELDS = ("recipients", "sender", "smtp_host", "smtp_port", "starttls", "username")
TIMEOUT = 15


class DeliveryFailed(Exception):
    """The channel did not accept the notice; the message says why, never a secret."""


def status(channel: NotificationChannel) -> str:
    if channel.last_delivery_at is None:
        return "untested"
    return "ok" if channel.last_delivery_ok else "failing"


def present(channel: NotificationChannel) -> dict[str, Any]:
    """The channel without its secret: only whether one is stored."""
    target = channel.target
    shown = {
        "id": channel.id,
        "workspace_id": channel.workspace_id,
        "name": channel.name,
        "kind": channel.kind,
        "events": list(channel.events),
        "enabled": channel.enabled,
        "secret_set": bool(channel.secret_sealed),
        "status": status(channel),
        "last_delivery_at": channel.last_delivery_at,
        "last_error": channel.last_error,
        "consecutive_failures": channel.consecutive_failures,
        "created_at": channel.created_at,
        "updated_at": channel.updated_at,
    }
    if channel.kind == "webhook":
        shown["url"] = target.get("url")
    if channel.kind == "email":
        shown.update({key: target.get(key) for key in EMAIL_FIELDS})
    return shown


def of_workspace(workspace_id: uuid.UUID) -> Select[Any]:
    """The workspace's channels, for a page of them (the API's list and the UI's page)."""
    return select(NotificationChannel).where(NotificationChannel.workspace_id == workspace_id)


async def get(
    session: AsyncSession, workspace_id: uuid.UUID, channel_id: uuid.UUID
) -> NotificationChannel:
    channel = await session.get(NotificationChannel, channel_id)
    if channel is None or channel.workspace_id != workspace_id:
        raise NotFound("notification channel", channel_id)
    return channel


async def _name_free(
    session: AsyncSession, workspace_id: uuid.UUID, name: str, own: uuid.UUID | None = None
) -> None:
    query = select(NotificationChannel.id).where(
        NotificationChannel.workspace_id == workspace_id, NotificationChannel.name == name
    )
    if own is not None:
        query = query.where(NotificationChannel.id != own)
    taken = await session.scalar(query)
    if taken:
        raise Conflict(f"a notification channel named {name} already exists in this workspace")


def _missing(field: str, kind: str, why: str = "") -> dict[str, Any]:
    return {"loc": (field,), "msg": f"required for a {kind} channel{why}", "type": "missing"}


def _foreign(field: str, kind: str) -> dict[str, Any]:
    return {"loc": (field,), "msg": f"not a field of a {kind} channel", "type": "extra_forbidden"}


ALLOWED = {
    "webhook": {"url", "secret"},
    "slack": {"url"},
    "email": {*EMAIL_FIELDS, "password"},
}
REQUIRED = {
    "webhook": ("url", "secret"),
    "slack": ("url",),
    "email": ("recipients", "sender", "smtp_host"),
}
KIND_FIELDS = {"url", "secret", "password", *EMAIL_FIELDS}


def _check(kind: str, merged: dict[str, Any], given: dict[str, Any]) -> None:
    """The fields a kind needs, and none of another kind's; a 422 naming each field."""
    errors = [_foreign(f, kind) for f in sorted(KIND_FIELDS & given.keys() - ALLOWED[kind])]
    errors += [_missing(f, kind) for f in REQUIRED[kind] if merged.get(f) is None]
    if kind == "email" and (merged.get("username") is None) != (merged.get("password") is None):
        field = "password" if merged.get("username") else "username"
        errors.append(_missing(field, kind, " with SMTP AUTH: give username and password"))
    if errors:
        raise Invalid(errors)


def _apply(settings: Settings, channel: NotificationChannel, body: dict[str, Any]) -> None:
    kind = channel.kind
    target = dict(channel.target)
    secret: str | None = None
    if kind == "webhook":
        if "url" in body:
            target["url"] = body["url"]
        secret = body.get("secret")
    elif kind == "slack":
        secret = body.get("url")
        if secret:
            target["host"] = httpx.URL(secret).host
    else:
        for key in EMAIL_FIELDS:
            if key in body:
                target[key] = body[key]
        target.setdefault("smtp_port", 587)
        target.setdefault("starttls", True)
        if target.get("smtp_port") is None:
            target["smtp_port"] = 587
        if target.get("starttls") is None:
            target["starttls"] = True
        secret = body.get("password")
        if "username" in body and body["username"] is None:
            channel.secret_sealed = None
    channel.target = target
    if secret:
        channel.secret_sealed = seal(
            secret.encode(),
            master_key=settings.master_key_text,
            context=secret_contexts.notification_secret(channel.id),
        )


def _current(channel: NotificationChannel) -> dict[str, Any]:
    merged = dict(channel.target)
    if channel.secret_sealed:
        merged["password" if channel.kind == "email" else "secret"] = "(sealed)"
        if channel.kind == "slack":
            merged["url"] = "(sealed)"
    return merged


async def create(
    session: AsyncSession,
    settings: Settings,
    actor: audit.Actor,
    workspace_id: uuid.UUID,
    body: dict[str, Any],
) -> NotificationChannel:
    given = {k: v for k, v in body.items() if v is not None}
    _check(body["kind"], given, given)
    await _name_free(session, workspace_id, body["name"])
    channel = NotificationChannel(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        name=body["name"],
        kind=body["kind"],
        target={},
        events=list(body["events"]),
        enabled=body.get("enabled", True),
        consecutive_failures=0,
    )
    _apply(settings, channel, given)
    session.add(channel)
    audit.record(
        session,
        actor,
        "notification_channel.create",
        "notification_channel",
        channel.id,
        workspace_id=workspace_id,
        details={"name": channel.name, "kind": channel.kind, "events": channel.events},
    )
    await session.flush()
    return channel


async def update(
    session: AsyncSession,
    settings: Settings,
    actor: audit.Actor,
    channel: NotificationChannel,
    body: dict[str, Any],
) -> NotificationChannel:
    if not body:
        raise Invalid([{"loc": (), "msg": "nothing to change", "type": "missing"}])
    nulls = [
        {"loc": (f,), "msg": "cannot be null", "type": "none_forbidden"}
        for f in ("name", "events", "enabled", *REQUIRED[channel.kind], "starttls", "smtp_port")
        if f in body and body[f] is None
    ]
    if nulls:
        raise Invalid(nulls)
    merged = {**_current(channel), **body}
    if channel.kind == "email" and body.get("username") is None and "username" in body:
        merged.pop("password", None)
    _check(channel.kind, merged, body)
    if "name" in body and body["name"] != channel.name:
        await _name_free(session, channel.workspace_id, body["name"], channel.id)
        channel.name = body["name"]
    if "events" in body:
        channel.events = list(body["events"])
    if "enabled" in body:
        channel.enabled = body["enabled"]
    _apply(settings, channel, {k: v for k, v in body.items() if k in KIND_FIELDS})
    changed = sorted(k for k in body if k not in ("secret", "password"))
    if channel.kind == "slack" and "url" in body:
        changed.remove("url")
    rotated = any(k in body for k in ("secret", "password")) or (
        channel.kind == "slack" and "url" in body
    )
    audit.record(
        session,
        actor,
        "notification_channel.update",
        "notification_channel",
        channel.id,
        workspace_id=channel.workspace_id,
        details={"changed": changed, "secret": "rotated" if rotated else "kept"},
    )
    await session.flush()
    return channel


async def delete(session: AsyncSession, actor: audit.Actor, channel: NotificationChannel) -> None:
    audit.record(
        session,
        actor,
        "notification_channel.delete",
        "notification_channel",
        channel.id,
        workspace_id=channel.workspace_id,
        details={"name": channel.name, "kind": channel.kind},
    )
    await session.delete(channel)
    await session.flush()


# --- what is sent -----------------------------------------------------------------------


async def payload(
    session: AsyncSession, settings: Settings, notice: dict[str, Any]
) -> dict[str, Any]:
    """The notice as sent: names and links read now, never a secret."""
    workspace = await session.get(Workspace, uuid.UUID(notice["workspace_id"]))
    app_id = notice.get("application_id")
    application = await session.get(Application, uuid.UUID(app_id)) if app_id else None
    storage_id = notice.get("storage_id")
    storage = await session.get(BackupStorage, uuid.UUID(storage_id)) if storage_id else None
    links: dict[str, str] = {}
    base = (settings.public_url or "").rstrip("/")
    if base and application is not None:
        links["ui"] = f"{base}/ui/applications/{application.id}"
        if notice.get("run_kind") == "backup" and notice.get("run_id"):
            links["ui"] += f"/backups/{notice['run_id']}"
    elif base and notice["event"] == "storage.nearly_full":
        links["ui"] = f"{base}/ui/workspaces/{notice['workspace_id']}/storages"
        if storage_id:
            links["ui"] += f"/{storage_id}"
    if notice.get("workflow_id"):
        namespace = quote(settings.temporal_namespace, safe="")
        links["temporal"] = (
            f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{namespace}"
            f"/workflows/{quote(notice['workflow_id'], safe='')}"
        )
    return {
        "event": notice["event"],
        "test": bool(notice.get("test")),
        "occurred_at": notice.get("occurred_at"),
        "workspace": {"id": notice["workspace_id"], "name": workspace.name if workspace else None},
        "application": {"id": app_id, "name": application.name if application else None}
        if app_id
        else None,
        "run": {
            "kind": notice.get("run_kind"),
            "id": notice.get("run_id"),
            "status": notice.get("status"),
            "trigger": notice.get("trigger"),
            "workflow_id": notice.get("workflow_id"),
        }
        if notice.get("run_id")
        else None,
        "storage": {"id": storage_id, "name": storage.name if storage else None}
        if storage_id
        else None,
        "message": notice.get("message"),
        "overdue_since": notice.get("overdue_since"),
        "links": links,
    }


def summary(body: dict[str, Any]) -> str:
    """One line a person reads: what happened to which application (or storage)."""
    subject = body.get("application") or body.get("storage") or {}
    app = subject.get("name") or "-"
    ws = body["workspace"]["name"]
    words = {
        "backup.failed": "backup failed",
        "backup.cancelled": "backup cancelled",
        "backup.recovered": "backup succeeded again after a failure",
        "application.overdue": "backup overdue",
        "application.recovered": "no longer overdue",
        "drill.failed": "restore drill failed",
        "drill.overdue": "restore drill overdue",
        "drill.recovered": "restore drills no longer overdue",
        "offsite.overdue": "offsite copies overdue",
        "offsite.recovered": "offsite copies no longer overdue",
        "archive.overdue": "continuous archiving stalled",
        "archive.recovered": "continuous archiving ships again",
        "archive.slot_lost": "WAL lost: the recovery window has a gap",
        "storage.nearly_full": "storage nearly full",
        "test": "test notification",
    }
    what = words.get(body["event"], body["event"])
    prefix = "[cairn test] " if body.get("test") else "[cairn] "
    return f"{prefix}{ws}/{app}: {what}"


def text(body: dict[str, Any]) -> str:
    lines = [summary(body)]
    run = body.get("run")
    if run:
        lines.append(f"{run['kind']} {run['id']}: {run['status']}")
    if body.get("message"):
        lines.append(f"error: {body['message']}")
    if body.get("overdue_since"):
        lines.append(f"overdue since {body['overdue_since']}")
    for name, link in body.get("links", {}).items():
        lines.append(f"{name}: {link}")
    return "\n".join(lines)


def sign(key: str, timestamp: str, raw: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">``, the ``X-Cairn-Signature``."""
    digest = hmac.new(key.encode(), timestamp.encode() + b"." + raw, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


async def _post(url: str, raw: bytes, headers: dict[str, str], what: str) -> None:
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.post(
                url, content=raw, headers={"Content-Type": "application/json", **headers}
            )
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{what} unreachable: {type(exc).__name__}") from None
    if response.status_code >= 300:
        raise DeliveryFailed(f"{what} answered HTTP {response.status_code}")


def _send_mail(target: dict[str, Any], password: str | None, body: dict[str, Any]) -> None:
    message = EmailMessage()
    message["Subject"] = summary(body)
    message["From"] = target["sender"]
    message["To"] = ", ".join(target["recipients"])
    message.set_content(text(body))
    host, port = target["smtp_host"], int(target.get("smtp_port") or 587)
    try:
        with smtplib.SMTP(host, port, timeout=TIMEOUT) as smtp:
            smtp.ehlo()
            if target.get("starttls", True):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if target.get("username"):
                smtp.login(target["username"], password or "")
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryFailed(
            f"SMTP server {host}:{port} refused the login of {target['username']} ({exc.smtp_code})"
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryFailed(f"SMTP server {host}:{port}: {exc}") from None
    except smtplib.SMTPException as exc:
        raise DeliveryFailed(f"SMTP server {host}:{port} refused the message: {exc}") from None
    except ssl.SSLError as exc:
        raise DeliveryFailed(f"SMTP server {host}:{port}: STARTTLS failed: {exc.reason}") from None
    except OSError as exc:
        raise DeliveryFailed(f"SMTP server {host}:{port} unreachable: {exc}") from None


async def send(settings: Settings, channel: NotificationChannel, body: dict[str, Any]) -> None:
    """Delivers one notice to the channel; ``DeliveryFailed`` says why it was not accepted."""
    secret = (
        open_sealed(
            channel.secret_sealed,
            master_key=settings.master_key_text,
            context=secret_contexts.notification_secret(channel.id),
        ).decode()
        if channel.secret_sealed
        else None
    )
    if channel.kind == "webhook":
        raw = json.dumps(body, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {"X-Cairn-Timestamp": timestamp, "X-Cairn-Event": body["event"]}
        if secret:
            headers["X-Cairn-Signature"] = sign(secret, timestamp, raw)
        await _post(channel.target["url"], raw, headers, f"webhook {channel.target['url']}")
    elif channel.kind == "slack":
        assert secret is not None
        raw = json.dumps({"text": text(body)}).encode()
        await _post(secret, raw, {}, f"Slack webhook at {channel.target.get('host')}")
    else:
        await asyncio.to_thread(_send_mail, channel.target, secret, body)


def record_delivery(channel: NotificationChannel, error: str | None) -> None:
    channel.last_delivery_at = datetime.now(UTC)
    channel.last_delivery_ok = error is None
    channel.last_error = error
    channel.consecutive_failures = 0 if error is None else channel.consecutive_failures + 1


async def test_send(
    session: AsyncSession, settings: Settings, actor: audit.Actor, channel: NotificationChannel
) -> str | None:
    """Sends a test notice now; the error, or None when the channel accepted it."""
    body = await payload(
        session,
        settings,
        {
            "event": "test",
            "test": True,
            "workspace_id": str(channel.workspace_id),
            "occurred_at": datetime.now(UTC).isoformat(),
            "message": f"a test of the channel {channel.name}",
        },
    )
    try:
        await send(settings, channel, body)
        error = None
    except DeliveryFailed as exc:
        error = str(exc)
    record_delivery(channel, error)
    audit.record(
        session,
        actor,
        "notification_channel.test",
        "notification_channel",
        channel.id,
        workspace_id=channel.workspace_id,
        details={"delivered": error is None, "error": error},
    )
    await session.flush()
    return error
