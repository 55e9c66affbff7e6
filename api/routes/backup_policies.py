"""An application's backup policy, which is one Temporal Schedule."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy import select
from temporalio.client import Client, ScheduleOverlapPolicy

from activities.retention import plan, policy_rule
from api.deps import DedicatedAppReader, DedicatedAppWriter, SessionDep, SettingsDep, TemporalDep
from api.problems import Problem, conflict, invalid, not_found
from api.schemas.policies import PolicyIn, PolicyOut, RetentionPreviewOut, TriggerOut
from core.retention_rule import COUNTS, FIELDS, LIMITS, Rule
from core.temporal import LazyClient
from db import audit
from db.models import Application, BackupPolicy, BackupStorage
from schedules import backup_policy as sync
from schedules import drill_policy as drill_sync
from schedules.cron import CronError, check, check_timezone

router = APIRouter(prefix="/api/v1/applications/{app_id}/backup-policy", tags=["backup policies"])
log = logging.getLogger(__name__)


def _invalid(field: str, message: str, code: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": code}])


def _effective(
    body: PolicyIn, policy: BackupPolicy | None, application: Application
) -> dict[str, Any]:
    """The policy's values after this request: sent fields, else stored ones, else defaults.

    An update keeps what it was not told to change. On create, ``include_database`` and
    ``include_volumes`` follow what the application has.
    """
    sent = {k: v for k, v in body.model_dump().items() if k in body.model_fields_set}
    sent = {k: v for k, v in sent.items() if not (k.startswith("include_") and v is None)}
    if policy is not None:
        stored = {k: getattr(policy, k) for k in PolicyIn.model_fields}
        return {**stored, **sent}
    platform = application.platform_settings
    defaults = {
        **body.model_dump(),
        "include_database": bool(platform.get("database")),
        "include_volumes": bool(platform.get("volumes")),
        # the seed's 30 days, unless the request brings a GFS rule of its own
        "retention_days": None if any(getattr(body, c) for c in COUNTS) else 30,
    }
    return {**defaults, **sent}


KEEPS_NOTHING = (
    "the rule keeps nothing: set retention_days or at least one of keep_last, keep_daily,"
    " keep_weekly, keep_monthly, keep_yearly above 0"
)


def _check_parts(
    body: PolicyIn, values: dict[str, Any], application: Application
) -> list[dict[str, Any]]:
    """What the policy includes must exist in the application, or every backup would fail."""
    platform = application.platform_settings
    errors: list[dict[str, Any]] = []
    if body.include_database and not platform.get("database"):
        errors.append({
            "loc": ("body", "include_database"), "type": "missing_database",
            "msg": "the application has no database; register one or set include_database false",
        })  # fmt: skip
    if body.include_volumes and not platform.get("volumes"):
        errors.append({
            "loc": ("body", "include_volumes"), "type": "missing_volumes",
            "msg": "the application has no volumes; register one or set include_volumes false",
        })  # fmt: skip
    if not errors and not (values["include_database"] or values["include_volumes"]):
        if not (platform.get("database") or platform.get("volumes")):
            message = (
                "the application has neither a database nor volumes registered: there is"
                " nothing to back up; register one first"
            )
        else:
            message = (
                "include_volumes and include_database are both false: a backup must include"
                " the database, the volumes or both"
            )
        errors.append({"loc": ("body",), "msg": message, "type": "nothing_to_back_up"})
    return errors


def _temporal_down(exc: Exception) -> Problem:
    return Problem(
        503,
        "temporal-unavailable",
        "Temporal unavailable",
        f"the schedule could not be changed in Temporal ({type(exc).__name__}); the policy was"
        " left as it was, retry later",
    )


async def _present(policy: BackupPolicy, temporal: LazyClient | Client | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        **{c.key: getattr(policy, c.key) for c in BackupPolicy.__mapper__.column_attrs},
        "schedule_id": sync.schedule_id(policy.application_id),
    }
    if temporal is None:
        return body
    try:
        client = temporal if isinstance(temporal, Client) else await temporal.get()
        body["schedule_state"] = await sync.live_state(
            client, policy.application_id, ZoneInfo(policy.timezone)
        )
    except Exception as exc:
        log.warning("schedule state of %s unreadable: %s", policy.application_id, exc)
        body["schedule_error"] = f"Temporal could not be reached ({type(exc).__name__})"
    return body


async def _policy(session: SessionDep, access: DedicatedAppReader) -> BackupPolicy:
    policy = await session.scalar(
        select(BackupPolicy).where(BackupPolicy.application_id == access.application.id)
    )
    if policy is None:
        raise not_found("backup policy of application", access.application.id)
    return policy


@router.get("", response_model=PolicyOut)
async def get_policy(
    access: DedicatedAppReader, session: SessionDep, temporal: TemporalDep
) -> dict[str, Any]:
    return await _present(await _policy(session, access), temporal)


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
    rule = Rule(retention_days, *(c or 0 for c in counts)) if proposed else policy_rule(policy)
    if rule.keeps_nothing:
        raise invalid("query.retention_days", KEEPS_NOTHING, "keeps_nothing")
    try:
        zone = check_timezone(timezone or policy.timezone)
    except CronError as exc:
        raise invalid("query.timezone", str(exc), "invalid_timezone") from exc
    now = datetime.now(UTC)
    verdicts = await plan(session, policy, rule, zone, now)
    items = [
        {
            "backup_id": v.backup.id, "started_at": v.backup.started_at, "status": v.backup.status,
            "protected": v.backup.protected, "reasons": list(v.reasons),
        }
        for v in verdicts
    ]  # fmt: skip
    return {
        "rule": {**rule.describe(), "timezone": str(zone)},
        "proposed": proposed or timezone is not None,
        "evaluated_at": now,
        "keep": [i for i, v in zip(items, verdicts, strict=True) if v.keep],
        "prune": [i for i, v in zip(items, verdicts, strict=True) if not v.keep],
    }


@router.post("", response_model=PolicyOut, responses={201: {"model": PolicyOut}})
async def put_policy(
    body: PolicyIn,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    response: Response,
) -> dict[str, Any]:
    application = access.application
    policy = await session.scalar(
        select(BackupPolicy).where(BackupPolicy.application_id == application.id).with_for_update()
    )
    values = _effective(body, policy, application)
    errors = _check_parts(body, values, application)
    if Rule(**{f: values[f] for f in FIELDS}).keeps_nothing:
        errors.append(
            {"loc": ("body", "retention_days"), "msg": KEEPS_NOTHING, "type": "keeps_nothing"}
        )
    try:
        zone = check_timezone(values["timezone"])
    except CronError as exc:
        errors.append({"loc": ("body", "timezone"), "msg": str(exc), "type": "invalid_timezone"})
    else:
        try:
            check(values["schedule"], zone, timedelta(minutes=settings.policy_min_interval_minutes))
        except CronError as exc:
            errors.append(
                {"loc": ("body", "schedule"), "msg": str(exc), "type": "invalid_schedule"}
            )
    if errors:
        raise RequestValidationError(errors)
    storage = await session.get(BackupStorage, values["storage_id"])
    if storage is None or storage.workspace_id != application.workspace_id:
        raise not_found("backup storage", values["storage_id"])
    if storage.status != "active":
        raise conflict(
            f"backup storage {storage.name} is {storage.status}"
            f"{': ' + storage.status_message if storage.status_message else ''};"
            " a policy needs an active storage"
        )
    created = policy is None
    if policy is None:
        policy = BackupPolicy(id=uuid.uuid4(), application_id=application.id)
        session.add(policy)
    before = {k: getattr(policy, k) for k in PolicyIn.model_fields} if not created else {}
    for key, value in values.items():
        setattr(policy, key, value)
    changes = {k: v for k, v in values.items() if created or before.get(k) != v}
    actor = access.workspace.principal.actor
    now = datetime.now(UTC).isoformat(timespec="seconds")
    note = f"paused by {actor.label} at {now}"
    audit.record(
        session, actor, "policy.create" if created else "policy.update", "backup_policy",
        policy.id, workspace_id=application.workspace_id,
        details={k: str(v) if isinstance(v, uuid.UUID) else v for k, v in changes.items()},
    )  # fmt: skip
    await session.flush()
    try:
        await sync.upsert(temporal, policy, application, settings, note)
        await drill_sync.follow(temporal, session, policy, application, settings)  # time zone
    except sync.ScheduleRejected as exc:
        raise _invalid(
            "schedule", f"Temporal cannot run this schedule: {exc}", "invalid_schedule"
        ) from exc
    except Exception as exc:
        raise _temporal_down(exc) from exc
    await session.commit()
    await session.refresh(policy)
    response.status_code = 201 if created else 200
    return await _present(policy, temporal)


@router.delete("", status_code=204)
async def delete_policy(
    access: DedicatedAppWriter, session: SessionDep, temporal: TemporalDep
) -> Response:
    policy = await _policy(session, access)
    audit.record(
        session, access.workspace.principal.actor, "policy.delete", "backup_policy", policy.id,
        workspace_id=access.application.workspace_id, details={"schedule": policy.schedule},
    )  # fmt: skip
    await session.delete(policy)
    await session.flush()
    try:
        await sync.remove(temporal, access.application.id)
        await drill_sync.remove(temporal, access.application.id)  # its drills went with it
    except Exception as exc:
        raise _temporal_down(exc) from exc
    await session.commit()
    return Response(status_code=204)


@router.post("/trigger", status_code=202, response_model=TriggerOut)
async def trigger_policy(
    access: DedicatedAppWriter, session: SessionDep, temporal: TemporalDep
) -> dict[str, Any]:
    policy = await _policy(session, access)
    sid = sync.schedule_id(access.application.id)
    try:
        await temporal.get_schedule_handle(sid).trigger(overlap=ScheduleOverlapPolicy.SKIP)
    except Exception as exc:
        raise _temporal_down(exc) from exc
    audit.record(
        session, access.workspace.principal.actor, "policy.trigger", "backup_policy", policy.id,
        workspace_id=access.application.workspace_id, details={"schedule_id": sid},
    )  # fmt: skip
    await session.commit()
    return {"schedule_id": sid, "triggered_at": datetime.now(UTC), "overlap": "skip"}
