"""Storage usage of a workspace: capacity, used, quota and the recent history.

``used_bytes`` is cairn's own (its repositories); the file system's figures (which may count
other data on the same disk or share) are shown beside it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.deps import DedicatedReader, SessionDep
from api.schemas.storages import WorkspaceUsageOut
from db.models import BackupStorage, StorageUsageSample

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}", tags=["backup storages"])


@router.get("/backup-usage", response_model=WorkspaceUsageOut)
async def workspace_usage(
    access: DedicatedReader,
    session: SessionDep,
    history: Annotated[int, Query(ge=0, le=2016, description="samples per storage")] = 288,
) -> dict[str, Any]:
    storages = (
        await session.scalars(
            select(BackupStorage)
            .where(BackupStorage.workspace_id == access.workspace.id)
            .order_by(BackupStorage.name)
        )
    ).all()
    result = []
    for storage in storages:
        samples = (
            await session.scalars(
                select(StorageUsageSample)
                .where(StorageUsageSample.storage_id == storage.id)
                .order_by(StorageUsageSample.sampled_at.desc())
                .limit(history)
            )
        ).all()
        result.append(
            {
                "storage_id": storage.id,
                "name": storage.name,
                "status": storage.status,
                "capacity_gb": storage.capacity_gb,
                "used_bytes": storage.used_bytes,
                "available_bytes": storage.available_bytes,
                "filesystem_total_bytes": storage.filesystem_total_bytes,
                "filesystem_used_bytes": storage.filesystem_used_bytes,
                "usage_read_at": storage.usage_read_at,
                "history": list(reversed(samples)),
            }
        )
    return {
        "workspace_id": access.workspace.id,
        "quota_gb": access.workspace.backup_quota_gb,
        "allocated_gb": sum(s.capacity_gb for s in storages),
        "used_bytes": sum(s.used_bytes for s in storages),
        "storages": result,
    }
