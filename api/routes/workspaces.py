"""Workspaces (platform admin only): plan and backup quota come from the PaaS."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import PlatformAdmin, SessionDep, WorkspaceReader
from api.pagination import Cursor, Limit, Page, fetch_page
from api.problems import conflict
from api.schemas.registry import WorkspaceCreate, WorkspaceOut, WorkspaceUpdate
from db import audit
from db.models import Workspace
from db.quota import allocated_gb, lock_workspace

router = APIRouter(prefix="/api/v1/admin/workspaces", tags=["admin"])


@router.post("", status_code=201, response_model=WorkspaceOut)
async def create_workspace(
    body: WorkspaceCreate, admin: PlatformAdmin, session: SessionDep
) -> Workspace:
    if await session.scalar(select(Workspace.id).where(Workspace.name == body.name)):
        raise conflict(f"a workspace named {body.name} already exists")
    workspace = Workspace(**body.model_dump())
    session.add(workspace)
    await session.flush()
    audit.record(
        session,
        admin.actor,
        "workspace.create",
        "workspace",
        workspace.id,
        workspace_id=workspace.id,
        details=body.model_dump(),
    )
    await session.commit()
    await session.refresh(workspace)
    return workspace


@router.get("", response_model=Page[WorkspaceOut])
async def list_workspaces(
    _: PlatformAdmin, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, object]:
    items, next_cursor = await fetch_page(
        session, select(Workspace), Workspace.created_at, Workspace.id, limit, cursor
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{workspace_id}", response_model=WorkspaceOut)
async def get_workspace(_: PlatformAdmin, access: WorkspaceReader) -> Workspace:
    return access.workspace


@router.patch("/{workspace_id}", response_model=WorkspaceOut)
async def update_workspace(
    body: WorkspaceUpdate, admin: PlatformAdmin, access: WorkspaceReader, session: SessionDep
) -> Workspace:
    workspace = access.workspace
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    quota = changes.get("backup_quota_gb")
    if quota is not None:
        await lock_workspace(session, workspace.id)
        allocated = await allocated_gb(session, workspace.id)
        if quota < allocated:
            raise conflict(
                f"the workspace's backup storages already allocate {allocated} GB; a quota of"
                f" {quota} GB is too small (shrink or delete storages first)",
                kind="quota-exceeded",
                title="Quota below allocation",
                quota_gb=quota,
                allocated_gb=allocated,
            )
    if changes:
        for key, value in changes.items():
            setattr(workspace, key, value)
        audit.record(
            session,
            admin.actor,
            "workspace.update",
            "workspace",
            workspace.id,
            workspace_id=workspace.id,
            details=changes,
        )
        await session.commit()
        await session.refresh(workspace)
    return workspace
