"""A workspace's audit trail (workspace admin)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from sqlalchemy import Select, select

from api.deps import SessionDep, WorkspaceAdmin
from api.pagination import Cursor, Limit, Page, fetch_page
from api.schemas.registry import AuditEventOut
from db.models import AuditEvent

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}", tags=["workspaces"])


def events_of(workspace_id: uuid.UUID) -> Select[AuditEvent]:
    """A workspace's audit events (the web UI's audit page narrows them with its filters)."""
    return select(AuditEvent).where(AuditEvent.workspace_id == workspace_id)


@router.get("/audit-events", response_model=Page[AuditEventOut])
async def list_audit_events(
    access: WorkspaceAdmin, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, object]:
    items, next_cursor = await fetch_page(
        session,
        events_of(access.workspace.id),
        AuditEvent.occurred_at,
        AuditEvent.id,
        limit,
        cursor,
    )
    return {"items": items, "next_cursor": next_cursor}
