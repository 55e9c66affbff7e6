"""Restore drills of an application: the drill policy (schedule, checks), runs, history."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Response
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.deps import (
    ApplicationAccess,
    DedicatedAppReader,
    DedicatedAppWriter,
    OptionalTemporalDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
)
from api.pagination import Cursor, Limit, Page, fetch_page
from api.problems import Problem, conflict, invalid, not_found
from api.routes.backups import IdempotencyKey
from api.runs import settled_view, start_run, with_timeline
from api.schemas.drills import DrillDetail, DrillOut, DrillPolicyIn, DrillPolicyOut
from api.temporal_links import workflow_url
from contracts.drill import DrillRequest
from core.run_outcome import is_live
from core.settings import Settings
from db import audit
from db.models import BackupPolicy, RestoreDrill, RestoreDrillPolicy
from db.runs import RUNNING_DRILL, newest_success
from schedules import drill_policy as sync
from schedules.backup_policy import ScheduleRejected, state_of
from schedules.cron import CronError, check
from workflows.drill import RestoreDrillWorkflow

router = APIRouter(prefix="/api/v1/applications/{app_id}", tags=["restore drills"])
log = logging.getLogger(__name__)


def _temporal_down(exc: Exception) -> Problem:
    return Problem(
        503, "temporal-unavailable", "Temporal unavailable",
        f"the drill schedule could not be changed in Temporal ({type(exc).__name__}); the drill"
        " policy was left as it was, retry later",
    )  # fmt: skip


async def _backup_policy(session: AsyncSession, access: ApplicationAccess) -> BackupPolicy:
    policy = await session.scalar(
        select(BackupPolicy).where(BackupPolicy.application_id == access.application.id)
    )
    if policy is None:
        raise Problem(
            409, "policy-required", "No backup policy",
            "the application has no backup policy; drills run in its time zone, create one first",
        )  # fmt: skip
    return policy


async def _drill_policy(
    session: AsyncSession, policy: BackupPolicy | None, lock: bool = False
) -> RestoreDrillPolicy | None:
    if policy is None:
        return None
    query = select(RestoreDrillPolicy).where(RestoreDrillPolicy.policy_id == policy.id)
    found: RestoreDrillPolicy | None = await session.scalar(
        query.with_for_update() if lock else query
    )
    return found


async def _present_policy(
    drills: RestoreDrillPolicy, policy: BackupPolicy, temporal: Client | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        **{c.key: getattr(drills, c.key) for c in RestoreDrillPolicy.__mapper__.column_attrs},
        "application_id": policy.application_id,
        "timezone": policy.timezone,
        "schedule_id": sync.schedule_id(policy.application_id),
    }
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
    access: DedicatedAppReader, session: SessionDep, temporal: OptionalTemporalDep
) -> dict[str, Any]:
    policy = await session.scalar(
        select(BackupPolicy).where(BackupPolicy.application_id == access.application.id)
    )
    drills = await _drill_policy(session, policy)
    if policy is None or drills is None:
        raise not_found("drill policy of application", access.application.id)
    return await _present_policy(drills, policy, temporal)


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
    application = access.application
    policy = await _backup_policy(session, access)
    try:
        check(
            body.schedule, ZoneInfo(policy.timezone),
            timedelta(minutes=settings.policy_min_interval_minutes),
        )  # fmt: skip
    except CronError as exc:
        raise invalid("body.schedule", str(exc), "invalid_schedule") from None
    drills = await _drill_policy(session, policy, lock=True)
    created = drills is None
    if drills is None:
        drills = RestoreDrillPolicy(id=uuid.uuid4(), policy_id=policy.id)
        session.add(drills)
    values = {**body.model_dump(), "checks": [c.model_dump() for c in body.checks]}
    before = {k: getattr(drills, k) for k in values} if not created else {}
    for key, value in values.items():
        setattr(drills, key, value)
    actor = access.workspace.principal.actor
    audit.record(
        session, actor, "drill_policy.create" if created else "drill_policy.update",
        "restore_drill_policy", drills.id, workspace_id=application.workspace_id,
        details={k: v for k, v in values.items() if created or before.get(k) != v},
    )  # fmt: skip
    await session.flush()
    note = f"paused by {actor.label} at {datetime.now(UTC).isoformat(timespec='seconds')}"
    try:
        await sync.upsert(temporal, drills, policy, application, settings, note)
    except ScheduleRejected as exc:
        raise invalid(
            "body.schedule", f"Temporal cannot run this schedule: {exc}", "invalid_schedule"
        ) from exc
    except Exception as exc:
        raise _temporal_down(exc) from exc
    await session.commit()
    await session.refresh(drills)
    response.status_code = 201 if created else 200
    return await _present_policy(drills, policy, temporal)


@router.delete("/drill-policy", status_code=204)
async def delete_drill_policy(
    access: DedicatedAppWriter, session: SessionDep, temporal: TemporalDep
) -> Response:
    policy = await session.scalar(
        select(BackupPolicy).where(BackupPolicy.application_id == access.application.id)
    )
    drills = await _drill_policy(session, policy, lock=True)
    if drills is None:
        raise not_found("drill policy of application", access.application.id)
    audit.record(
        session, access.workspace.principal.actor, "drill_policy.delete",
        "restore_drill_policy", drills.id, workspace_id=access.application.workspace_id,
        details={"schedule": drills.schedule},
    )  # fmt: skip
    await session.delete(drills)
    await session.flush()
    try:
        await sync.remove(temporal, access.application.id)
    except Exception as exc:
        raise _temporal_down(exc) from exc
    await session.commit()
    return Response(status_code=204)


def present(drill: RestoreDrill, settings: Settings) -> dict[str, Any]:
    details = drill.details or {}
    return {
        **{c.key: getattr(drill, c.key) for c in RestoreDrill.__mapper__.column_attrs},
        "backup_id": drill.backup_execution_id,
        "cleanup": details.get("cleanup"),
        "notes": details.get("notes"),
        "temporal_ui_url": workflow_url(settings, drill.workflow_id) if drill.workflow_id else None,
    }


async def _refuse_if_drilling(session: AsyncSession, temporal: Client, app_id: uuid.UUID) -> None:
    """One drill of an application at a time; backups and restores are never waited for."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"drill:{app_id}"}
    )
    running = await session.scalars(
        select(RestoreDrill).where(
            RestoreDrill.application_id == app_id, RestoreDrill.status.in_(RUNNING_DRILL)
        )
    )
    for drill in running:
        try:
            live = await is_live(temporal, drill.workflow_id, drill.run_id)
        except Exception as exc:
            raise Problem(
                503, "temporal-unavailable", "Temporal unavailable",
                f"running drills cannot be checked ({type(exc).__name__}); retry later",
            ) from exc  # fmt: skip
        if live:
            raise conflict(
                f"a drill of this application is running ({drill.workflow_id}); wait for it",
                running_workflow_id=drill.workflow_id,
            )


