"""One Temporal Schedule per drill policy (``restore-drill-{application_id}``).

The drill schedule runs in its backup policy's time zone, so a change of the policy's time
zone rewrites it. Creating, updating, pausing and repairing go through the same code as
the backup-policy schedules (``schedules/backup_policy.py``); the database wins.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)

from contracts.drill import DRILL_WORKFLOW, DrillRequest
from contracts.task_queues import CONTROL_TASK_QUEUE
from core.search_attributes import for_run
from core.settings import Settings
from core.states import Trigger
from db.models import Application, BackupPolicy, RestoreDrillPolicy
from schedules.backup_policy import FINGERPRINT, ReconcileReport, Wanted, delete, put, repair

PREFIX = "restore-drill-"


def schedule_id(application_id: object) -> str:
    return f"{PREFIX}{application_id}"


def request_for(application: Application) -> DrillRequest:
    return DrillRequest(
        application_id=str(application.id),
        workspace_id=str(application.workspace_id),
        trigger=Trigger.SCHEDULE,
        schedule_id=schedule_id(application.id),
    )


def _fingerprint(
    drills: RestoreDrillPolicy, policy: BackupPolicy, application: Application, settings: Settings
) -> str:
    facts = {
        "schedule": drills.schedule,
        "timezone": policy.timezone,
        "enabled": bool(drills.enabled),
        "request": asdict(request_for(application)),
        "catchup_minutes": settings.schedule_catchup_minutes,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def build(
    drills: RestoreDrillPolicy,
    policy: BackupPolicy,
    application: Application,
    settings: Settings,
    pause_note: str | None,
) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DRILL_WORKFLOW,
            request_for(application),
            id=schedule_id(application.id),
            task_queue=CONTROL_TASK_QUEUE,
            typed_search_attributes=for_run(
                application.workspace_id, application.id, Trigger.SCHEDULE
            ),
            memo={FINGERPRINT: _fingerprint(drills, policy, application, settings)},
        ),
        spec=ScheduleSpec(cron_expressions=[drills.schedule], time_zone_name=policy.timezone),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=timedelta(minutes=settings.schedule_catchup_minutes),
        ),
        state=ScheduleState(
            paused=not drills.enabled, note=pause_note if not drills.enabled else "enabled"
        ),
    )


async def upsert(
    client: Client,
    drills: RestoreDrillPolicy,
    policy: BackupPolicy,
    application: Application,
    settings: Settings,
    pause_note: str | None,
) -> None:
    schedule = build(drills, policy, application, settings, pause_note)
    await put(client, schedule_id(application.id), schedule, drills.enabled, pause_note)


async def remove(client: Client, application_id: object) -> bool:
    return await delete(client, schedule_id(application_id))


async def follow(
    client: Client,
    session: AsyncSession,
    policy: BackupPolicy,
    application: Application,
    settings: Settings,
) -> None:
    """Rewrites the drill schedule of ``policy``, if it has one, after the policy changed."""
    drills = await session.scalar(
        select(RestoreDrillPolicy).where(RestoreDrillPolicy.policy_id == policy.id)
    )
    if drills is not None:
        await upsert(client, drills, policy, application, settings, "paused (drills disabled)")


async def reconcile(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    report: ReconcileReport | None = None,
) -> ReconcileReport:
    """Makes Temporal's drill schedules equal the drill policies in the database."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(RestoreDrillPolicy, BackupPolicy, Application)
                .join(BackupPolicy, BackupPolicy.id == RestoreDrillPolicy.policy_id)
                .join(Application, Application.id == BackupPolicy.application_id)
            )
        ).all()

    def wanted(drills: RestoreDrillPolicy, policy: BackupPolicy, app: Application) -> Wanted:
        return Wanted(
            _fingerprint(drills, policy, app, settings),
            drills.enabled,
            lambda note: upsert(client, drills, policy, app, settings, note),
        )

    return await repair(
        client,
        PREFIX,
        {schedule_id(app.id): wanted(drills, policy, app) for drills, policy, app in rows},
        report,
    )
