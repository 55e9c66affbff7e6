"""Lost replication slots told once: each ``archive.slot_lost`` the archiver writes in the audit
log (``activities/archive.py``, when the server removed WAL its slot still needed and the
archiver replaces the slot) becomes one notice to the channels that chose ``archive.slot_lost``
and to the failure webhook.

The slot is replaced within seconds, so the alert ``CairnArchiverSlotLost`` may never fire
between two scrapes; this notice is what says that the recovery window now has a gap. Told
notices are recorded in the audit log (``application.archive_slot_lost``, ``details.event_id``
naming the archiver's event), as the overdue notices are (``services/overdue.py``): a retried
step tells nothing twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.archive import SLOT_LOST
from db import audit
from db.models import Application, AuditEvent
from services.overdue import NOTICE_ACTOR

LOST = SLOT_LOST
TOLD = "application.archive_slot_lost"


@dataclass(frozen=True)
class SlotLost:
    """One lost slot of an application's archiver: the window has a gap from
    ``last_archived`` (None: nothing was archived yet) to the base backup that follows."""

    event_id: uuid.UUID
    application_id: uuid.UUID
    workspace_id: uuid.UUID
    application: str
    occurred_at: datetime
    last_archived: str | None

    def message(self) -> str:
        after = self.last_archived or "the start of archiving"
        return (
            "the server removed WAL the archiver had not stored: the recovery window has a gap"
            f" from {after} to the new base backup the archiver takes with its new slot"
        )

    def payload(self) -> dict[str, Any]:
        """What the failure webhook receives: names and moments, never a secret."""
        return {
            "event": LOST,
            "kind": "archive",
            "id": str(self.application_id),
            "application_id": str(self.application_id),
            "workspace_id": str(self.workspace_id),
            "application": self.application,
            "occurred_at": self.occurred_at.isoformat(),
            "last_archived": self.last_archived,
        }


async def notices_due(session: AsyncSession) -> list[SlotLost]:
    """The archiver's lost-slot events not told yet, oldest first."""
    told = select(AuditEvent.details["event_id"].astext).where(AuditEvent.action == TOLD)
    rows = await session.execute(
        select(AuditEvent, Application.name)
        .join(Application, AuditEvent.target_id == cast(Application.id, String))
        .where(AuditEvent.action == LOST, cast(AuditEvent.id, String).not_in(told))
        .order_by(AuditEvent.occurred_at)
    )
    return [
        SlotLost(
            event.id,
            uuid.UUID(event.target_id),
            event.workspace_id,
            name,
            event.occurred_at,
            event.details.get("last_archived"),
        )
        for event, name in rows
        if event.workspace_id is not None
    ]


def record(session: AsyncSession, notice: SlotLost) -> None:
    """Writes that ``notice`` was told (in the application's workspace's audit log)."""
    audit.record(
        session,
        NOTICE_ACTOR,
        TOLD,
        "application",
        notice.application_id,
        workspace_id=notice.workspace_id,
        details={"event_id": str(notice.event_id), "last_archived": notice.last_archived},
    )
