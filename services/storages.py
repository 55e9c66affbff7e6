"""Backup storages of a workspace: what may be created, changed or deleted, and the workflow
that then provisions or removes the storage.

A change is recorded in the row and its workflow is started before the caller commits: if
Temporal is down the request fails and nothing is stored; the activities wait (retrying)
until the row's new revision is visible.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError

from contracts.storage import DeleteStorageJob, StorageJob
from contracts.task_queues import CONTROL_TASK_QUEUE
from core import crypto, run_summary, secret_contexts
from core.search_attributes import WORKSPACE_ID
from core.settings import Settings
from core.states import RunStatus, StorageStatus
from core.units import whole_gb
from db import audit, run_names
from db.models import BackupExecution, BackupPolicy, BackupStorage, StorageUsageSample, Workspace
from db.quota import allocated_gb
from services import workspaces
from services.errors import Conflict, NotFound, TemporalUnavailable, Unsupported
from workflows.storage import DeleteStorageWorkflow, ProvisionStorageWorkflow

BUSY: Final = (StorageStatus.PENDING, StorageStatus.DELETING)
# PVE sets these only at creation (its "fixed" options).
FIXED_SETTINGS: Final = {"nfs": ("server", "export")}
SECRET_FIELDS: Final = frozenset({"keyring"})
"""Connection settings sealed with the master key, never shown back."""

ConnectionParser = Callable[[str], dict[str, Any]]
"""The connection settings given for a storage type, checked (the API's schemas do it);
called only once the storage's state and the quota allow the change."""


def _split(connection: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    config = {k: v for k, v in connection.items() if k not in SECRET_FIELDS and v is not None}
    secrets = {k: v for k, v in connection.items() if k in SECRET_FIELDS and v is not None}
    return config, secrets


def _seal(settings: Settings, storage_id: uuid.UUID, secrets: dict[str, str]) -> str | None:
    """Raises ``crypto.CryptoError`` when the master key cannot seal."""
    if not secrets:
        return None
    return crypto.seal_json(
        secrets,
        master_key=settings.master_key_text,
        context=secret_contexts.storage_secrets(storage_id),
    )


def _require_backend(settings: Settings, kind: str) -> None:
    if kind != "local" and not settings.proxmox_configured:
        raise Unsupported(
            f"storage type '{kind}' is provisioned through Proxmox VE, which this installation"
            " does not have configured; use type 'local' or configure CAIRN_PROXMOX_*",
            "proxmox-not-configured",
            "Proxmox VE not configured",
            {
                "type": f"'{kind}' needs Proxmox VE, which is not configured here; use 'local'"
                " or configure CAIRN_PROXMOX_*"
            },
        )


async def _check_quota(
    session: AsyncSession, workspace_id: uuid.UUID, requested: int, exclude: uuid.UUID | None
) -> None:
    workspace = await workspaces.hold_backup_plan(session, workspace_id)
    allocated = await allocated_gb(session, workspace.id, exclude=exclude)
    if allocated + requested > workspace.backup_quota_gb:
        raise Conflict(
            f"the workspace's backup quota is {workspace.backup_quota_gb} GB, its storages already"
            f" allocate {allocated} GB and {requested} GB were asked: at most"
            f" {max(workspace.backup_quota_gb - allocated, 0)} GB can be allocated",
            "quota-exceeded",
            "Backup quota exceeded",
            quota_gb=workspace.backup_quota_gb,
            allocated_gb=allocated,
            requested_gb=requested,
        )


async def _name_free(
    session: AsyncSession, workspace_id: uuid.UUID, name: str, exclude: uuid.UUID | None = None
) -> None:
    query = select(BackupStorage.id).where(
        BackupStorage.workspace_id == workspace_id, BackupStorage.name == name
    )
    if exclude is not None:
        query = query.where(BackupStorage.id != exclude)
    if await session.scalar(query):
        raise Conflict(f"a backup storage named {name} already exists in this workspace")


async def _job(session: AsyncSession, storage: BackupStorage, mode: str) -> StorageJob:
    """Flushes the change and stamps the job with the row's new revision."""
    await session.flush()
    await session.refresh(storage, ["updated_at"])
    assert storage.updated_at is not None
    return StorageJob(str(storage.id), storage.updated_at.isoformat(), mode)


async def _start(
    temporal: Client,
    workflow: Any,
    job: StorageJob | DeleteStorageJob,
    workflow_id: str,
    session: AsyncSession,
    storage: BackupStorage,
    action: str,
) -> None:
    """Starts a storage job, filterable by ``WorkspaceId`` and summed up in words in the UI."""
    names = await run_names.lookup(session, storage.workspace_id, storage_id=storage.id)
    text = run_summary.storage(names, action)
    try:
        await temporal.start_workflow(
            workflow,
            job,
            id=workflow_id,
            task_queue=CONTROL_TASK_QUEUE,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(WORKSPACE_ID, str(storage.workspace_id))]
            ),
            static_summary=text.summary,
            static_details=text.details,
        )
    except WorkflowAlreadyStartedError as exc:
        raise Conflict(f"workflow {workflow_id} is still running; wait for it to finish") from exc
    except Exception as exc:
        raise TemporalUnavailable(
            "the workflow could not be started", exc, "nothing was changed"
        ) from exc


