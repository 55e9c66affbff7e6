"""What crosses the Temporal boundary in the storage workflows (provision, delete, usage)."""

from __future__ import annotations

from dataclasses import dataclass

from core.states import StorageStatus


@dataclass
class DeleteStorageJob:
    storage: StorageJob
    force: bool = False


@dataclass
class StorageJob:
    storage_id: str
    revision: str  # the row's updated_at when the job was made; older rows are not yet visible
    mode: str = "create"  # create | update


@dataclass
class StorageStatusChange:
    storage_id: str
    status: StorageStatus
    message: str | None = None


@dataclass
class StorageUsage:
    storage_id: str
    status: str
    used_bytes: int  # cairn's own (its repositories)
    total_bytes: int  # the file system's
