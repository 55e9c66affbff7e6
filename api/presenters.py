"""How the API shows each resource, shared by its JSON routes and the web UI's pages (api/ui/),
so both show the same fields: never a secret's value, links into the Temporal UI, runs settled
against Temporal before they are shown."""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.pagination import page_of
from api.problems import invalid, refusals
from api.runs import settled_view, with_timeline
from api.schemas.applications import (
    ApplicationOut,
    ApplicationRow,
    KubernetesPlatformOut,
    LocalPlatformOut,
)
from api.schemas.backups import BackupOut
from api.schemas.offsite_targets import OffsiteLagOut
from api.schemas.policies import PolicyOut
from api.schemas.restores import RestoreOut
from api.schemas.storages import StorageOut
from api.temporal_links import run_url
from core.database_url import database_url
from core.retention_rule import Rule
from core.settings import Settings
from db.models import Application, BackupExecution, BackupPolicy, BackupRestore, BackupStorage
from schedules import backup_policy as sync
from schedules.cron import CronError, check_timezone
from services import backups, offsite_targets, policies, restores
from services.offsite_targets import OffsiteLag
from services.overdue import Standing
from services.policies import KEEPS_NOTHING
from services.storages import SECRET_FIELDS

log = logging.getLogger(__name__)


def storage_connection(storage: BackupStorage) -> dict[str, Any]:
    """The storage's connection settings, and which secrets are set (never their values)."""
    return {
        "connection": storage.connection_config or {},
        "secrets_set": sorted(SECRET_FIELDS) if storage.connection_secrets else [],
    }


def storage(row: BackupStorage) -> dict[str, Any]:
    return StorageOut.of(row, **storage_connection(row)).model_dump()


def overdue(standing: Standing | None) -> dict[str, Any]:
    """The overdue fields of an application (none without a policy: not overdue)."""
    if standing is None:
        return {}
    return {
        "overdue": standing.overdue,
        "overdue_since": standing.backup.overdue_since if standing.backup else None,
        "drill_overdue": standing.drill_overdue,
        "drill_overdue_since": standing.drill.overdue_since if standing.drill else None,
    }


def offsite(lag: OffsiteLag | None) -> dict[str, Any]:
    """The offsite lag of an application (none without a target: null)."""
    if lag is None:
        return {}
    now = datetime.now(UTC)
    since = lag.overdue_since(now)
    shown = {
        **asdict(lag),
        "lag_seconds": lag.lag_seconds(now),
        "overdue": since is not None,
        "overdue_since": since,
    }
    return {"offsite": OffsiteLagOut.model_validate(shown).model_dump()}


def application(
    row: Application, standing: Standing | None = None, lag: OffsiteLag | None = None
) -> dict[str, Any]:
    """Never a password, only whether one is set."""
    settings = row.platform_settings
    platform: LocalPlatformOut | KubernetesPlatformOut
    if row.platform_kind == "kubernetes":
        platform = KubernetesPlatformOut.model_validate({"kind": "kubernetes", **settings})
    else:
        database = settings.get("database")
        platform = LocalPlatformOut(
            kind="local",
            database_url=database_url(database) if database else None,
            database_password_set=bool(settings.get("database_password_set")),
            volumes=settings.get("volumes", {}),
            databases=settings.get("databases") or {},
            hooks=settings.get("hooks"),
        )
    shown = ApplicationRow.model_validate(row, from_attributes=True)
    return ApplicationOut.model_validate(
        {
            **shown.model_dump(),
            "platform": platform.model_dump(),
            **overdue(standing),
            **offsite(lag),
        }
    ).model_dump()


def backup(execution: BackupExecution, settings: Settings, **extra: Any) -> dict[str, Any]:
    """The backup with its link into the Temporal UI."""
    link = run_url(settings, execution.workflow_id)
    return BackupOut.of(
        execution, metadata=execution.metadata_, temporal_ui_url=link, **extra
    ).model_dump()


