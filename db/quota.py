"""How much of a workspace's backup quota its storages allocate, and what a storage holds."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.states import RunStatus
from db.models import BackupExecution, BackupStorage, Workspace


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


async def recorded_bytes(
    session: AsyncSession, storage: BackupStorage, now: datetime, fresh: timedelta
) -> int | None:
    """cairn's bytes in ``storage`` without walking it: the last usage reading plus what
    each backup that succeeded there since added (restic's ``data_added`` of its parts).
    Never less than the truth but for data written outside backups since the reading (WAL
    of continuous archiving); None without a reading younger than ``fresh``."""
    read_at = storage.usage_read_at
    if read_at is None or now - read_at > fresh:
        return None
    manifests = await session.scalars(
        select(BackupExecution.metadata_).where(
            BackupExecution.storage_id == storage.id,
            BackupExecution.status == RunStatus.SUCCEEDED,
            BackupExecution.completed_at > read_at,
        )
    )
    added = sum(
        int(part.get("data_added") or 0)
        for manifest in manifests
        for part in (manifest or {}).get("parts", [])
    )
    return int(storage.used_bytes) + added
