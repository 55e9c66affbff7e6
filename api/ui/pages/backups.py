"""A backup's page with its live part, and what can be done to it (cancel, protect, download
a part)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse

from api import presenters
from api.deps import (
    ApplicationAccess,
    SessionDep,
    dedicated_app_writer,
    get_settings,
    get_temporal,
    get_temporal_if_up,
)
from api.download_grants import granted
from api.problems import refusals
from api.runs import cancel_run
from api.ui import views
from api.ui.pages.shared import Reader, Writer, app_access, go, page_router, run_page, text
from services import backups, downloads

router = page_router()

# A link made for the browser is followed at once; five minutes leave time to start the
# transfer, and what stays in the browser's download history is soon worthless.
BROWSER_LINK_SECONDS = 300


async def _backup(
    request: Request, session: SessionDep, access: ApplicationAccess, backup_id: uuid.UUID
) -> dict[str, Any]:
    temporal, settings = await get_temporal_if_up(request), get_settings(request)
    body = await presenters.backup_detail(
        session, temporal, settings, access.application, backup_id
    )
    body["seconds"] = views.run_seconds(body["started_at"], body["completed_at"])
    body["downloadable"] = downloads.parts(body.get("metadata"))
    return views.with_live_state(body, datetime.now(UTC))


@router.get("/applications/{app_id}/backups/{backup_id}", response_class=HTMLResponse)
async def backup_page(
    request: Request, app_id: uuid.UUID, backup_id: uuid.UUID, signed: Reader, session: SessionDep
) -> Response:
    """The backup's page; its live part alone when htmx polls it."""
    access = await app_access(session, signed, app_id)
    backup = await _backup(request, session, access, backup_id)
    return run_page(request, signed, access, "backup", "backup.html", backup)


@router.post("/applications/{app_id}/backups/{backup_id}/cancel", response_class=HTMLResponse)
async def cancel_backup(
    request: Request, app_id: uuid.UUID, backup_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    access = await dedicated_app_writer(await app_access(session, signed, app_id))
    temporal = await get_temporal(request)
    with refusals():
        execution = await backups.backup_of(session, access.application, backup_id)
    actor = access.workspace.principal.actor
    await cancel_run(session, temporal, execution, actor, access.application.workspace_id)
    return go(request, f"/ui/applications/{app_id}/backups/{backup_id}")


@router.post("/applications/{app_id}/backups/{backup_id}/protection", response_class=HTMLResponse)
async def set_protection(
    request: Request, app_id: uuid.UUID, backup_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    """Keeps a backup out of retention's reach, or hands it back (the API's protect routes)."""
    access = await dedicated_app_writer(await app_access(session, signed, app_id))
    protect = text(await request.form(), "protect") == "true"
    with refusals():
        await backups.set_protection(
            session, access.workspace.principal.actor, access.application, backup_id, protect
        )
    await session.commit()
    return go(request, f"/ui/applications/{app_id}/backups/{backup_id}")


@router.post("/applications/{app_id}/backups/{backup_id}/download", response_class=HTMLResponse)
async def download_part(
    request: Request, app_id: uuid.UUID, backup_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    """A short-lived link to one part, made as the API makes it (same rule, same audit), and
    the browser sent to it: the file arrives as a download, the page stays."""
    access = await granted(session, signed.principal, app_id)
    part = text(await request.form(), "part")
    with refusals():
        _, token = await downloads.create(
            session,
            access.workspace.principal.actor,
            access.application,
            backup_id,
            part,
            None,
            BROWSER_LINK_SECONDS,
        )
    await session.commit()
    return go(request, request.url_for("fetch_download", token=token).path)
