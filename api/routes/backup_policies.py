"""An application's backup policy, which is one Temporal Schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api import presenters
from api.deps import DedicatedAppReader, DedicatedAppWriter, SessionDep, SettingsDep, TemporalDep
from api.problems import refusals
from api.schemas.policies import PolicyIn, PolicyOut, RetentionPreviewOut, TriggerOut
from core.retention_rule import LIMITS, Rule
from db.models import BackupPolicy
from services import overdue, policies

router = APIRouter(prefix="/api/v1/applications/{app_id}/backup-policy", tags=["backup policies"])


async def _policy(session: SessionDep, access: DedicatedAppReader) -> BackupPolicy:
    with refusals():
        return await policies.get(session, access.application.id)


@router.get("", response_model=PolicyOut)
async def get_policy(
    access: DedicatedAppReader, session: SessionDep, settings: SettingsDep, temporal: TemporalDep
) -> dict[str, Any]:
    policy = await _policy(session, access)
    standing = await overdue.standing_of(session, settings, policy.application_id)
    return await presenters.policy(policy, temporal, standing)


def _count(name: str) -> Any:
    return Query(ge=0, le=LIMITS[name], description=f"proposed {name}")


@router.get("/retention-preview", response_model=RetentionPreviewOut)
async def retention_preview(
    access: DedicatedAppReader,
    session: SessionDep,
    retention_days: Annotated[
        int | None, Query(ge=1, le=LIMITS["retention_days"], description="proposed retention_days")
    ] = None,
    keep_last: Annotated[int | None, _count("keep_last")] = None,
    keep_daily: Annotated[int | None, _count("keep_daily")] = None,
    keep_weekly: Annotated[int | None, _count("keep_weekly")] = None,
    keep_monthly: Annotated[int | None, _count("keep_monthly")] = None,
    keep_yearly: Annotated[int | None, _count("keep_yearly")] = None,
    timezone: Annotated[
        str | None, Query(min_length=1, max_length=64, description="proposed time zone")
    ] = None,
) -> dict[str, Any]:
    """Which backups the policy's rule keeps and which the next prune removes, and why.

    With any rule parameter the preview shows that proposed rule instead, nothing saved: a
    proposed rule is whole (a count left out is 0, retention_days left out is no age rule).
    """
    policy = await _policy(session, access)
    counts = (keep_last, keep_daily, keep_weekly, keep_monthly, keep_yearly)
    proposed = retention_days is not None or any(c is not None for c in counts)
    rule = Rule(retention_days, *(c or 0 for c in counts)) if proposed else None
    return await presenters.retention_preview(session, policy, rule, timezone)


@router.post("", response_model=PolicyOut, responses={201: {"model": PolicyOut}})
async def put_policy(
    body: PolicyIn,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    response: Response,
) -> dict[str, Any]:
    given = body.model_dump()
    sent = {k: v for k, v in given.items() if k in body.model_fields_set}
    with refusals():
        policy, created = await policies.put(
            session,
            settings,
            temporal,
            access.workspace.principal.actor,
            access.application,
            sent,
            given,
        )
    await session.commit()
    await session.refresh(policy)
    response.status_code = 201 if created else 200
    standing = await overdue.standing_of(session, settings, policy.application_id)
    return await presenters.policy(policy, temporal, standing)


@router.delete("", status_code=204)
async def delete_policy(
    access: DedicatedAppWriter, session: SessionDep, temporal: TemporalDep
) -> Response:
    policy = await _policy(session, access)
    with refusals():
        await policies.delete(
            session, temporal, access.workspace.principal.actor, policy, access.application
        )
    await session.commit()
    return Response(status_code=204)


@router.post("/trigger", status_code=202, response_model=TriggerOut)
async def trigger_policy(
    access: DedicatedAppWriter, session: SessionDep, temporal: TemporalDep
) -> dict[str, Any]:
    policy = await _policy(session, access)
    with refusals():
        sid = await policies.trigger(
            session, temporal, access.workspace.principal.actor, policy, access.application
        )
    await session.commit()
    return {"schedule_id": sid, "triggered_at": datetime.now(UTC), "overlap": "skip"}
