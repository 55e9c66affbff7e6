"""Storage usage of a workspace: capacity, used, quota and the recent history.

``used_bytes`` is cairn's own (its repositories); the file system's figures (which may count
other data on the same disk or share) are shown beside it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import DedicatedReader, SessionDep
from api.schemas.storages import WorkspaceUsageOut
from services import storages

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}", tags=["backup storages"])


@router.get("/backup-usage", response_model=WorkspaceUsageOut)
async def workspace_usage(
    access: DedicatedReader,
    session: SessionDep,
    history: Annotated[int, Query(ge=0, le=2016, description="samples per storage")] = 288,
) -> dict[str, Any]:
    return await storages.usage(session, access.workspace, history)
