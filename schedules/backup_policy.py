"""One Temporal Schedule per backup policy, kept equal to the database row.

The database is the source of truth: the API writes the row and the schedule in
one request (the row commits only after Temporal accepted the change), and
``reconcile`` repairs whatever drift remains (a crash between the two, a schedule
edited by hand).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_object_session, async_sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from contracts.backup import BACKUP_WORKFLOW, BackupRequest
from contracts.task_queues import CONTROL_TASK_QUEUE
from core import run_summary
from core.search_attributes import for_run
from core.settings import Settings
from core.states import BackupType, Trigger
from db import run_names
from db.models import Application, BackupPolicy, BackupStorage, Workspace
from schedules.store import create_or_update

log = logging.getLogger(__name__)

PREFIX = "backup-policy-"
FINGERPRINT = "cairn_fingerprint"


def schedule_id(application_id: object) -> str:
    return f"{PREFIX}{application_id}"


def request_for(policy: BackupPolicy, application: Application, trigger: Trigger) -> BackupRequest:
    return BackupRequest(
        application_id=str(application.id),
        workspace_id=str(application.workspace_id),
        policy_id=str(policy.id),
        storage_id=str(policy.storage_id),
        trigger=trigger,
        backup_type=BackupType(policy.backup_type or BackupType.FULL),
        include_volumes=bool(policy.include_volumes),
        include_database=bool(policy.include_database),
        retention_days=policy.retention_days or 30,
    )


def _fingerprint(
    policy: BackupPolicy, application: Application, settings: Settings, names: run_summary.Names
) -> str:
    facts = {
        "text": asdict(
            run_summary.backup(names, Trigger.SCHEDULE)
        ),  # a renamed storage rewrites it
        "schedule": policy.schedule,
        "timezone": policy.timezone,
        "enabled": bool(policy.enabled),
        "request": asdict(request_for(policy, application, Trigger.SCHEDULE)),
        "catchup_minutes": settings.schedule_catchup_minutes,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def build(
    policy: BackupPolicy,
    application: Application,
    settings: Settings,
    pause_note: str | None,
    names: run_summary.Names,
) -> Schedule:
    request = request_for(policy, application, Trigger.SCHEDULE)
    text = run_summary.backup(names, Trigger.SCHEDULE)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            BACKUP_WORKFLOW,
            request,
            id=schedule_id(application.id),
            task_queue=CONTROL_TASK_QUEUE,
            typed_search_attributes=for_run(
                application.workspace_id, application.id, Trigger.SCHEDULE
            ),
            memo={FINGERPRINT: _fingerprint(policy, application, settings, names)},
            static_summary=text.summary,
            static_details=text.details,
        ),
        spec=ScheduleSpec(cron_expressions=[policy.schedule], time_zone_name=policy.timezone),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=timedelta(minutes=settings.schedule_catchup_minutes),
        ),
        state=ScheduleState(
            paused=not policy.enabled,
            note=pause_note if not policy.enabled else "enabled",
        ),
    )


class ScheduleRejected(Exception):
    """Temporal refused the schedule (for example a cron expression it cannot run)."""


async def upsert(
    client: Client,
    policy: BackupPolicy,
    application: Application,
    settings: Settings,
    pause_note: str | None,
    names: run_summary.Names | None = None,
) -> None:
    """Writes the policy's schedule; ``names`` are read from the policy's session if not given."""
    if names is None:
        session = async_object_session(policy)
        assert session is not None  # the API's policy row, attached to its request session
        names = await run_names.lookup(
            session, application.workspace_id, application.id, policy.storage_id
        )
    schedule = build(policy, application, settings, pause_note, names)
    await put(client, schedule_id(application.id), schedule, bool(policy.enabled), pause_note)


async def put(
    client: Client, sid: str, schedule: Schedule, enabled: bool, pause_note: str | None
) -> None:
    """Creates the schedule ``sid`` or replaces it, paused unless ``enabled``."""
    try:
        if await create_or_update(client, sid, schedule):
            # An update keeps the paused flag as it was; set it explicitly.
            handle = client.get_schedule_handle(sid)
            if enabled:
                await handle.unpause(note="enabled")
            else:
                await handle.pause(note=pause_note or "paused")
    except RPCError as exc:
        if exc.status == RPCStatusCode.INVALID_ARGUMENT:
            raise ScheduleRejected(exc.message) from exc
        raise


async def remove(client: Client, application_id: object) -> bool:
    return await delete(client, schedule_id(application_id))


async def delete(client: Client, sid: str) -> bool:
    """Deletes the schedule ``sid``; False when it did not exist."""
    try:
        await client.get_schedule_handle(sid).delete()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def describe(client: Client, application_id: object) -> ScheduleDescription | None:
    return await describe_id(client, schedule_id(application_id))


async def describe_id(client: Client, sid: str) -> ScheduleDescription | None:
    try:
        return await client.get_schedule_handle(sid).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def fingerprint_of(description: ScheduleDescription) -> str | None:
    action = description.schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow) or not action.memo:
        return None
    payload = action.memo.get(FINGERPRINT)
    if payload is None:
        return None
    value = DataConverter.default.payload_converter.from_payloads([payload])[0]
    return value if isinstance(value, str) else None


async def live_state(client: Client, application_id: object, zone: ZoneInfo) -> dict[str, Any]:
    return await state_of(client, schedule_id(application_id), zone)


async def state_of(client: Client, sid: str, zone: ZoneInfo) -> dict[str, Any]:
    """What Temporal says about the schedule: paused, next runs, recent runs and outcomes."""
    description = await describe_id(client, sid)
    if description is None:
        return {"present": False, "paused": None, "note": None, "next_runs": [], "recent_runs": []}
    runs = []
    for action in reversed(description.info.recent_actions[-10:]):
        execution = action.action
        workflow_id = getattr(execution, "workflow_id", None)
        run_id = getattr(execution, "first_execution_run_id", None)
        status = None
        if workflow_id:
            try:
                info = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
                status = info.status.name.lower() if info.status else None
            except RPCError:
                status = "unknown"
        runs.append(
            {
                "workflow_id": workflow_id,
                "run_id": run_id,
                "scheduled_at": action.scheduled_at,
                "started_at": action.started_at,
                "status": status,
            }
        )
    return {
        "present": True,
        "paused": description.schedule.state.paused,
        "note": description.schedule.state.note,
        "next_runs": [t.astimezone(zone) for t in description.info.next_action_times[:5]],
        "recent_runs": runs,
    }


@dataclass
class ReconcileReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0


@dataclass
class Wanted:
    """A schedule the database asks for: its fingerprint, state, and how to (re)write it."""

    fingerprint: str
    enabled: bool
    write: Callable[[str], Awaitable[None]]  # called with the pause note


async def reconcile(
    client: Client, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> ReconcileReport:
    """Makes Temporal's backup-policy schedules equal the policies in the database."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(BackupPolicy, Application, Workspace.name, BackupStorage.name)
                .join(Application, Application.id == BackupPolicy.application_id)
                .join(Workspace, Workspace.id == Application.workspace_id)
                .join(BackupStorage, BackupStorage.id == BackupPolicy.storage_id)
            )
        ).all()

    def wanted(policy: BackupPolicy, app: Application, names: run_summary.Names) -> Wanted:
        return Wanted(
            _fingerprint(policy, app, settings, names),
            bool(policy.enabled),
            lambda note: upsert(client, policy, app, settings, note, names),
        )

    return await repair(
        client,
        PREFIX,
        {
            schedule_id(app.id): wanted(
                policy, app, run_summary.Names(workspace, app.name, storage)
            )
            for policy, app, workspace, storage in rows
        },
    )


async def repair(
    client: Client, prefix: str, wanted: dict[str, Wanted], report: ReconcileReport | None = None
) -> ReconcileReport:
    """Creates missing schedules named ``prefix…``, rewrites changed ones, deletes orphans."""
    report = report or ReconcileReport()
    existing = set()
    async for listed in await client.list_schedules():
        if listed.id.startswith(prefix):
            existing.add(listed.id)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    note = f"paused by cairn reconcile at {now} (policy disabled)"
    for sid, want in wanted.items():
        description = await describe_id(client, sid) if sid in existing else None
        if description is None:
            await want.write(note)
            report.created.append(sid)
        elif fingerprint_of(description) != want.fingerprint or (
            description.schedule.state.paused != (not want.enabled)
        ):
            await want.write(note)
            report.updated.append(sid)
        else:
            report.unchanged += 1
    for sid in sorted(existing - set(wanted)):
        await client.get_schedule_handle(sid).delete()
        report.deleted.append(sid)
    if report.created or report.updated or report.deleted:
        log.warning("schedule drift repaired: %s", report)
    return report
