"""Backup storages of a workspace: provisioned, changed and deleted through workflows."""

from __future__ import annotations

import math
import uuid
from typing import Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.storage import GIB
from api.deps import DedicatedAdmin, DedicatedReader, SessionDep, SettingsDep, TemporalDep
from api.pagination import Cursor, Limit, Page, fetch_page
from api.problems import Problem, conflict, not_found
from api.schemas.common import Input
from api.schemas.storages import (
    CONNECTION_UPDATES,
    CONNECTIONS,
    SECRET_FIELDS,
    StorageAccepted,
    StorageCreate,
    StorageOut,
    StorageUpdate,
)
from api.temporal_links import workflow_url
from contracts.storage import DeleteStorageJob, StorageJob
from core import crypto, run_summary, secret_contexts
from core.search_attributes import WORKSPACE_ID
from core.settings import CONTROL_TASK_QUEUE, Settings
from db import audit
from db.models import BackupExecution, BackupPolicy, BackupStorage
from db.quota import allocated_gb, lock_workspace
from workflows.storage import DeleteStorageWorkflow, ProvisionStorageWorkflow

router = APIRouter(
    prefix="/api/v1/workspaces/{workspace_id}/backup-storages", tags=["backup storages"]
)
BUSY = ("pending", "deleting")
# PVE sets these only at creation (its "fixed" options).
FIXED_SETTINGS = {"nfs": ("server", "export")}


def present(storage: BackupStorage, **extra: Any) -> dict[str, Any]:
    secrets = sorted(SECRET_FIELDS) if storage.connection_secrets else []
    return {
        **StorageOut.model_validate(
            {
                **{c.key: getattr(storage, c.key) for c in BackupStorage.__mapper__.column_attrs},
                "connection": storage.connection_config or {},
                "secrets_set": secrets,
            }
        ).model_dump(),
        **extra,
    }


def _split(connection: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    config = {k: v for k, v in connection.items() if k not in SECRET_FIELDS and v is not None}
    secrets = {k: v for k, v in connection.items() if k in SECRET_FIELDS and v is not None}
    return config, secrets


def _seal(settings: Settings, storage_id: uuid.UUID, secrets: dict[str, str]) -> str | None:
    if not secrets:
        return None
    try:
        return crypto.seal_json(
            secrets,
            master_key=settings.master_key_text,
            context=secret_contexts.storage_secrets(storage_id),
        )
    except crypto.CryptoError as exc:
        raise Problem(503, "secrets-unavailable", "Secrets unavailable", str(exc)) from exc


def _require_backend(settings: Settings, kind: str) -> None:
    if kind != "local" and not settings.proxmox_configured:
        raise Problem(
            422,
            "proxmox-not-configured",
            "Proxmox VE not configured",
            f"storage type '{kind}' is provisioned through Proxmox VE, which this installation"
            " does not have configured; use type 'local' or configure CAIRN_PROXMOX_*",
        )


async def _check_quota(
    session: AsyncSession, access: DedicatedAdmin, requested: int, exclude: uuid.UUID | None
) -> None:
    workspace = await lock_workspace(session, access.workspace.id)
    allocated = await allocated_gb(session, workspace.id, exclude=exclude)
    if allocated + requested > workspace.backup_quota_gb:
        raise Problem(
            409,
            "quota-exceeded",
            "Backup quota exceeded",
            f"the workspace's backup quota is {workspace.backup_quota_gb} GB, its storages already"
            f" allocate {allocated} GB and {requested} GB were asked: at most"
            f" {max(workspace.backup_quota_gb - allocated, 0)} GB can be allocated",
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
        raise conflict(f"a backup storage named {name} already exists in this workspace")


async def _start(
    client: Client, workflow: Any, arg: Any, workflow_id: str,
    session: AsyncSession, storage: BackupStorage, action: str,
) -> None:  # fmt: skip
    """Starts a storage job, filterable by ``WorkspaceId`` and summed up in words in the UI."""
    names = await run_summary.lookup(session, storage.workspace_id, storage_id=storage.id)
    text = run_summary.storage(names, action)
    try:
        await client.start_workflow(
            workflow, arg, id=workflow_id, task_queue=CONTROL_TASK_QUEUE,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(WORKSPACE_ID, str(storage.workspace_id))]
            ),
            static_summary=text.summary, static_details=text.details,
        )  # fmt: skip
    except WorkflowAlreadyStartedError as exc:
        raise conflict(f"workflow {workflow_id} is still running; wait for it to finish") from exc
    except Exception as exc:
        raise Problem(
            503,
            "temporal-unavailable",
            "Temporal unavailable",
            f"the workflow could not be started ({type(exc).__name__}); nothing was changed",
        ) from exc