def provision_workflow_id(storage_id: uuid.UUID) -> str:
    return f"storage-provision-{storage_id}"


def of_workspace(workspace_id: uuid.UUID) -> Select[Any]:
    """The workspace's storages, for a page of them (the API's list and the UI's pages)."""
    return select(BackupStorage).where(BackupStorage.workspace_id == workspace_id)


async def usage(session: AsyncSession, workspace: Workspace, history: int) -> dict[str, Any]:
    """The workspace's quota, what its storages hold, and each one's last ``history`` usage
    samples, oldest first."""
    storages = (
        await session.scalars(of_workspace(workspace.id).order_by(BackupStorage.name))
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
        "workspace_id": workspace.id,
        "quota_gb": workspace.backup_quota_gb,
        "allocated_gb": sum(s.capacity_gb for s in storages),
        "used_bytes": sum(s.used_bytes for s in storages),
        "storages": result,
    }


async def get(
    session: AsyncSession, workspace_id: uuid.UUID, storage_id: uuid.UUID
) -> BackupStorage:
    """The workspace's storage; another workspace's is as absent as an unknown one."""
    storage = await session.get(BackupStorage, storage_id)
    if storage is None or storage.workspace_id != workspace_id:
        raise NotFound("backup storage", storage_id)
    return storage


async def create(
    session: AsyncSession,
    settings: Settings,
    temporal: Client,
    actor: audit.Actor,
    workspace_id: uuid.UUID,
    name: str,
    kind: str,
    capacity_gb: int,
    connection: ConnectionParser,
) -> tuple[BackupStorage, str]:
    """Records a pending storage and starts its provisioning; returns it and the workflow id."""
    _require_backend(settings, kind)
    await _name_free(session, workspace_id, name)
    await _check_quota(session, workspace_id, capacity_gb, exclude=None)
    storage_id = uuid.uuid4()
    config, secrets = _split(connection(kind))
    storage = BackupStorage(
        id=storage_id,
        workspace_id=workspace_id,
        name=name,
        type=kind,
        proxmox_storage_id=f"cairn-{storage_id.hex[:16]}",
        capacity_gb=capacity_gb,
        status=StorageStatus.PENDING,
        connection_config=config,
        connection_secrets=_seal(settings, storage_id, secrets),
    )
    session.add(storage)
    workflow_id = provision_workflow_id(storage_id)
    details = {"name": name, "type": kind, "capacity_gb": capacity_gb, "connection": config}
    audit.record(
        session,
        actor,
        "storage.create",
        "backup_storage",
        storage_id,
        workspace_id=workspace_id,
        details={**details, "workflow_id": workflow_id},
    )
    job = await _job(session, storage, "create")
    await _start(
        temporal, ProvisionStorageWorkflow.run, job, workflow_id, session, storage, "create"
    )
    return storage, workflow_id


def _fixed_changed(storage: BackupStorage, config: dict[str, Any]) -> list[str]:
    current = storage.connection_config or {}
    return [k for k in FIXED_SETTINGS.get(storage.type, ()) if config.get(k) != current.get(k)]


