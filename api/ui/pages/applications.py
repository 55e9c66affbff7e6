"""An application's page (protection, policy form, history, restores), the policy's schedule
preview, its retention page, *Run now* and the backups chart."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Query, Request, Response
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
from api.pagination import page_of
from api.problems import Problem, refusals
from api.schemas.policies import PolicyIn
from api.ui import charts, views
from api.ui.pages.shared import (
    REFUSALS,
    Reader,
    Writer,
    app_access,
    checked,
    from_form,
    go,
    page_router,
    refused,
    render,
    text,
)
from api.ui.sessions import SignedIn
from core.retention_rule import COUNTS
from services import (
    backups,
    offsite_targets,
    overdue,
    policies,
    recovery_window,
    restores,
    storages,
)

router = page_router()
HISTORY_PAGE = 25
CHART_POINTS = 200


async def _application_page(
    request: Request,
    signed: SignedIn,
    session: SessionDep,
    access: ApplicationAccess,
    cursor: str | None = None,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    settings = get_settings(request)
    temporal = await get_temporal_if_up(request)
    application = access.application
    standing = await overdue.standings(session, settings, [application.id])
    state = (await views.protections(session, [application.id], standing, datetime.now(UTC)))[
        application.id
    ]
    policy = None
    if state.policy is not None and temporal is not None:
        policy = await presenters.policy(state.policy, temporal)
    listed, _ = await page_of(session, storages.of_workspace(application.workspace_id), 200, None)
    history = await presenters.backup_page(
        session, temporal, settings, application, HISTORY_PAGE, cursor
    )
    recent, _ = await page_of(session, restores.of_application(application), 10, None)
    shown = state.policy
    preview = views.saved(shown.schedule, shown.timezone) if shown else None
    window, window_error = None, None
    if shown is not None and shown.continuous_archiving:
        try:
            with refusals():
                window = await recovery_window.read(session, settings, temporal, application)
        except Problem as exc:
            window_error = exc.detail
    return render(
        request,
        "application.html",
        signed,
        status_code,
        access=access,
        app=presenters.application(
            application,
            standing.get(application.id),
            (await offsite_targets.offsite_lags(session, settings, [application.id])).get(
                application.id
            ),
        ),
        state=state,
        policy=policy,
        storages=[presenters.storage(s) for s in listed],
        history=history,
        restores=[presenters.restore(r, settings) for r in recent],
        preview=preview,
        timezone=shown.timezone if shown else None,
        temporal_up=temporal is not None,
        window=window,
        window_error=window_error,
        **extra,
    )


@router.get("/applications/{app_id}", response_class=HTMLResponse)
async def application_page(
    request: Request,
    app_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
    cursor: str | None = None,
) -> Response:
    access = await app_access(session, signed, app_id)
    return await _application_page(request, signed, session, access, cursor)


@router.get("/applications/{app_id}/policy/preview", response_class=HTMLResponse)
async def policy_preview(
    request: Request,
    app_id: uuid.UUID,
    signed: Reader,
    session: SessionDep,
    schedule: Annotated[str, Query(max_length=100)] = "",
    timezone: Annotated[str, Query(max_length=64)] = "UTC",
) -> Response:
    """The schedule as typed: in words and its next 5 runs, or why it is refused."""
    await app_access(session, signed, app_id)
    minimum = timedelta(minutes=get_settings(request).policy_min_interval_minutes)
    return render(
        request,
        "_preview.html",
        signed,
        preview=views.preview(schedule, timezone, minimum),
        timezone=timezone,
    )


@router.post("/applications/{app_id}/policy", response_class=HTMLResponse)
async def save_policy(
    request: Request, app_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    access = await dedicated_app_writer(await app_access(session, signed, app_id))
    form = await request.form()
    try:
        body = from_form(
            PolicyIn,
            {
                "storage_id": text(form, "storage_id"),
                "schedule": text(form, "schedule"),
                "timezone": text(form, "timezone") or "UTC",
                "retention_days": text(form, "retention_days") or None,  # empty: no age rule
                **{count: text(form, count) or 0 for count in COUNTS},
                "backup_type": text(form, "backup_type"),
                "enabled": not checked(form, "paused"),
                "include_database": checked(form, "include_database"),
                "include_volumes": checked(form, "include_volumes"),
            },
        )
        temporal = await get_temporal(request)
        with refusals():
            await policies.put(
                session,
                get_settings(request),
                temporal,
                access.workspace.principal.actor,
                access.application,
                body.model_dump(exclude_unset=True),
                body.model_dump(),
            )
        await session.commit()
    except REFUSALS as exc:
        signed, status, words = await refused(request, session, exc)
        access = await app_access(session, signed, app_id)
        return await _application_page(
            request, signed, session, access, None, status, policy_error=words, form=form
        )
    return go(request, f"/ui/applications/{app_id}")


@router.get("/applications/{app_id}/retention", response_class=HTMLResponse)
async def retention_page(
    request: Request, app_id: uuid.UUID, signed: Reader, session: SessionDep
) -> Response:
    """Which backups the saved rule keeps and which the next prune removes, and why."""
    access = await app_access(session, signed, app_id)
    with refusals():
        policy = await policies.get(session, access.application.id)
    preview = await presenters.retention_preview(session, policy, None, None)
    return render(request, "retention.html", signed, access=access, preview=preview)


@router.post("/applications/{app_id}/run", response_class=HTMLResponse)
async def run_now(
    request: Request, app_id: uuid.UUID, signed: Writer, session: SessionDep
) -> Response:
    """'Run now': the API's manual trigger; then the backup's own page follows its progress."""
    access = await dedicated_app_writer(await app_access(session, signed, app_id))
    temporal = await get_temporal(request)
    with refusals(starting="backup"):
        backup = await backups.request_backup(
            session, temporal, access.workspace.principal.actor, access.application, None
        )
    await session.commit()
    return go(request, f"/ui/applications/{app_id}/backups/{backup.id}")


@router.get("/applications/{app_id}/chart.svg")
async def backups_chart(app_id: uuid.UUID, signed: Reader, session: SessionDep) -> Response:
    """Size and duration of the application's last successful backups."""
    access = await app_access(session, signed, app_id)
    points = await backups.recent_successes(session, access.application, CHART_POINTS)
    return charts.backups(
        [(started, size, views.run_seconds(started, done)) for started, done, size in points]
    )
