"""The caller's workspaces, a workspace's overview (protection at a glance) and its audit log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api import presenters
from api.deps import SessionDep, dedicated_reader, get_settings, workspace_admin, workspace_reader
from api.pagination import page_of
from api.ui import views
from api.ui.pages.shared import Reader, page_router, render
from core.states import has_backups
from services import offsite_targets, overdue, storages, workspaces

router = page_router()


@router.get("", response_class=HTMLResponse)
async def home(request: Request, signed: Reader, session: SessionDep) -> Response:
    """The caller's workspaces (a platform administrator sees every workspace)."""
    user = signed.principal.user
    shown = [
        {"id": m["workspace_id"], "name": m["workspace_name"], "plan": m["plan"], "role": m["role"]}
        for m in await workspaces.memberships(session, user.id)
    ]
    if user.is_platform_admin:
        known = {w["id"] for w in shown}
        listed, _ = await page_of(session, workspaces.every_workspace(), 200, None)
        shown += [
            {"id": w.id, "name": w.name, "plan": w.plan, "role": None}
            for w in listed
            if w.id not in known
        ]
    if len(shown) == 1:
        return RedirectResponse(f"/ui/workspaces/{shown[0]['id']}", status_code=303)
    return render(request, "home.html", signed, workspaces=shown)


@router.get("/workspaces/{workspace_id}", response_class=HTMLResponse)
async def overview(
    request: Request,
    workspace_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
    cursor: str | None = None,
) -> Response:
    access = await workspace_reader(workspace_id, signed.principal, session)
    if not has_backups(access.workspace.plan):
        return render(request, "overview.html", signed, access=access, apps=[], usage=None)
    rows, next_cursor = await page_of(
        session, workspaces.applications_of(access.workspace.id), 100, cursor
    )
    settings, ids = get_settings(request), [row.id for row in rows]
    standing = await overdue.standings(session, settings, ids)
    lags = await offsite_targets.offsite_lags(session, settings, ids)
    items = [presenters.application(row, standing.get(row.id), lags.get(row.id)) for row in rows]
    usage = await storages.usage(session, (await dedicated_reader(access)).workspace, 0)
    now = datetime.now(UTC)
    states = await views.protections(session, ids, standing, now)
    return render(
        request,
        "overview.html",
        signed,
        access=access,
        usage=usage,
        next_cursor=next_cursor,
        apps=[{**a, "protection": states[a["id"]]} for a in items],
    )


@router.get("/workspaces/{workspace_id}/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    workspace_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
    action: Annotated[str, Query(max_length=100)] = "",
    actor: Annotated[str, Query(max_length=320)] = "",
    target: Annotated[str, Query(max_length=255)] = "",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The workspace's audit trail (administrators), narrowed by action, actor and target."""
    access = await workspace_admin(await workspace_reader(workspace_id, signed.principal, session))
    query = workspaces.audit_events(access.workspace.id, action=action, actor=actor, target=target)
    events, next_cursor = await page_of(session, query, 50, cursor, "occurred_at")
    return render(
        request,
        "audit.html",
        signed,
        access=access,
        events=events,
        next_cursor=next_cursor,
        actions=await workspaces.audit_actions(session, access.workspace.id),
        filters={"action": action, "actor": actor, "target": target},
    )
