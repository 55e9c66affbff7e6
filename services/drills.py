"""Restore drills: one drill of an application at a time, a manual drill's start, and the
drill policy kept equal to its Temporal schedule.

Drills never wait for backups or restores (they restore into scratch copies), so their lock
is their own (``drill:{application_id}``), not the application's run lock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from contracts.drill import DrillRequest
from core.run_outcome import is_live
from core.settings import Settings
from core.states import LIVE, RunStatus, Trigger
from db import audit
from db.models import (
    Application,
    BackupExecution,
    BackupPolicy,
    RestoreDrill,
    RestoreDrillPolicy,
)
from db.runs import newest_success
from repository.offsite import SOURCE_KEY
from schedules import drill_policy as sync
from schedules.backup_policy import ScheduleRejected
from schedules.cron import CronError, check
from services import backups, offsite_targets, recovery_window
from services.errors import Conflict, Invalid, TemporalUnavailable
from services.recovery_window import Moment
from services.runs import start_run
from workflows.drill import RestoreDrillWorkflow


def _schedule_refused(message: str) -> Invalid:
    return Invalid([{"loc": ("schedule",), "msg": message, "type": "invalid_schedule"}])


def _schedule_unchanged(exc: Exception) -> TemporalUnavailable:
    return TemporalUnavailable(
        "the drill schedule could not be changed in Temporal",
        exc,
        "the drill policy was left as it was, retry later",
    )


@dataclass(frozen=True)
class DrillPolicyChange:
    """A whole drill policy as a PUT gives it (``checks``: name and sql of each)."""

    schedule: str
    enabled: bool
    checks: list[dict[str, str]]
    target_time: str | None = None  # scheduled drills to a moment: latest or random
    source: uuid.UUID | str = "primary"  # scheduled drills read primary, offsite or a target


async def claim_drills(session: AsyncSession, temporal: Client, application_id: uuid.UUID) -> None:
    """Takes the application's drill lock (until the transaction ends) and refuses while one
    of its drills is live; rows whose workflow has closed do not block."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"drill:{application_id}"}
    )
    running = await session.scalars(
        select(RestoreDrill).where(
            RestoreDrill.application_id == application_id, RestoreDrill.status.in_(LIVE)
        )
    )
    for drill in running:
        try:
            live = await is_live(temporal, drill.workflow_id, drill.run_id)
        except Exception as exc:
            raise TemporalUnavailable(
                "running drills cannot be checked", exc, "retry later"
            ) from exc
        if live:
            raise Conflict(
                f"a drill of this application is running ({drill.workflow_id}); wait for it",
                running_workflow_id=drill.workflow_id,
            )


async def request_drill(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    application: Application,
    actor: audit.Actor,
    idempotency_key: str | None,
    source: uuid.UUID | str = "primary",
    backup_id: uuid.UUID | None = None,
    target: Moment | None = None,
) -> RestoreDrill:
    """Starts a drill of the newest successful backup (or of ``backup_id``) now; committed.
    The drill an earlier request with the same idempotency key started is returned instead.
    ``source``: where the backup is read, as for a restore
    (``services.offsite_targets.copy_to_read``: a backup the primary's retention pruned is
    read from its offsite copy only). ``target``: a drill to a moment of the WAL archive
    instead of a backup (``recovery_window.moment_to_drill``).

    Refusals: services.errors' Conflict, NotFound, Invalid and TemporalUnavailable, and
    services.runs' RunNotStarted.
    """
    if idempotency_key:
        earlier = await session.scalar(
            select(RestoreDrill).where(
                RestoreDrill.application_id == application.id,
                RestoreDrill.idempotency_key == idempotency_key,
            )
        )
        if earlier is not None:
            return earlier
    if target is not None:
        moment = await recovery_window.moment_to_drill(session, settings, application.id, target)
        return await _start_drill(
            session, temporal, application, actor, idempotency_key, None, moment
        )
    backup: BackupExecution | None
    if backup_id is not None:
        backup = await backups.backup_of(session, application, backup_id)
        if backup.status not in (RunStatus.SUCCEEDED, RunStatus.PRUNED):
            raise Conflict(
                f"the backup is {backup.status}; only completed backups can be drilled",
                backup_status=backup.status,
            )
    else:
        backup = await newest_success(session, application.id)
    if backup is None:
        raise Conflict(
            "the application has no successful backup; a drill restores the newest one, so"
            " take a backup first",
            kind="no-backup",
            title="No backup to drill",
        )
    offsite = await offsite_targets.copy_to_read(session, application, backup, source)
    return await _start_drill(
        session,
        temporal,
        application,
        actor,
        idempotency_key,
        backup,
        {SOURCE_KEY: str(offsite)} if offsite is not None else {},
    )


async def _start_drill(
    session: AsyncSession,
    temporal: Client,
    application: Application,
    actor: audit.Actor,
    idempotency_key: str | None,
    backup: BackupExecution | None,
    details: dict[str, Any],
) -> RestoreDrill:
    """The drill's row, its audit event and its workflow, under the drill lock; committed.
    ``backup`` None: a drill to the moment in ``details``."""
    await claim_drills(session, temporal, application.id)
    drill_id = uuid.uuid4()
    workflow_id = f"drill-{drill_id}"
    drill = RestoreDrill(
        id=drill_id,
        application_id=application.id,
        backup_execution_id=backup.id if backup else None,
        workflow_id=workflow_id,
        trigger=Trigger.MANUAL,
        status=RunStatus.PENDING,
        idempotency_key=idempotency_key,
        details=details or None,
    )
    session.add(drill)
    audit.record(
        session,
        actor,
        "drill.request",
        "restore_drill",
        drill_id,
        workspace_id=application.workspace_id,
        details={
            **({"backup_id": str(backup.id)} if backup else {}),
            "workflow_id": workflow_id,
            **({SOURCE_KEY: details.get(SOURCE_KEY)} if backup else details),
        },
    )
    await session.flush()
    request = DrillRequest(
        str(application.id), str(application.workspace_id), Trigger.MANUAL, str(drill_id)
    )
    handle = await start_run(
        temporal, RestoreDrillWorkflow.run, [request], workflow_id, application
    )
    drill.run_id = handle.first_execution_run_id
    await session.commit()
    return drill


