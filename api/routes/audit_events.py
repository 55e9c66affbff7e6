"""A workspace's audit trail (workspace admin)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SessionDep, WorkspaceAdmin
from api.pagination import Cursor, Limit, Page, page_of
from api.schemas.registry import AuditEventOut
from services import workspaces

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}", tags=["workspaces"])


@router.get("/audit-events", response_model=Page[AuditEventOut])
async def list_audit_events(
    access: WorkspaceAdmin, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, object]:
    query = workspaces.audit_events(access.workspace.id)
    items, next_cursor = await page_of(session, query, limit, cursor, "occurred_at")
    return {"items": items, "next_cursor": next_cursor}
