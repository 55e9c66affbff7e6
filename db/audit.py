"""Audit trail: every mutation adds one row in the same transaction as the change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditEvent


@dataclass(frozen=True)
class Actor:
    """Who did it: a user (through a token) or a system process such as a workflow."""

    label: str
    user_id: uuid.UUID | None = None
    request_id: str | None = None


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: uuid.UUID | str,
    *,
    workspace_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            actor_user_id=actor.user_id,
            actor=actor.label,
            workspace_id=workspace_id,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            request_id=actor.request_id,
            details=details or {},
        )
    )
