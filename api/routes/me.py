"""Who the caller is and where they belong."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import CurrentPrincipal, SessionDep
from api.schemas.registry import MeOut
from db.models import Workspace, WorkspaceMember

router = APIRouter(prefix="/api/v1", tags=["me"])


@router.get("/me", response_model=MeOut)
async def me(principal: CurrentPrincipal, session: SessionDep) -> dict[str, Any]:
    rows = await session.execute(
        select(Workspace, WorkspaceMember.role)
        .join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
        .where(WorkspaceMember.user_id == principal.user.id)
        .order_by(Workspace.name)
    )
    memberships = [
        {"workspace_id": ws.id, "workspace_name": ws.name, "plan": ws.plan, "role": role}
        for ws, role in rows.all()
    ]
    return {"user": principal.user, "memberships": memberships}
