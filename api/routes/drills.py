"""Restore drills of an application: the drill policy (schedule, checks), runs, history."""

from __future__ import annotations

import logging
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Response
from sqlalchemy import select
from temporalio.client import Client

from api.deps import (
    DedicatedAppReader,
    DedicatedAppWriter,
    IdempotencyKey,
    OptionalTemporalDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
)
from api.pagination import Cursor, Limit, Page, fetch_page
from api.problems import not_found, refusals
from api.runs import settled_view, with_timeline
from api.schemas.drills import (
    DrillDetail,
    DrillOut,
    DrillPolicyIn,
    DrillPolicyOut,
    DrillPolicyRow,
    DrillStart,
)
from api.temporal_links import run_url
from core.settings import Settings
from db.models import BackupPolicy, RestoreDrill, RestoreDrillPolicy
from schedules import drill_policy as sync
from schedules.backup_policy import state_of
from services import drills as service
from services import overdue
from services.drills import DrillPolicyChange

router = APIRouter(prefix="/api/v1/applications/{app_id}", tags=["restore drills"])
log = logging.getLogger(__name__)


async def _present_policy(
    drills: RestoreDrillPolicy,
    policy: BackupPolicy,
    temporal: Client | None,
    standing: overdue.Standing | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        **DrillPolicyRow.model_validate(drills, from_attributes=True).model_dump(),
        "application_id": policy.application_id,
        "timezone": policy.timezone,
        "schedule_id": sync.schedule_id(policy.application_id),
    }
    if standing is not None and standing.drill is not None:
        body |= {"overdue": standing.drill_overdue, "overdue_since": standing.drill.overdue_since}
    if temporal is None:
        body["schedule_error"] = "Temporal could not be reached"
        return body
    try:
        body["schedule_state"] = await state_of(
            temporal, sync.schedule_id(policy.application_id), ZoneInfo(policy.timezone)
        )
    except Exception as exc:
        log.warning("drill schedule of %s unreadable: %s", policy.application_id, exc)
        body["schedule_error"] = f"Temporal could not be reached ({type(exc).__name__})"
    return body


@router.get("/drill-policy", response_model=DrillPolicyOut)
async def get_drill_policy(
    access: DedicatedAppReader,
    session: SessionDep,
    settings: SettingsDep,
    temporal: OptionalTemporalDep,
) -> dict[str, Any]:
    policy = await service.backup_policy_of(session, access.application.id)
    drills = await service.drill_policy_of(session, policy)
    if policy is None or drills is None:
        raise not_found("drill policy of application", access.application.id)
    standing = await overdue.standing_of(session, settings, policy.application_id)
    return await _present_policy(drills, policy, temporal, standing)


@router.put(
    "/drill-policy", response_model=DrillPolicyOut, responses={201: {"model": DrillPolicyOut}}
)
async def put_drill_policy(
    body: DrillPolicyIn,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    response: Response,
) -> dict[str, Any]:
    change = DrillPolicyChange(
        body.schedule,
        body.enabled,
        [check.model_dump() for check in body.checks],
        body.target_time,
        body.source,
    )
    with refusals():
        drills, policy, created = await service.put_drill_policy(
            session,
            temporal,
            settings,
            access.application,
            access.workspace.principal.actor,
            change,
        )
    await session.refresh(drills)
    response.status_code = 201 if created else 200
    standing = await overdue.standing_of(session, settings, policy.application_id)
    return await _present_policy(drills, policy, temporal, standing)


@router.delete("/drill-policy", status_code=204)
async def delete_drill_policy(
    access: DedicatedAppWriter, session: SessionDep, temporal: TemporalDep
) -> Response:
    with refusals():
        deleted = await service.delete_drill_policy(
            session, temporal, access.application, access.workspace.principal.actor
        )
    if not deleted:
        raise not_found("drill policy of application", access.application.id)
    return Response(status_code=204)


def present(drill: RestoreDrill, settings: Settings) -> dict[str, Any]:
    shown = DrillOut.model_validate(drill, from_attributes=True).model_dump()
    return {**shown, "temporal_ui_url": run_url(settings, drill.workflow_id)}


@router.post("/drills", status_code=202, response_model=DrillOut)
async def start_drill(
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    body: DrillStart | None = None,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Runs a drill of the newest successful backup (or of ``backup_id``) now, read where
    ``source`` says, or of a moment of the WAL archive (``target_time``)."""
    with refusals(starting="drill"):
        drill = await service.request_drill(
            session,
            temporal,
            settings,
            access.application,
            access.workspace.principal.actor,
            idempotency_key,
            body.source if body is not None else "primary",
            body.backup_id if body is not None else None,
            body.target() if body is not None else None,
        )
    await session.refresh(drill)
    return present(drill, settings)


@router.get("/drills", response_model=Page[DrillOut])
async def list_drills(
    access: DedicatedAppReader,
    session: SessionDep,
    settings: SettingsDep,
    temporal: OptionalTemporalDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, object]:
    items, next_cursor = await fetch_page(
        session,
        select(RestoreDrill).where(RestoreDrill.application_id == access.application.id),
        RestoreDrill.created_at,
        RestoreDrill.id,
        limit,
        cursor,
    )
    for drill in items:
        await settled_view(session, temporal, drill)
    return {"items": [present(d, settings) for d in items], "next_cursor": next_cursor}


@router.get("/drills/{drill_id}", response_model=DrillDetail)
async def get_drill(
    drill_id: uuid.UUID,
    access: DedicatedAppReader,
    session: SessionDep,
    settings: SettingsDep,
    temporal: OptionalTemporalDep,
) -> dict[str, Any]:
    drill = await session.get(RestoreDrill, drill_id)
    if drill is None or drill.application_id != access.application.id:
        raise not_found("drill", drill_id)
    await settled_view(session, temporal, drill, timeline_follows=True)
    return await with_timeline(present(drill, settings), temporal, drill)
