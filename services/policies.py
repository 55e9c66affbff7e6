"""An application's backup policy: its values after a change, the rules they must pass, the
Temporal Schedule that carries it out, and what its retention rule keeps.

The row and its schedule change in one request: the caller commits only after Temporal took
the schedule, so a policy is never saved without the schedule that runs it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, ScheduleOverlapPolicy

from core.retention_rule import COUNTS, FIELDS, Backup, Rule, Verdict, decide
from core.settings import Settings
from core.states import FINISHED, RunStatus, StorageStatus
from db import audit
from db.models import Application, BackupExecution, BackupPolicy, BackupStorage
from schedules import archiver
from schedules import backup_policy as sync
from schedules import drill_policy as drill_sync
from schedules.cron import CronError, check, check_timezone
from services import offsite_targets, workspaces
from services.errors import Conflict, Invalid, NotFound, TemporalUnavailable

KEEPS_NOTHING: Final = (
    "the rule keeps nothing: set retention_days or at least one of keep_last, keep_daily,"
    " keep_weekly, keep_monthly, keep_yearly above 0"
)
FieldError = dict[str, Any]
"""A refused field as pydantic reports one: ``loc`` (in the body), ``msg``, ``type``."""


def policy_rule(policy: BackupPolicy) -> Rule:
    """The retention rule the policy's row holds."""
    return Rule(**{f: getattr(policy, f) for f in FIELDS})


async def retention_plan(
    session: AsyncSession, policy: BackupPolicy, rule: Rule, zone: ZoneInfo, now: datetime
) -> list[Verdict]:
    """Keep or prune for each ended backup of the policy's application in its storage.

    The application's whole history in this storage counts, also backups made under an
    earlier policy.
    """
    rows = await session.scalars(
        select(BackupExecution).where(
            BackupExecution.application_id == policy.application_id,
            BackupExecution.storage_id == policy.storage_id,
            BackupExecution.status.in_(FINISHED),
        )
    )
    backups = [Backup(str(r.id), r.started_at, RunStatus(r.status), r.protected) for r in rows]
    return decide(backups, rule, now, zone)


async def get(session: AsyncSession, application_id: uuid.UUID) -> BackupPolicy:
    policy = await session.scalar(
        select(BackupPolicy).where(BackupPolicy.application_id == application_id)
    )
    if policy is None:
        raise NotFound("backup policy of application", application_id)
    return policy


def _effective(
    sent: Mapping[str, Any],
    given: Mapping[str, Any],
    policy: BackupPolicy | None,
    application: Application,
) -> dict[str, Any]:
    """The policy's values after this request: sent fields, else stored ones, else defaults.

    An update keeps what it was not told to change. On create, ``include_database`` and
    ``include_volumes`` follow what the application has.
    """
    sent = {k: v for k, v in sent.items() if not (k.startswith("include_") and v is None)}
    if policy is not None:
        stored = {k: getattr(policy, k) for k in given}
        return {**stored, **sent}
    platform = application.platform_settings
    defaults = {
        **given,
        "include_database": _has_database(platform),
        "include_volumes": bool(platform.get("volumes")),
        # the seed's 30 days, unless the request brings a GFS rule of its own
        "retention_days": None if any(given[c] for c in COUNTS) else 30,
    }
    return {**defaults, **sent}


def _has_database(platform: Mapping[str, Any]) -> bool:
    """A main database, or named ones (``include_database`` covers them all)."""
    return bool(platform.get("database") or platform.get("databases"))


def _check_parts(
    given: Mapping[str, Any], values: Mapping[str, Any], application: Application
) -> list[FieldError]:
    """What the policy includes must exist in the application, or every backup would fail."""
    platform = application.platform_settings
    errors: list[FieldError] = []
    if given["include_database"] and not _has_database(platform):
        errors.append(
            {
                "loc": ("include_database",),
                "type": "missing_database",
                "msg": "the application has no database; register one or set include_database"
                " false",
            }
        )
    if given["include_volumes"] and not platform.get("volumes"):
        errors.append(
            {
                "loc": ("include_volumes",),
                "type": "missing_volumes",
                "msg": "the application has no volumes; register one or set include_volumes false",
            }
        )
    if not errors and not (values["include_database"] or values["include_volumes"]):
        if not (_has_database(platform) or platform.get("volumes")):
            message = (
                "the application has neither a database nor volumes registered: there is"
                " nothing to back up; register one first"
            )
        else:
            message = (
                "include_volumes and include_database are both false: a backup must include"
                " the database, the volumes or both"
            )
        errors.append({"loc": (), "msg": message, "type": "nothing_to_back_up"})
    return errors + _check_archiving(values, application)


def _check_archiving(values: Mapping[str, Any], application: Application) -> list[FieldError]:
    """The archiver streams a PostgreSQL database the worker reaches itself (docs/pitr.md)."""
    if not values["continuous_archiving"]:
        return []
    if application.platform_kind != "local":
        message = f"continuous archiving is not available for {application.platform_kind} yet"
    elif not application.platform_settings.get("database"):
        message = "continuous archiving needs a database; the application has none registered"
    else:
        return []
    return [{"loc": ("continuous_archiving",), "msg": message, "type": "archiving_unsupported"}]


