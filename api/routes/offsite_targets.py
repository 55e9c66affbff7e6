"""Offsite targets of a workspace: added once checked, listed, removed; workspace admins."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import select

from api.deps import DedicatedAdmin, DedicatedReader, SessionDep, SettingsDep
from api.pagination import Cursor, Limit, Page, fetch_page
from api.problems import refusals
from api.schemas.offsite_targets import (
    OffsiteTargetCreate,
    OffsiteTargetOut,
    OffsiteTargetUpdate,
)
from db.models import OffsiteTarget
from services import offsite_targets

router = APIRouter(
    prefix="/api/v1/workspaces/{workspace_id}/offsite-targets", tags=["offsite targets"]
)


def present(target: OffsiteTarget) -> dict[str, Any]:
    """The target without its credentials: only whether each set is stored."""
    return OffsiteTargetOut.of(
        target,
        url=target.location["url"],
        maintenance_url=target.location.get("maintenance_url"),
        region=target.location.get("region"),
        immutability=target.location.get("immutability"),
        credentials_set=bool(target.credentials_sealed),
        maintenance_credentials_set=bool(target.maintenance_sealed),
    ).model_dump()


@router.post("", status_code=201, response_model=OffsiteTargetOut)
async def create_offsite_target(
    body: OffsiteTargetCreate, access: DedicatedAdmin, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    with refusals():
        target = await offsite_targets.create(
            session, settings, access.principal.actor, access.workspace.id, body.model_dump()
        )
    await session.commit()
    await session.refresh(target)
    return present(target)


@router.get("", response_model=Page[OffsiteTargetOut])
async def list_offsite_targets(
    access: DedicatedReader, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, object]:
    items, next_cursor = await fetch_page(
        session,
        select(OffsiteTarget).where(OffsiteTarget.workspace_id == access.workspace.id),
        OffsiteTarget.created_at,
        OffsiteTarget.id,
        limit,
        cursor,
    )
    return {"items": [present(t) for t in items], "next_cursor": next_cursor}


@router.get("/{target_id}", response_model=OffsiteTargetOut)
async def get_offsite_target(
    target_id: uuid.UUID, access: DedicatedReader, session: SessionDep
) -> dict[str, Any]:
    with refusals():
        return present(await offsite_targets.get(session, access.workspace.id, target_id))


@router.patch("/{target_id}", response_model=OffsiteTargetOut)
async def update_offsite_target(
    target_id: uuid.UUID,
    body: OffsiteTargetUpdate,
    access: DedicatedAdmin,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Rename, set the upload limit, raise the protection, rotate either credentials (new
    ones are checked as when the target was added; a refusal saves nothing)."""
    with refusals():
        target = await offsite_targets.get(session, access.workspace.id, target_id)
        target = await offsite_targets.update(
            session,
            settings,
            access.principal.actor,
            target,
            body.model_dump(exclude_unset=True),
        )
    await session.commit()
    await session.refresh(target)
    return present(target)


@router.delete("/{target_id}", status_code=204)
async def delete_offsite_target(
    target_id: uuid.UUID, access: DedicatedAdmin, session: SessionDep
) -> Response:
    with refusals():
        target = await offsite_targets.get(session, access.workspace.id, target_id)
        await offsite_targets.delete(session, access.principal.actor, target)
    await session.commit()
    return Response(status_code=204)
