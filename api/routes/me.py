"""Who the caller is and where they belong."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CurrentPrincipal, SessionDep
from api.schemas.registry import MeOut
from services import workspaces

router = APIRouter(prefix="/api/v1", tags=["me"])


@router.get("/me", response_model=MeOut)
async def me(principal: CurrentPrincipal, session: SessionDep) -> dict[str, Any]:
    memberships = await workspaces.memberships(session, principal.user.id)
    return {"user": principal.user, "memberships": memberships}
