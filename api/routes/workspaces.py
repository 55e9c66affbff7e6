"""Workspaces (platform admin only): plan and backup quota come from the PaaS."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import PlatformAdmin, SessionDep, WorkspaceReader
from api.pagination import Cursor, Limit, Page, page_of
from api.problems import conflict, refusals
from api.schemas.registry import WorkspaceCreate, WorkspaceOut, WorkspaceUpdate
from db import audit
from db.models import Workspace
from services import workspaces

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
    items, next_cursor = await page_of(session, workspaces.every_workspace(), limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{workspace_id}", response_model=WorkspaceOut)
async def get_workspace(_: PlatformAdmin, access: WorkspaceReader) -> Workspace:
    return access.workspace


@router.patch("/{workspace_id}", response_model=WorkspaceOut)
async def update_workspace(
    body: WorkspaceUpdate, admin: PlatformAdmin, access: WorkspaceReader, session: SessionDep
) -> Workspace:
    workspace = access.workspace
    with refusals():
        await workspaces.update(
            session, admin.actor, workspace, plan=body.plan, backup_quota_gb=body.backup_quota_gb
        )
    await session.commit()
    await session.refresh(workspace)
    return workspace