def _check_rule_and_schedule(values: Mapping[str, Any], settings: Settings) -> list[FieldError]:
    """The rule must keep something; the schedule must parse in its zone and not run too often."""
    errors: list[FieldError] = []
    if Rule(**{f: values[f] for f in FIELDS}).keeps_nothing:
        errors.append({"loc": ("retention_days",), "msg": KEEPS_NOTHING, "type": "keeps_nothing"})
    try:
        zone = check_timezone(values["timezone"])
    except CronError as exc:
        errors.append({"loc": ("timezone",), "msg": str(exc), "type": "invalid_timezone"})
        return errors
    try:
        check(values["schedule"], zone, timedelta(minutes=settings.policy_min_interval_minutes))
    except CronError as exc:
        errors.append({"loc": ("schedule",), "msg": str(exc), "type": "invalid_schedule"})
    return errors


async def _active_storage(
    session: AsyncSession, storage_id: uuid.UUID, application: Application
) -> None:
    storage = await session.get(BackupStorage, storage_id)
    if storage is None or storage.workspace_id != application.workspace_id:
        raise NotFound("backup storage", storage_id)
    if storage.status != StorageStatus.ACTIVE:
        raise Conflict(
            f"backup storage {storage.name} is {storage.status}"
            f"{': ' + storage.status_message if storage.status_message else ''};"
            " a policy needs an active storage"
        )


def _unavailable(exc: Exception) -> TemporalUnavailable:
    return TemporalUnavailable(
        "the schedule could not be changed in Temporal",
        exc,
        "the policy was left as it was, retry later",
    )


async def put(
    session: AsyncSession,
    settings: Settings,
    temporal: Client,
    actor: audit.Actor,
    application: Application,
    sent: Mapping[str, Any],
    given: Mapping[str, Any],
) -> tuple[BackupPolicy, bool]:
    """Creates or updates the policy and its schedule; True when it was created.

    ``given`` holds every field of the request with its default, ``sent`` the fields the
    caller set: on update a field not sent keeps its stored value.
    """
    await workspaces.hold_backup_plan(session, application.workspace_id)  # before the policy row
    policy = await session.scalar(
        select(BackupPolicy).where(BackupPolicy.application_id == application.id).with_for_update()
    )
    values = _effective(sent, given, policy, application)
    errors = _check_parts(given, values, application) + _check_rule_and_schedule(values, settings)
    if errors:
        raise Invalid(errors)
    await _active_storage(session, values["storage_id"], application)
    if values.get("offsite_target_id") is not None:
        await offsite_targets.get(session, application.workspace_id, values["offsite_target_id"])
    created = policy is None
    if policy is None:
        policy = BackupPolicy(id=uuid.uuid4(), application_id=application.id)
        session.add(policy)
    before = {k: getattr(policy, k) for k in given} if not created else {}
    for key, value in values.items():
        setattr(policy, key, value)
    changes = {k: v for k, v in values.items() if created or before.get(k) != v}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    note = f"paused by {actor.label} at {now}"
    audit.record(
        session,
        actor,
        "policy.create" if created else "policy.update",
        "backup_policy",
        policy.id,
        workspace_id=application.workspace_id,
        details={k: str(v) if isinstance(v, uuid.UUID) else v for k, v in changes.items()},
    )
    await session.flush()
    try:
        await sync.upsert(temporal, policy, application, settings, note)
        await drill_sync.follow(temporal, session, policy, application, settings)  # time zone
        if policy.continuous_archiving:
            await archiver.start(temporal, application.id)
        elif before.get("continuous_archiving"):
            await archiver.stop(temporal, application.id)
    except sync.ScheduleRejected as exc:
        raise Invalid(
            [
                {
                    "loc": ("schedule",),
                    "msg": f"Temporal cannot run this schedule: {exc}",
                    "type": "invalid_schedule",
                }
            ]
        ) from exc
    except Exception as exc:
        raise _unavailable(exc) from exc
    return policy, created


async def delete(
    session: AsyncSession,
    temporal: Client,
    actor: audit.Actor,
    policy: BackupPolicy,
    application: Application,
) -> None:
    """Deletes the policy, its schedule, its drills' schedule (its drills went with it) and
    its archiver."""
    audit.record(
        session,
        actor,
        "policy.delete",
        "backup_policy",
        policy.id,
        workspace_id=application.workspace_id,
        details={"schedule": policy.schedule},
    )
    await session.delete(policy)
    await session.flush()
    try:
        await sync.remove(temporal, application.id)
        await drill_sync.remove(temporal, application.id)
        if policy.continuous_archiving:
            await archiver.stop(temporal, application.id)
    except Exception as exc:
        raise _unavailable(exc) from exc


async def trigger(
    session: AsyncSession,
    temporal: Client,
    actor: audit.Actor,
    policy: BackupPolicy,
    application: Application,
) -> str:
    """Runs the policy's schedule now, unless its previous run is still going; its id."""
    sid = sync.schedule_id(application.id)
    try:
        await temporal.get_schedule_handle(sid).trigger(overlap=ScheduleOverlapPolicy.SKIP)
    except Exception as exc:
        raise _unavailable(exc) from exc
    audit.record(
        session,
        actor,
        "policy.trigger",
        "backup_policy",
        policy.id,
        workspace_id=application.workspace_id,
        details={"schedule_id": sid},
    )
    return sid
