"""Downloads of a backup's parts: links made by the application's owner or a workspace
administrator, fetched by whoever holds the link (docs/downloads.md)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.responses import StreamingResponse

from api.deps import ApplicationAccess, CurrentPrincipal, SessionDep, SettingsDep
from api.download_grants import granted
from api.problems import Problem, refusals
from api.request_id import current_request_id
from api.schemas.downloads import DownloadCreate, DownloadLink, DownloadOut
from db.audit import Actor
from db.models import BackupDownload
from services import downloads

router = APIRouter(tags=["downloads"])
_RANGE = re.compile(r"^bytes=(\d+)-$")


async def granter(
    app_id: Annotated[uuid.UUID, Path()], principal: CurrentPrincipal, session: SessionDep
) -> ApplicationAccess:
    """The application's owner or a workspace administrator (api/download_grants.py)."""
    return await granted(session, principal, app_id)


Granter = Annotated[ApplicationAccess, Depends(granter)]


def _out(link: BackupDownload) -> dict[str, Any]:
    return DownloadOut.of(link, backup_id=link.backup_execution_id).model_dump()


@router.post(
    "/api/v1/applications/{app_id}/backups/{backup_id}/downloads",
    status_code=201,
    response_model=DownloadLink,
)
async def create_download(
    backup_id: uuid.UUID,
    body: DownloadCreate,
    access: Granter,
    session: SessionDep,
    request: Request,
) -> dict[str, Any]:
    """A link to one part; the answer holds its URL, which is never shown again."""
    with refusals():
        link, token = await downloads.create(
            session,
            access.workspace.principal.actor,
            access.application,
            backup_id,
            body.part,
            body.compression,
            body.expires_in,
        )
    await session.commit()
    url = str(request.url_for("fetch_download", token=token))
    return DownloadLink.of(link, backup_id=link.backup_execution_id, url=url).model_dump()


@router.get("/api/v1/applications/{app_id}/downloads", response_model=list[DownloadOut])
async def list_downloads(access: Granter, session: SessionDep) -> list[dict[str, Any]]:
    """Every link made for the application, newest first; their URLs are not kept."""
    links = await downloads.of_application(session, access.application)
    return [_out(link) for link in links]


@router.post(
    "/api/v1/applications/{app_id}/downloads/{download_id}/revoke", response_model=DownloadOut
)
async def revoke_download(
    download_id: uuid.UUID, access: Granter, session: SessionDep
) -> dict[str, Any]:
    """Ends the link at once; a download already under way is not cut."""
    with refusals():
        link = await downloads.revoke(
            session, access.workspace.principal.actor, access.application, download_id
        )
    await session.commit()
    return _out(link)


@router.get(
    "/api/v1/downloads/{token}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the part's bytes"},
        206: {"description": "the bytes from the asked start (a resumed database dump)"},
    },
)
async def fetch_download(
    token: Annotated[str, Path(min_length=1, max_length=100)],
    session: SessionDep,
    settings: SettingsDep,
    range_: Annotated[str | None, Header(alias="Range")] = None,
) -> Response:
    """The part itself. The link is the credential: no token is needed, and a `Range:
    bytes=N-` resumes a database dump from byte N."""
    link = await downloads.by_token(session, token)
    actor = Actor(
        label=f"download link {link.id}" if link else "download link",
        request_id=current_request_id(),
    )
    start = 0
    with refusals():
        try:
            downloads.refuse_use(session, actor, link)
        finally:
            await session.commit()
        assert link is not None
        export = await downloads.open_export(session, settings, link)
        if range_ is not None:
            found = _RANGE.match(range_)
            if found is None:
                raise Problem(
                    416,
                    "range-not-satisfiable",
                    "Range not satisfiable",
                    "only one open range 'bytes=N-' is served",
                )
            start = int(found[1])
    try:
        export = downloads.from_byte(export, start)
    except downloads.Unresumable as exc:
        raise Problem(416, "range-not-satisfiable", "Range not satisfiable", str(exc)) from None
    await downloads.record_use(session, actor, link, start)
    await session.commit()
    headers = {
        "Content-Disposition": f'attachment; filename="{export.filename}"',
        "Cache-Control": "no-store",
    }
    if export.size is not None:
        headers["Accept-Ranges"] = "bytes"
        headers["Content-Length"] = str(export.size - start)
        if start:
            headers["Content-Range"] = f"bytes {start}-{export.size - 1}/{export.size}"
    return StreamingResponse(
        export.chunks,
        status_code=206 if start else 200,
        media_type=export.media_type,
        headers=headers,
    )
