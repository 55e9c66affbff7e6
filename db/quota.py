"""How much of a workspace's backup quota its storages allocate."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import BackupStorage, Workspace


async def allocated_gb(
    session: AsyncSession, workspace_id: uuid.UUID, exclude: uuid.UUID | None = None
) -> int:
    query = select(func.coalesce(func.sum(BackupStorage.capacity_gb), 0)).where(
        BackupStorage.workspace_id == workspace_id
    )
    if exclude is not None:
        query = query.where(BackupStorage.id != exclude)
    return int(await session.scalar(query) or 0)


async def lock_workspace(session: AsyncSession, workspace_id: uuid.UUID) -> Workspace:
    """Row lock so two concurrent allocations cannot both squeeze under the quota; the row
    is read afresh (a plan or quota changed since the request loaded it counts)."""
    workspace = await session.scalar(
        select(Workspace)
        .where(Workspace.id == workspace_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert workspace is not None
    return workspace
