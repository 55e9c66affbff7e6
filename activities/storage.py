"""Storage provisioning, deprovisioning and usage activities.

They read what they need from the database by id, so connection secrets never
travel through Temporal payloads. PVE calls are blocking (requests), so they run
in a thread.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import fatal, to_application_error
from activities.support import heartbeating
from adapters.storage_backend import BackendError, StorageBackend, folder_usage
from contracts.storage import StorageJob, StorageStatusChange, StorageUsage
from core import crypto, secret_contexts
from core.settings import Settings
from core.states import FINISHED, RunStatus, StorageStatus
from core.units import whole_gb
from db import audit
from db.models import BackupExecution, BackupStorage, StorageUsageSample
from repository.store import repositories_root, repository_bytes

SAMPLE_RETENTION = timedelta(days=30)
WORKFLOW_ACTOR = audit.Actor(label="system:workflow")
# The storages whose usage is read: in service, or out of reach and watched for its return.
MONITORED = (StorageStatus.ACTIVE, StorageStatus.UNAVAILABLE)


class StorageActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        backend: StorageBackend,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.backend = backend

    async def _storage(
        self, session: AsyncSession, storage_id: str, revision: str | None = None
    ) -> BackupStorage:
        """The row; with ``revision``, waits (by retrying) until the API's commit is visible."""
        storage = await session.get(BackupStorage, uuid.UUID(storage_id))
        if revision is not None and (
            storage is None
            or storage.updated_at is None
            or storage.updated_at < datetime.fromisoformat(revision)
        ):
            raise ApplicationError(
                f"backup storage {storage_id} at revision {revision} is not visible yet",
                type="NotYetVisible",
            )
        if storage is None:
            raise fatal(f"backup storage {storage_id} no longer exists", "NotFound")
        return storage

    def _secrets(self, storage: BackupStorage) -> dict[str, Any]:
        if not storage.connection_secrets:
            return {}
        return crypto.open_json(
            storage.connection_secrets,
            master_key=self.settings.master_key_text,
            context=secret_contexts.storage_secrets(storage.id),
        )

    @activity.defn
    async def provision_storage(self, job: StorageJob) -> None:
        """Creates the storage, or updates it when it exists already, so retries are safe."""
        async with self.sessions() as session:
            storage = await self._storage(session, job.storage_id, job.revision)
            kind, pve_id = storage.type, storage.proxmox_storage_id
            config, secrets = dict(storage.connection_config or {}), self._secrets(storage)
        try:
            exists = await asyncio.to_thread(self.backend.exists, pve_id)
            operation = self.backend.update if exists else self.backend.create
            await asyncio.to_thread(operation, kind, pve_id, config, secrets)
        except BackendError as exc:
            raise to_application_error(exc) from None

    @activity.defn
    async def deprovision_storage(self, job: StorageJob) -> None:
        async with self.sessions() as session:
            pve_id = (await self._storage(session, job.storage_id, job.revision)).proxmox_storage_id
        try:
            await asyncio.to_thread(self.backend.delete, pve_id)
        except BackendError as exc:
            raise to_application_error(exc) from None

    @activity.defn
    async def remove_storage_backups(self, job: StorageJob) -> int:
        """Deletes every repository in the storage (forced delete); returns the bytes freed."""
        async with self.sessions() as session:
            pve_id = (await self._storage(session, job.storage_id, job.revision)).proxmox_storage_id
        root = repositories_root(self.settings.storage_mount_root, pve_id)
        if not root.exists():
            return 0
        freed = await heartbeating(asyncio.to_thread(folder_usage, root))
        await heartbeating(asyncio.to_thread(shutil.rmtree, root))
        async with self.sessions() as session:
            # their data is gone: the history says so instead of offering them for restore
            await session.execute(
                update(BackupExecution)
                .where(
                    BackupExecution.storage_id == uuid.UUID(job.storage_id),
                    BackupExecution.status.in_(FINISHED),
                )
                .values(status=RunStatus.PRUNED, error_message="its storage was deleted with force")
            )
            await session.commit()
        return freed

    @activity.defn
    async def set_storage_status(self, change: StorageStatusChange) -> None:
        async with self.sessions() as session:
            storage = await self._storage(session, change.storage_id)
            if storage.status == change.status and storage.status_message == change.message:
                return
            storage.status, storage.status_message = change.status, change.message
            audit.record(
                session,
                WORKFLOW_ACTOR,
                f"storage.{change.status}",
                "backup_storage",
                storage.id,
                workspace_id=storage.workspace_id,
                details={"message": change.message} if change.message else {},
            )
            await session.commit()

    @activity.defn
    async def forget_storage(self, storage_id: str) -> None:
        async with self.sessions() as session:
            storage = await session.get(BackupStorage, uuid.UUID(storage_id))
            if storage is None:
                return
            audit.record(
                session,
                WORKFLOW_ACTOR,
                "storage.deleted",
                "backup_storage",
                storage.id,
                workspace_id=storage.workspace_id,
                details={"name": storage.name},
            )
            await session.delete(storage)
            await session.commit()

    @activity.defn
    async def list_monitored_storages(self) -> list[str]:
        async with self.sessions() as session:
            ids = await session.scalars(
                select(BackupStorage.id).where(BackupStorage.status.in_(MONITORED))
            )
            return [str(i) for i in ids]

    @activity.defn
    async def refresh_storage_usage(self, storage_id: str) -> StorageUsage:
        """Records one usage reading; an unreachable or inactive storage becomes ``unavailable``.

        The reading has two halves: cairn's own bytes (its repositories in the storage), which
        quotas, history and metrics count, and the file system's figures from PVE, which may
        include other data and only say how close the file system is to full.
        """
        async with self.sessions() as session:
            pve_id = (await self._storage(session, storage_id)).proxmox_storage_id
        reason, own = None, None
        try:
            status = await asyncio.to_thread(self.backend.status, pve_id)
            if not status.enabled:
                reason = (
                    "the storage is disabled on the storage server or not available on its node"
                )
            elif not status.active:
                reason = "the storage reports itself inactive (not mounted or unreachable)"
            else:
                own = await asyncio.to_thread(
                    repository_bytes, self.settings.storage_mount_root, pve_id
                )
        except BackendError as exc:
            status, reason = None, exc.message
        now = datetime.now(UTC)
        async with self.sessions() as session:
            storage = await self._storage(session, storage_id)
            if storage.status not in MONITORED:
                return StorageUsage(storage_id, storage.status or "", storage.used_bytes, 0)
            new_status = StorageStatus.UNAVAILABLE if reason else StorageStatus.ACTIVE
            if new_status != storage.status:
                audit.record(
                    session,
                    WORKFLOW_ACTOR,
                    f"storage.{new_status}",
                    "backup_storage",
                    storage.id,
                    workspace_id=storage.workspace_id,
                    details={"reason": reason} if reason else {},
                )
            storage.status, storage.status_message = new_status, reason
            if status is not None and own is not None:
                storage.used_bytes = own
                storage.used_gb = whole_gb(own)
                storage.available_bytes = status.avail_bytes
                storage.filesystem_total_bytes = status.total_bytes
                storage.filesystem_used_bytes = status.used_bytes
                storage.usage_read_at = now
            session.add(
                StorageUsageSample(
                    storage_id=storage.id,
                    sampled_at=now,
                    active=reason is None,
                    total_bytes=status.total_bytes if status else 0,
                    used_bytes=own if own is not None else storage.used_bytes,
                    available_bytes=status.avail_bytes if status else 0,
                    filesystem_used_bytes=status.used_bytes if status else 0,
                )
            )
            await session.execute(
                delete(StorageUsageSample).where(
                    StorageUsageSample.storage_id == storage.id,
                    StorageUsageSample.sampled_at < now - SAMPLE_RETENTION,
                )
            )
            await session.commit()
            return StorageUsage(
                storage_id, new_status, storage.used_bytes, status.total_bytes if status else 0
            )

    def control(self) -> list[Any]:
        return [
            self.provision_storage,
            self.deprovision_storage,
            self.set_storage_status,
            self.forget_storage,
            self.list_monitored_storages,
            self.refresh_storage_usage,
        ]

    def data(self) -> list[Any]:
        return [self.remove_storage_backups]
