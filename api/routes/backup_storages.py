"""Backup storages of a workspace: provisioned, changed and deleted through workflows."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Query

from api import presenters
from api.deps import DedicatedAdmin, DedicatedReader, SessionDep, SettingsDep, TemporalDep
from api.pagination import Cursor, Limit, Page, page_of
from api.problems import refusals
from api.schemas.storages import (
    StorageAccepted,
    StorageCreate,
    StorageOut,
    StorageUpdate,
)
from api.temporal_links import workflow_url
from core.settings import Settings
from db.models import BackupStorage
from services import storages

router = APIRouter(
    prefix="/api/v1/workspaces/{workspace_id}/backup-storages", tags=["backup storages"]
)


def _accepted(storage: BackupStorage, settings: Settings, workflow_id: str) -> dict[str, Any]:
    """The storage and the workflow now provisioning or removing it."""
    return StorageAccepted.of(
        storage,
        **presenters.storage_connection(storage),
        workflow_id=workflow_id,
        temporal_ui_url=workflow_url(settings, workflow_id),
    ).model_dump()


@router.post("", status_code=202, response_model=StorageAccepted)
async def create_storage(
    body: StorageCreate,
    access: DedicatedAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    with refusals():
        storage, workflow_id = await storages.create(
            session,
            settings,
            temporal,
            access.principal.actor,
            access.workspace.id,
            body.name,
            body.type,
            body.capacity_gb,
            body.checked_connection(),
        )
    await session.commit()
    await session.refresh(storage)
    return _accepted(storage, settings, workflow_id)


@router.get("", response_model=Page[StorageOut])
async def list_storages(
    access: DedicatedReader, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, object]:
    items, next_cursor = await page_of(
        session, storages.of_workspace(access.workspace.id), limit, cursor
    )
    return {"items": [presenters.storage(s) for s in items], "next_cursor": next_cursor}


@router.get("/{storage_id}", response_model=StorageOut)
async def get_storage(
    storage_id: uuid.UUID, access: DedicatedReader, session: SessionDep
) -> dict[str, Any]:
    with refusals():
        return presenters.storage(await storages.get(session, access.workspace.id, storage_id))


@router.put("/{storage_id}", response_model=StorageOut | StorageAccepted)
async def update_storage(
    storage_id: uuid.UUID,
    body: StorageUpdate,
    access: DedicatedAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    with refusals():
        storage = await storages.get(session, access.workspace.id, storage_id)
        workflow_id = await storages.update(
            session,
            settings,
            temporal,
            access.principal.actor,
            storage,
            body.name,
            body.capacity_gb,
            body.checked_connection(),
        )
    await session.commit()
    await session.refresh(storage)
    if workflow_id is None:
        return presenters.storage(storage)
    return _accepted(storage, settings, workflow_id)


@router.delete("/{storage_id}", status_code=202, response_model=StorageAccepted)
async def delete_storage(
    storage_id: uuid.UUID,
    access: DedicatedAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    force: bool = Query(False, description="also delete every backup the storage holds"),
) -> dict[str, Any]:
    with refusals():
        storage = await storages.get(session, access.workspace.id, storage_id)
        workflow_id = await storages.delete(
            session, temporal, access.principal.actor, storage, force
        )
        # read before the commit: a quick deletion workflow may remove the row right after it
        accepted = _accepted(storage, settings, workflow_id)
    await session.commit()
    return accepted