async def policy(
    row: BackupPolicy, temporal: Client, standing: Standing | None = None
) -> dict[str, Any]:
    """The policy with its schedule's live state, or why Temporal could not tell it, and
    whether its application is overdue."""
    live: dict[str, Any] = {}
    if standing is not None and standing.backup is not None:
        live |= {"overdue": standing.overdue, "overdue_since": standing.backup.overdue_since}
    try:
        live["schedule_state"] = await sync.live_state(
            temporal, row.application_id, ZoneInfo(row.timezone)
        )
    except Exception as exc:
        log.warning("schedule state of %s unreadable: %s", row.application_id, exc)
        live["schedule_error"] = f"Temporal could not be reached ({type(exc).__name__})"
    return PolicyOut.of(row, schedule_id=sync.schedule_id(row.application_id), **live).model_dump()


async def retention_preview(
    session: AsyncSession, row: BackupPolicy, proposed: Rule | None, timezone: str | None
) -> dict[str, Any]:
    """Which backups the policy's rule (or the ``proposed`` one, in ``timezone``) keeps and
    which the next prune removes, and why; a rule that keeps nothing is refused."""
    rule = proposed or policies.policy_rule(row)
    if rule.keeps_nothing:
        raise invalid("query.retention_days", KEEPS_NOTHING, "keeps_nothing")
    try:
        zone = check_timezone(timezone or row.timezone)
    except CronError as exc:
        raise invalid("query.timezone", str(exc), "invalid_timezone") from exc
    now = datetime.now(UTC)
    verdicts = await policies.retention_plan(session, row, rule, zone, now)
    items = [
        {
            "backup_id": v.backup.id,
            "started_at": v.backup.started_at,
            "status": v.backup.status,
            "protected": v.backup.protected,
            "reasons": list(v.reasons),
        }
        for v in verdicts
    ]
    return {
        "rule": {**rule.describe(), "timezone": str(zone)},
        "proposed": proposed is not None or timezone is not None,
        "evaluated_at": now,
        "keep": [i for i, v in zip(items, verdicts, strict=True) if v.keep],
        "prune": [i for i, v in zip(items, verdicts, strict=True) if not v.keep],
    }


def restore(row: BackupRestore, settings: Settings) -> dict[str, Any]:
    """The restore with its link into the Temporal UI."""
    shown = RestoreOut.model_validate(row, from_attributes=True).model_dump()
    return {**shown, "temporal_ui_url": run_url(settings, row.workflow_id)}


async def backup_page(
    session: AsyncSession,
    temporal: Client | None,
    settings: Settings,
    application: Application,
    limit: int,
    cursor: str | None,
    status: str | None = None,
) -> dict[str, Any]:
    """A page of the application's backups (only those in ``status`` when given), each with
    when a restore drill last proved it."""
    query = backups.of_application(application, status)
    items, next_cursor = await page_of(session, query, limit, cursor)
    for execution in items:
        await settled_view(session, temporal, execution)
    verified = await backups.last_verified(session, [e.id for e in items])
    places = await offsite_targets.restorable_from(session, items)
    return {
        "items": [
            backup(e, settings, last_verified_by_drill_at=verified.get(e.id), **_copies(places, e))
            for e in items
        ],
        "next_cursor": next_cursor,
    }


def _copies(
    places: dict[uuid.UUID, tuple[list[dict[str, Any]], list[str]]], execution: BackupExecution
) -> dict[str, Any]:
    copies, sources = places[execution.id]
    return {"copies": copies, "restorable_from": sources}


async def backup_detail(
    session: AsyncSession,
    temporal: Client | None,
    settings: Settings,
    application: Application,
    backup_id: uuid.UUID,
) -> dict[str, Any]:
    """One of the application's backups with when a restore drill last proved it, and its
    steps (404 for another application's)."""
    with refusals():
        execution = await backups.backup_of(session, application, backup_id)
    await settled_view(session, temporal, execution, timeline_follows=True)
    verified = await backups.last_verified(session, [execution.id])
    places = await offsite_targets.restorable_from(session, [execution])
    body = backup(
        execution,
        settings,
        last_verified_by_drill_at=verified.get(execution.id),
        **_copies(places, execution),
    )
    return await with_timeline(body, temporal, execution)


async def restore_detail(
    session: AsyncSession,
    temporal: Client | None,
    settings: Settings,
    application: Application,
    restore_id: uuid.UUID,
) -> dict[str, Any]:
    """One of the application's restores with its steps (404 for another application's)."""
    with refusals():
        row = await restores.restore_of(session, application, restore_id)
    await settled_view(session, temporal, row, timeline_follows=True)
    return await with_timeline(restore(row, settings), temporal, row)