@router.post("/drills", status_code=202, response_model=DrillOut)
async def start_drill(
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Runs a drill of the newest successful backup now."""
    application = access.application
    if idempotency_key:
        earlier = await session.scalar(
            select(RestoreDrill).where(
                RestoreDrill.application_id == application.id,
                RestoreDrill.idempotency_key == idempotency_key,
            )
        )
        if earlier is not None:
            return present(earlier, settings)
    backup = await newest_success(session, application.id)
    if backup is None:
        raise Problem(
            409, "no-backup", "No backup to drill",
            "the application has no successful backup; a drill restores the newest one, so"
            " take a backup first",
        )  # fmt: skip
    await _refuse_if_drilling(session, temporal, application.id)
    drill_id = uuid.uuid4()
    workflow_id = f"drill-{drill_id}"
    drill = RestoreDrill(
        id=drill_id, application_id=application.id, backup_execution_id=backup.id,
        workflow_id=workflow_id, trigger="manual", status="pending",
        idempotency_key=idempotency_key,
    )  # fmt: skip
    session.add(drill)
    audit.record(
        session, access.workspace.principal.actor, "drill.request", "restore_drill", drill_id,
        workspace_id=application.workspace_id,
        details={"backup_id": str(backup.id), "workflow_id": workflow_id},
    )  # fmt: skip
    await session.flush()
    request = DrillRequest(
        str(application.id), str(application.workspace_id), "manual", str(drill_id)
    )
    handle = await start_run(
        temporal, RestoreDrillWorkflow.run, [request], workflow_id, application, "drill"
    )
    drill.run_id = handle.first_execution_run_id
    await session.commit()
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
    await settled_view(session, temporal, drill)
    return await with_timeline(present(drill, settings), temporal, drill.workflow_id, drill.run_id)
