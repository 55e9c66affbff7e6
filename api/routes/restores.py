"""Restores of an application from one of its backups."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request

from api import presenters
from api.deps import (
    DedicatedAppReader,
    DedicatedAppWriter,
    OptionalTemporalDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    application_reader,
)
from api.openapi import PROBLEM
from api.pagination import Cursor, Limit, Page, page_of
from api.problems import MEDIA_TYPE, forbidden, refusals, too_large
from api.runs import cancel_run
from api.schemas.restores import (
    RestoreDetail,
    RestoreFromApplicationRequest,
    RestoreOut,
    RestoreRequest,
)
from services import restores, restores_from_application, restores_from_upload

router = APIRouter(prefix="/api/v1/applications/{app_id}", tags=["restores"])


@router.post("/backups/{backup_id}/restore", status_code=202, response_model=RestoreOut)
async def start_restore(
    backup_id: uuid.UUID,
    body: RestoreRequest,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    principal = access.workspace.principal
    with refusals(starting="restore"):
        restore = await restores.request_restore(
            session,
            temporal,
            settings,
            access.application,
            backup_id,
            principal.actor,
            restore_type=body.restore_type,
            asked=restores.Parts(body.database, body.volumes, body.config, body.databases),
            target=body.target.model_dump(exclude_none=True) if body.target else None,
            by_platform_admin=principal.user.is_platform_admin,
            source=body.source,
        )
    await session.refresh(restore)
    return presenters.restore(restore, settings)


@router.post("/restores/from-application", status_code=202, response_model=RestoreOut)
async def restore_from_application(
    body: RestoreFromApplicationRequest,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    """Restores another application's backup into this one (docs/restore-into-another-app.md):
    the caller may restore each of the two; this application is stopped and started, the
    source only read."""
    principal = access.workspace.principal
    source = await application_reader(body.source.application_id, principal, session)
    if not source.can_write:
        raise forbidden(
            "restoring from the source application needs its owner or a workspace administrator"
        )
    with refusals(starting="restore"):
        restore = await restores_from_application.request(
            session,
            temporal,
            settings,
            access.application,
            source.application,
            body.source.backup_id,
            principal.actor,
            restore_type=body.restore_type,
            asked=restores.Parts(body.database, body.volumes, databases=body.databases),
            volume_map=body.volume_map,
            database_map=body.database_map,
            confirm=body.confirm,
        )
    await session.refresh(restore)
    return presenters.restore(restore, settings)


def _too_large(limit: int) -> Exception:
    return too_large(f"the upload is over the limit of {limit} bytes; nothing was kept", limit)


async def _bounded(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The body, refused (413) at the first byte past ``limit``, however it is sent."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        yield chunk


@router.post(
    "/restores/from-upload",
    status_code=202,
    response_model=RestoreOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
    responses={
        413: {
            "description": "The body is over `CAIRN_UPLOAD_MAX_BYTES` (`payload-too-large`,"
            " with `limit_bytes`); nothing was kept.",
            "content": {MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{PROBLEM}"}}},
        }
    },
)
async def restore_from_upload(
    request: Request,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    format: Literal["custom", "plain"] = "custom",
    confirm: str | None = None,
) -> dict[str, Any]:
    """Restores the application's database from the dump in the body (raw bytes, streamed;
    docs/restore-from-upload.md): read whole before the application is stopped, restored
    beside the live database and swapped in."""
    limit = settings.upload_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    with refusals(starting="restore"):
        restore = await restores_from_upload.request(
            session,
            temporal,
            settings,
            access.application,
            _bounded(request.stream(), limit),
            access.workspace.principal.actor,
            dump_format=format,
            confirm=confirm,
        )
    await session.refresh(restore)
    return presenters.restore(restore, settings)


@router.get("/restores", response_model=Page[RestoreOut])
async def list_restores(
    access: DedicatedAppReader,
    session: SessionDep,
    settings: SettingsDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, object]:
    query = restores.of_application(access.application)
    items, next_cursor = await page_of(session, query, limit, cursor)
    return {"items": [presenters.restore(r, settings) for r in items], "next_cursor": next_cursor}


@router.get("/restores/{restore_id:uuid}", response_model=RestoreDetail)
async def get_restore(
    restore_id: uuid.UUID,
    access: DedicatedAppReader,
    session: SessionDep,
    settings: SettingsDep,
    temporal: OptionalTemporalDep,
) -> dict[str, Any]:
    return await presenters.restore_detail(
        session, temporal, settings, access.application, restore_id
    )


@router.post("/restores/{restore_id}/cancel", status_code=202, response_model=RestoreOut)
async def cancel_restore(
    restore_id: uuid.UUID,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    """Stops a pending or running restore; the application is started again either way."""
    with refusals():
        restore = await restores.restore_of(session, access.application, restore_id)
    await cancel_run(
        session,
        temporal,
        restore,
        access.workspace.principal.actor,
        access.application.workspace_id,
    )
    return presenters.restore(restore, settings)