async def backup_policy_of(session: AsyncSession, application_id: uuid.UUID) -> BackupPolicy | None:
    found: BackupPolicy | None = await session.scalar(
        select(BackupPolicy).where(BackupPolicy.application_id == application_id)
    )
    return found


async def drill_policy_of(
    session: AsyncSession, policy: BackupPolicy | None, lock: bool = False
) -> RestoreDrillPolicy | None:
    """The drill policy under a backup policy; ``lock``: held until the transaction ends."""
    if policy is None:
        return None
    query = select(RestoreDrillPolicy).where(RestoreDrillPolicy.policy_id == policy.id)
    found: RestoreDrillPolicy | None = await session.scalar(
        query.with_for_update() if lock else query
    )
    return found


async def _drill_source(
    session: AsyncSession, application: Application, change: DrillPolicyChange
) -> str | None:
    """The drill policy's ``source`` as stored (None: the primary). A target must be the
    workspace's (NotFound otherwise, as for a manual drill); a moment is recovered from the
    WAL archive, which no offsite copy holds, so ``target_time`` takes the primary only."""
    if change.source == "primary":
        return None
    if change.target_time is not None:
        raise Invalid(
            [
                {
                    "loc": ("source",),
                    "msg": "a drill to a moment (target_time) recovers from the WAL archive,"
                    " which offsite copies do not hold: leave source primary, or target_time"
                    " null to drill the newest copied backup",
                    "type": "moment_from_offsite",
                }
            ]
        )
    if isinstance(change.source, uuid.UUID):
        await offsite_targets.get(session, application.workspace_id, change.source)
    return str(change.source)


async def put_drill_policy(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    application: Application,
    actor: audit.Actor,
    change: DrillPolicyChange,
) -> tuple[RestoreDrillPolicy, BackupPolicy, bool]:
    """Creates or replaces the drill policy and its schedule together; committed. Returns it,
    its backup policy and whether it was created.

    Refusals: services.errors' Conflict ``policy-required``, Invalid (the schedule: not
    cron, too frequent, or refused by Temporal; a ``target_time`` without continuous
    archiving or with an offsite ``source``), NotFound (a target not the workspace's) and
    TemporalUnavailable.
    """
    policy = await backup_policy_of(session, application.id)
    if policy is None:
        raise Conflict(
            "the application has no backup policy; drills run in its time zone, create one first",
            kind="policy-required",
            title="No backup policy",
        )
    try:
        check(
            change.schedule,
            ZoneInfo(policy.timezone),
            timedelta(minutes=settings.policy_min_interval_minutes),
        )
    except CronError as exc:
        raise _schedule_refused(str(exc)) from None
    if change.target_time is not None and not policy.continuous_archiving:
        raise recovery_window.archiving_off()
    source = await _drill_source(session, application, change)
    drills = await drill_policy_of(session, policy, lock=True)
    created = drills is None
    if drills is None:
        drills = RestoreDrillPolicy(id=uuid.uuid4(), policy_id=policy.id)
        session.add(drills)
    values: dict[str, Any] = {
        "schedule": change.schedule,
        "enabled": change.enabled,
        "checks": change.checks,
        "target_time": change.target_time,
        "source": source,
    }
    before = {key: getattr(drills, key) for key in values} if not created else {}
    for key, value in values.items():
        setattr(drills, key, value)
    audit.record(
        session,
        actor,
        "drill_policy.create" if created else "drill_policy.update",
        "restore_drill_policy",
        drills.id,
        workspace_id=application.workspace_id,
        details={k: v for k, v in values.items() if created or before.get(k) != v},
    )
    await session.flush()
    note = f"paused by {actor.label} at {datetime.now(UTC).isoformat(timespec='seconds')}"
    try:
        await sync.upsert(temporal, drills, policy, application, settings, note)
    except ScheduleRejected as exc:
        raise _schedule_refused(f"Temporal cannot run this schedule: {exc}") from exc
    except Exception as exc:
        raise _schedule_unchanged(exc) from exc
    await session.commit()
    return drills, policy, created


async def delete_drill_policy(
    session: AsyncSession, temporal: Client, application: Application, actor: audit.Actor
) -> bool:
    """Removes the drill policy and its schedule together; committed. False if none;
    TemporalUnavailable leaves it."""
    policy = await backup_policy_of(session, application.id)
    drills = await drill_policy_of(session, policy, lock=True)
    if drills is None:
        return False
    audit.record(
        session,
        actor,
        "drill_policy.delete",
        "restore_drill_policy",
        drills.id,
        workspace_id=application.workspace_id,
        details={"schedule": drills.schedule},
    )
    await session.delete(drills)
    await session.flush()
    try:
        await sync.remove(temporal, application.id)
    except Exception as exc:
        raise _schedule_unchanged(exc) from exc
    await session.commit()
    return True