async def _job(session: AsyncSession, storage: BackupStorage, mode: str) -> StorageJob:
    """Flushes the change and stamps the job with the row's new revision."""
    await session.flush()
    await session.refresh(storage, ["updated_at"])
    assert storage.updated_at is not None
    return StorageJob(str(storage.id), storage.updated_at.isoformat(), mode)


async def _get(
    session: AsyncSession, access: DedicatedReader, storage_id: uuid.UUID
) -> BackupStorage:
    storage = await session.get(BackupStorage, storage_id)
    if storage is None or storage.workspace_id != access.workspace.id:
        raise not_found("backup storage", storage_id)
    return storage


@router.post("", status_code=202, response_model=StorageAccepted)
async def create_storage(
    body: StorageCreate,
    access: DedicatedAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    _require_backend(settings, body.type)
    await _name_free(session, access.workspace.id, body.name)
    await _check_quota(session, access, body.capacity_gb, exclude=None)
    storage_id = uuid.uuid4()
    connection = _validate_connection(CONNECTIONS, body.type, body.connection)
    config, secrets = _split(connection.model_dump())
    storage = BackupStorage(
        id=storage_id,
        workspace_id=access.workspace.id,
        name=body.name,
        type=body.type,
        proxmox_storage_id=f"cairn-{storage_id.hex[:16]}",
        capacity_gb=body.capacity_gb,
        status="pending",
        connection_config=config,
        connection_secrets=_seal(settings, storage_id, secrets),
    )
    session.add(storage)
    workflow_id = f"storage-provision-{storage_id}"
    audit.record(
        session, access.principal.actor, "storage.create", "backup_storage", storage_id,
        workspace_id=access.workspace.id,
        details={"name": body.name, "type": body.type, "capacity_gb": body.capacity_gb,
                 "connection": config, "workflow_id": workflow_id},
    )  # fmt: skip
    # Started before the commit: if Temporal is down the request fails and nothing is stored;
    # the activities wait (retrying) until this revision of the row is visible.
    await _start(
        temporal, ProvisionStorageWorkflow.run, await _job(session, storage, "create"),
        workflow_id, session, storage, "create",
    )  # fmt: skip
    await session.commit()
    await session.refresh(storage)
    return present(
        storage, workflow_id=workflow_id, temporal_ui_url=workflow_url(settings, workflow_id)
    )


@router.get("", response_model=Page[StorageOut])
async def list_storages(
    access: DedicatedReader, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, object]:
    items, next_cursor = await fetch_page(
        session,
        select(BackupStorage).where(BackupStorage.workspace_id == access.workspace.id),
        BackupStorage.created_at,
        BackupStorage.id,
        limit,
        cursor,
    )
    return {"items": [present(s) for s in items], "next_cursor": next_cursor}


@router.get("/{storage_id}", response_model=StorageOut)
async def get_storage(
    storage_id: uuid.UUID, access: DedicatedReader, session: SessionDep
) -> dict[str, Any]:
    return present(await _get(session, access, storage_id))


def _validate_connection(models: dict[str, type[Input]], kind: str, given: dict[str, Any]) -> Input:
    try:
        return models[kind].model_validate(given)
    except ValidationError as exc:
        errors = [
            {**err, "loc": ("body", "connection", *err["loc"])}
            for err in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors) from exc


@router.put("/{storage_id}", response_model=StorageOut | StorageAccepted)
async def update_storage(
    storage_id: uuid.UUID,
    body: StorageUpdate,
    access: DedicatedAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    storage = await _get(session, access, storage_id)
    if storage.status in BUSY:
        raise conflict(f"the storage is {storage.status}; wait until its workflow has finished")
    changes: dict[str, Any] = {}
    if body.name is not None and body.name != storage.name:
        await _name_free(session, access.workspace.id, body.name, exclude=storage.id)
        changes["name"] = body.name
    if body.capacity_gb is not None and body.capacity_gb != storage.capacity_gb:
        used_gb = math.ceil(storage.used_bytes / GIB)
        if body.capacity_gb < used_gb:
            raise Problem(
                409,
                "capacity-below-usage",
                "Capacity below usage",
                f"the storage already holds {used_gb} GB; its capacity cannot go below that",
                used_gb=used_gb,
                requested_gb=body.capacity_gb,
            )
        await _check_quota(session, access, body.capacity_gb, exclude=storage.id)
        changes["capacity_gb"] = body.capacity_gb
    reprovision = False
    if body.connection is not None:
        connection = _validate_connection(CONNECTION_UPDATES, storage.type, body.connection)
        config, secrets = _split(connection.model_dump())
        current = storage.connection_config or {}
        fixed = [k for k in FIXED_SETTINGS.get(storage.type, ()) if config.get(k) != current.get(k)]
        if fixed:
            raise Problem(
                422,
                "fixed-connection-setting",
                "Setting cannot change",
                f"{', '.join(fixed)} of a {storage.type} storage are fixed when it is created;"
                " create a new storage for another location",
                fields=fixed,
            )
        if config != (storage.connection_config or {}) or secrets:
            storage.connection_config = config
            if secrets:
                storage.connection_secrets = _seal(settings, storage.id, secrets)
            changes["connection"] = config
            reprovision = True
    if not changes:
        return present(storage)
    for key in ("name", "capacity_gb"):
        if key in changes:
            setattr(storage, key, changes[key])
    workflow_id = f"storage-provision-{storage.id}"
    audit.record(
        session, access.principal.actor, "storage.update", "backup_storage", storage.id,
        workspace_id=access.workspace.id,
        details={**changes, **({"workflow_id": workflow_id} if reprovision else {})},
    )  # fmt: skip
    if reprovision:
        storage.status, storage.status_message = "pending", None
        await _start(
            temporal, ProvisionStorageWorkflow.run, await _job(session, storage, "update"),
            workflow_id, session, storage, "update",
        )  # fmt: skip
    await session.commit()
    await session.refresh(storage)
    if reprovision:
        return present(
            storage, workflow_id=workflow_id, temporal_ui_url=workflow_url(settings, workflow_id)
        )
    return present(storage)


@router.delete("/{storage_id}", status_code=202, response_model=StorageAccepted)
async def delete_storage(
    storage_id: uuid.UUID,
    access: DedicatedAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    force: bool = Query(False, description="also delete every backup the storage holds"),
) -> dict[str, Any]:
    storage = await _get(session, access, storage_id)
    if storage.status == "deleting":
        raise conflict("the storage is already being deleted")
    policies = (
        await session.scalars(
            select(BackupPolicy.application_id).where(BackupPolicy.storage_id == storage.id)
        )
    ).all()
    if policies:
        raise conflict(
            f"backup policies of {len(policies)} application(s) use this storage; move or delete"
            " them first",
            application_ids=[str(p) for p in policies],
        )
    protected = (
        await session.scalars(
            select(BackupExecution.id).where(
                BackupExecution.storage_id == storage.id,
                BackupExecution.protected.is_(True),
                BackupExecution.status != "pruned",
            )
        )
    ).all()
    if protected and not force:
        raise conflict(
            f"the storage holds {len(protected)} protected backup(s)"
            f" ({', '.join(str(p) for p in protected)}); unprotect them, or pass force=true to"
            " delete them together with the storage",
            protected_backup_ids=[str(p) for p in protected],
        )
    if storage.used_bytes > 0 and not force:
        raise conflict(
            f"the storage holds {storage.used_bytes} bytes of backups; pass force=true to delete"
            " them together with the storage",
            used_bytes=storage.used_bytes,
        )
    storage.status, storage.status_message = "deleting", None
    workflow_id = f"storage-delete-{storage.id}"
    audit.record(
        session, access.principal.actor, "storage.delete", "backup_storage", storage.id,
        workspace_id=access.workspace.id,
        details={"name": storage.name, "force": force, "used_bytes": storage.used_bytes,
                 "workflow_id": workflow_id},
    )  # fmt: skip
    job = DeleteStorageJob(await _job(session, storage, "delete"), force)
    await _start(
        temporal, DeleteStorageWorkflow.run, job, workflow_id, session, storage,
        "delete-force" if force else "delete",
    )  # fmt: skip
    await session.commit()
    await session.refresh(storage)
    return present(
        storage, workflow_id=workflow_id, temporal_ui_url=workflow_url(settings, workflow_id)
    )
