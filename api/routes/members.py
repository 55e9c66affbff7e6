"""Workspace membership (platform admin or workspace admin)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import SessionDep, WorkspaceAdmin
from api.pagination import Cursor, Limit, Page, fetch_page
from api.problems import conflict, not_found
from api.schemas.registry import MemberCreate, MemberOut
from db import audit
from db.models import User, WorkspaceMember

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}/members", tags=["workspaces"])


@router.post("", status_code=201, response_model=MemberOut)
async def add_member(
    body: MemberCreate, access: WorkspaceAdmin, session: SessionDep
) -> WorkspaceMember:
    workspace_id = access.workspace.id
    if await session.get(User, body.user_id) is None:
        raise not_found("user", body.user_id)
    if await session.get(WorkspaceMember, (workspace_id, body.user_id)) is not None:
        raise conflict(f"user {body.user_id} is already a member of this workspace")
    member = WorkspaceMember(workspace_id=workspace_id, user_id=body.user_id, role=body.role)
    session.add(member)
    audit.record(
        session,
        access.principal.actor,
        "member.add",
        "user",
        body.user_id,
        workspace_id=workspace_id,
        details={"role": body.role},
    )
    await session.commit()
    await session.refresh(member)
    return member


@router.get("", response_model=Page[MemberOut])
async def list_members(
    access: WorkspaceAdmin, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, object]:
    items, next_cursor = await fetch_page(
        session,
        select(WorkspaceMember).where(WorkspaceMember.workspace_id == access.workspace.id),
        WorkspaceMember.created_at,
        WorkspaceMember.user_id,
        limit,
        cursor,
    )
    return {"items": items, "next_cursor": next_cursor}