async def update(
    session: AsyncSession,
    settings: Settings,
    temporal: Client,
    actor: audit.Actor,
    storage: BackupStorage,
    name: str | None,
    capacity_gb: int | None,
    connection: ConnectionParser | None,
) -> str | None:
    """Renames, resizes or reconnects the storage; a new connection is provisioned again.

    Returns the provisioning workflow's id when one was started; nothing is recorded when
    nothing changes.
    """
    if storage.status in BUSY:
        raise Conflict(f"the storage is {storage.status}; wait until its workflow has finished")
    changes: dict[str, Any] = {}
    if name is not None and name != storage.name:
        await _name_free(session, storage.workspace_id, name, exclude=storage.id)
        changes["name"] = name
    if capacity_gb is not None and capacity_gb != storage.capacity_gb:
        used_gb = whole_gb(storage.used_bytes)
        if capacity_gb < used_gb:
            raise Conflict(
                f"the storage already holds {used_gb} GB; its capacity cannot go below that",
                "capacity-below-usage",
                "Capacity below usage",
                used_gb=used_gb,
                requested_gb=capacity_gb,
            )
        await _check_quota(session, storage.workspace_id, capacity_gb, exclude=storage.id)
        changes["capacity_gb"] = capacity_gb
    reprovision = False
    if connection is not None:
        config, secrets = _split(connection(storage.type))
        fixed = _fixed_changed(storage, config)
        if fixed:
            raise Unsupported(
                f"{', '.join(fixed)} of a {storage.type} storage are fixed when it is created;"
                " create a new storage for another location",
                "fixed-connection-setting",
                "Setting cannot change",
                {
                    f"connection.{key}": "fixed when the storage is created; create a new"
                    " storage for another value"
                    for key in fixed
                },
            )
        if config != (storage.connection_config or {}) or secrets:
            storage.connection_config = config
            if secrets:
                storage.connection_secrets = _seal(settings, storage.id, secrets)
            changes["connection"] = config
            reprovision = True
    if not changes:
        return None
    for key in ("name", "capacity_gb"):
        if key in changes:
            setattr(storage, key, changes[key])
    workflow_id = provision_workflow_id(storage.id)
    audit.record(
        session,
        actor,
        "storage.update",
        "backup_storage",
        storage.id,
        workspace_id=storage.workspace_id,
        details={**changes, **({"workflow_id": workflow_id} if reprovision else {})},
    )
    if not reprovision:
        return None
    storage.status, storage.status_message = StorageStatus.PENDING, None
    job = await _job(session, storage, "update")
    await _start(
        temporal, ProvisionStorageWorkflow.run, job, workflow_id, session, storage, "update"
    )
    return workflow_id


async def _refuse_if_held(session: AsyncSession, storage: BackupStorage, force: bool) -> None:
    """A storage a policy uses is never deleted; one holding backups only with ``force``."""
    policies = (
        await session.scalars(
            select(BackupPolicy.application_id).where(BackupPolicy.storage_id == storage.id)
        )
    ).all()
    if policies:
        raise Conflict(
            f"backup policies of {len(policies)} application(s) use this storage; move or delete"
            " them first",
            application_ids=[str(p) for p in policies],
        )
    protected = (
        await session.scalars(
            select(BackupExecution.id).where(
                BackupExecution.storage_id == storage.id,
                BackupExecution.protected.is_(True),
                BackupExecution.status != RunStatus.PRUNED,
            )
        )
    ).all()
    if protected and not force:
        raise Conflict(
            f"the storage holds {len(protected)} protected backup(s)"
            f" ({', '.join(str(p) for p in protected)}); unprotect them, or pass force=true to"
            " delete them together with the storage",
            protected_backup_ids=[str(p) for p in protected],
        )
    if storage.used_bytes > 0 and not force:
        raise Conflict(
            f"the storage holds {storage.used_bytes} bytes of backups; pass force=true to delete"
            " them together with the storage",
            used_bytes=storage.used_bytes,
        )


async def delete(
    session: AsyncSession,
    temporal: Client,
    actor: audit.Actor,
    storage: BackupStorage,
    force: bool,
) -> str:
    """Marks the storage deleting and starts its removal (its backups too with ``force``)."""
    if storage.status == StorageStatus.DELETING:
        raise Conflict("the storage is already being deleted")
    await _refuse_if_held(session, storage, force)
    storage.status, storage.status_message = StorageStatus.DELETING, None
    workflow_id = f"storage-delete-{storage.id}"
    audit.record(
        session,
        actor,
        "storage.delete",
        "backup_storage",
        storage.id,
        workspace_id=storage.workspace_id,
        details={
            "name": storage.name,
            "force": force,
            "used_bytes": storage.used_bytes,
            "workflow_id": workflow_id,
        },
    )
    job = DeleteStorageJob(await _job(session, storage, "delete"), force)
    action = "delete-force" if force else "delete"
    await _start(temporal, DeleteStorageWorkflow.run, job, workflow_id, session, storage, action)
    return workflow_id
