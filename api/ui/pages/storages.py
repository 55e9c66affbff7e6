"""A workspace's storages: the list with live rows, one storage's page and usage chart, and
creating, changing and deleting them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData

from api import presenters
from api.deps import SessionDep, WorkspaceAccess, dedicated_admin, get_settings, get_temporal
from api.pagination import page_of
from api.problems import Problem, refusals
from api.schemas.storages import StorageCreate, StorageUpdate
from api.ui import charts
from api.ui.pages.shared import (
    REFUSALS,
    Reader,
    Writer,
    dedicated,
    from_form,
    go,
    optional,
    page_router,
    refused,
    render,
    text,
)
from api.ui.sessions import SignedIn
from core.states import StorageStatus
from services import storages

router = page_router()
# Storage states that change by themselves: their row polls until it settles.
SETTLING = (StorageStatus.PENDING, StorageStatus.DELETING)


def _connection(form: FormData, kind: str) -> dict[str, Any]:
    """The storage type's connection settings from the form's fields (empty ones left out)."""
    if kind == "nfs":
        fields = {k: optional(form, f"nfs_{k}") for k in ("server", "export", "options")}
    elif kind == "ceph":
        monhost = [h for h in text(form, "ceph_monhost").replace(",", " ").split() if h]
        fields = {
            k: optional(form, f"ceph_{k}") for k in ("username", "fs_name", "subdir", "keyring")
        }
        fields["monhost"] = monhost or None  # type: ignore[assignment]
    else:
        return {}
    return {k: v for k, v in fields.items() if v is not None}


async def _storage(
    session: SessionDep, access: WorkspaceAccess, storage_id: uuid.UUID
) -> dict[str, Any]:
    with refusals():
        return presenters.storage(await storages.get(session, access.workspace.id, storage_id))


async def _storages_page(
    request: Request,
    signed: SignedIn,
    session: SessionDep,
    access: WorkspaceAccess,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    listed, _ = await page_of(session, storages.of_workspace(access.workspace.id), 200, None)
    usage = await storages.usage(session, access.workspace, 0)
    return render(
        request,
        "storages.html",
        signed,
        status_code,
        access=access,
        storages=[presenters.storage(s) for s in listed],
        usage=usage,
        settling=SETTLING,
        **extra,
    )


@router.get("/workspaces/{workspace_id}/storages", response_class=HTMLResponse)
async def storages_page(
    request: Request, workspace_id: uuid.UUID, signed: Reader, session: SessionDep
) -> Response:
    access = await dedicated(session, signed, workspace_id)
    return await _storages_page(request, signed, session, access)


@router.post("/workspaces/{workspace_id}/storages", response_class=HTMLResponse)
async def create_storage(
    request: Request, workspace_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    access = await dedicated_admin(await dedicated(session, signed, workspace_id))
    form = await request.form()
    kind = text(form, "type")
    try:
        body = from_form(
            StorageCreate,
            {
                "name": text(form, "name"),
                "type": kind,
                "capacity_gb": text(form, "capacity_gb"),
                "connection": _connection(form, kind),
            },
        )
        temporal = await get_temporal(request)
        with refusals():
            await storages.create(
                session,
                get_settings(request),
                temporal,
                access.principal.actor,
                access.workspace.id,
                body.name,
                body.type,
                body.capacity_gb,
                body.checked_connection(),
            )
        await session.commit()
    except REFUSALS as exc:
        signed, status, words = await refused(request, session, exc)
        access = await dedicated(session, signed, workspace_id)
        return await _storages_page(
            request, signed, session, access, status, error=words, form=form
        )
    return go(request, f"/ui/workspaces/{workspace_id}/storages")


@router.get("/workspaces/{workspace_id}/storages/{storage_id}/row", response_class=HTMLResponse)
async def storage_row(
    request: Request,
    workspace_id: uuid.UUID,
    storage_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
) -> Response:
    """The live row of a storage being provisioned or deleted; empty once it is gone."""
    access = await dedicated(session, signed, workspace_id)
    try:
        storage = await _storage(session, access, storage_id)
    except Problem as exc:
        if exc.status == 404:
            return HTMLResponse("")
        raise
    return render(
        request, "_storage_row.html", signed, access=access, storage=storage, settling=SETTLING
    )


async def _storage_page(
    request: Request,
    signed: SignedIn,
    session: SessionDep,
    access: WorkspaceAccess,
    storage_id: uuid.UUID,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    storage = await _storage(session, access, storage_id)
    return render(
        request,
        "storage.html",
        signed,
        status_code,
        access=access,
        storage=storage,
        settling=SETTLING,
        error=error,
    )


@router.get("/workspaces/{workspace_id}/storages/{storage_id}", response_class=HTMLResponse)
async def storage_page(
    request: Request,
    workspace_id: uuid.UUID,
    storage_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
) -> Response:
    access = await dedicated(session, signed, workspace_id)
    return await _storage_page(request, signed, session, access, storage_id)


async def _storage_write(
    request: Request,
    workspace_id: uuid.UUID,
    storage_id: uuid.UUID,
    signed: SignedIn,
    session: SessionDep,
    action: Callable[[WorkspaceAccess, FormData], Coroutine[Any, Any, Any]],
    done: str,
) -> Response:
    access = await dedicated_admin(await dedicated(session, signed, workspace_id))
    try:
        await action(access, await request.form())
    except REFUSALS as exc:
        signed, status, words = await refused(request, session, exc)
        access = await dedicated(session, signed, workspace_id)
        return await _storage_page(request, signed, session, access, storage_id, status, words)
    return go(request, done)


@router.post("/workspaces/{workspace_id}/storages/{storage_id}", response_class=HTMLResponse)
async def update_storage(
    request: Request,
    workspace_id: uuid.UUID,
    storage_id: uuid.UUID,
    signed: Writer,
    session: SessionDep,
) -> Response:
    async def action(access: WorkspaceAccess, form: FormData) -> None:
        with refusals():
            storage = await storages.get(session, access.workspace.id, storage_id)
        connection = _connection(form, storage.type)
        body = from_form(
            StorageUpdate,
            {
                "name": text(form, "name"),
                "capacity_gb": text(form, "capacity_gb"),
                "connection": connection if storage.type != "local" else None,
            },
        )
        temporal = await get_temporal(request)
        with refusals():
            await storages.update(
                session,
                get_settings(request),
                temporal,
                access.principal.actor,
                storage,
                body.name,
                body.capacity_gb,
                body.checked_connection(),
            )
        await session.commit()

    here = f"/ui/workspaces/{workspace_id}/storages/{storage_id}"
    return await _storage_write(request, workspace_id, storage_id, signed, session, action, here)


@router.post("/workspaces/{workspace_id}/storages/{storage_id}/delete", response_class=HTMLResponse)
async def delete_storage(
    request: Request,
    workspace_id: uuid.UUID,
    storage_id: uuid.UUID,
    signed: Writer,
    session: SessionDep,
) -> Response:
    async def action(access: WorkspaceAccess, form: FormData) -> None:
        temporal = await get_temporal(request)
        with refusals():
            storage = await storages.get(session, access.workspace.id, storage_id)
            await storages.delete(
                session, temporal, access.principal.actor, storage, text(form, "force") == "true"
            )
        await session.commit()

    back = f"/ui/workspaces/{workspace_id}/storages"
    return await _storage_write(request, workspace_id, storage_id, signed, session, action, back)


@router.get("/workspaces/{workspace_id}/storages/{storage_id}/usage.svg")
async def storage_chart(
    workspace_id: uuid.UUID, storage_id: uuid.UUID, signed: Reader, session: SessionDep
) -> Response:
    access = await dedicated(session, signed, workspace_id)
    storage = await _storage(session, access, storage_id)
    usage = await storages.usage(session, access.workspace, 2016)
    samples = next(s["history"] for s in usage["storages"] if s["storage_id"] == storage_id)
    return charts.usage(samples, storage["capacity_gb"] * 1024**3)
