"""Which applications are overdue: policies and last successes read, judged by core/overdue.py.

One query for any number of applications (a page of the list, one application, or all of them
for ``/metrics``), so the API, the UI and the metrics agree on every verdict.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.overdue import Grace, NextFire, Notified, Verdict, judge, notice_due
from core.settings import Settings
from core.states import RunStatus
from db import audit
from db.models import (
    Application,
    AuditEvent,
    BackupExecution,
    BackupPolicy,
    RestoreDrill,
    RestoreDrillPolicy,
)
from schedules.cron import next_times

if TYPE_CHECKING:
    from services.offsite_targets import OffsiteLag
    from services.recovery_window import Archiving


@dataclass(frozen=True)
class Standing:
    """An application with a backup policy: its verdicts and last successes.

    ``backup`` is None while the policy is paused, ``drill`` None without an enabled drill
    policy: neither is judged then.
    """

    application_id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    backup: Verdict | None
    drill: Verdict | None
    last_success: datetime | None
    last_drill_success: datetime | None

    @property
    def overdue(self) -> bool:
        return self.backup is not None and self.backup.overdue

    @property
    def drill_overdue(self) -> bool:
        return self.drill is not None and self.drill.overdue


def grace_of(settings: Settings) -> Grace:
    return Grace(
        minimum=timedelta(minutes=settings.overdue_grace_min_minutes),
        fraction=settings.overdue_grace_fraction,
        maximum=timedelta(hours=settings.overdue_grace_max_hours),
    )


def fires_of(expression: str, zone: ZoneInfo) -> NextFire:
    """The schedule's next fire time after a moment, read as Temporal reads the cron."""

    def next_fire(after: datetime) -> datetime | None:
        times = next_times(expression, zone, 1, after)
        return times[0] if times else None

    return next_fire


def _last_success(
    model: type[BackupExecution] | type[RestoreDrill], ids: Collection[uuid.UUID] | None
) -> Select[uuid.UUID, datetime | None]:
    query = (
        select(model.application_id, func.max(model.completed_at).label("at"))
        .where(model.status == RunStatus.SUCCEEDED)
        .group_by(model.application_id)
    )
    return query if ids is None else query.where(model.application_id.in_(ids))


async def standings(
    session: AsyncSession,
    settings: Settings,
    application_ids: Collection[uuid.UUID] | None = None,
    now: datetime | None = None,
) -> dict[uuid.UUID, Standing]:
    """The standing of each application with a backup policy (of ``application_ids``, or of
    every application when None), judged at ``now``."""
    now = now or datetime.now(UTC)
    grace = grace_of(settings)
    backups = _last_success(BackupExecution, application_ids).subquery()
    drills = _last_success(RestoreDrill, application_ids).subquery()
    query = (
        select(
            Application.id,
            Application.workspace_id,
            Application.name,
            BackupPolicy,
            RestoreDrillPolicy,
            backups.c.at,
            drills.c.at,
        )
        .join(BackupPolicy, BackupPolicy.application_id == Application.id)
        .outerjoin(RestoreDrillPolicy, RestoreDrillPolicy.policy_id == BackupPolicy.id)
        .outerjoin(backups, backups.c.application_id == Application.id)
        .outerjoin(drills, drills.c.application_id == Application.id)
    )
    if application_ids is not None:
        query = query.where(Application.id.in_(application_ids))
    found: dict[uuid.UUID, Standing] = {}
    for app_id, workspace_id, name, policy, drill_policy, succeeded, drilled in (
        await session.execute(query)
    ).all():
        zone = ZoneInfo(policy.timezone)
        backup = (
            judge(fires_of(policy.schedule, zone), policy.created_at or now, succeeded, now, grace)
            if policy.enabled
            else None
        )
        drill = None
        if drill_policy is not None and drill_policy.enabled:
            drill_fires = fires_of(drill_policy.schedule, zone)
            drill = judge(drill_fires, drill_policy.created_at, drilled, now, grace)
        found[app_id] = Standing(app_id, workspace_id, name, backup, drill, succeeded, drilled)
    return found


async def standing_of(
    session: AsyncSession, settings: Settings, application_id: uuid.UUID
) -> Standing | None:
    """One application's standing; None without a backup policy."""
    return (await standings(session, settings, [application_id])).get(application_id)


NOTICE_ACTOR = audit.Actor(label="system:overdue-notices")
# the audit action of each notice: (kind, overdue) -> action; the audit log is the record of
# what was told, so a notice is sent once per overdue period and once when it ends
NOTICE_ACTIONS: dict[tuple[str, bool], str] = {
    ("backup", True): "application.backup_overdue",
    ("backup", False): "application.backup_recovered",
    ("drill", True): "application.drill_overdue",
    ("drill", False): "application.drill_recovered",
    ("offsite", True): "application.offsite_overdue",
    ("offsite", False): "application.offsite_recovered",
    ("archive", True): "application.archive_overdue",
    ("archive", False): "application.archive_recovered",
}
Kind = Literal["backup", "drill", "offsite", "archive"]
_KIND_OF_ACTION = {action: key for key, action in NOTICE_ACTIONS.items()}


@dataclass(frozen=True)
class Notice:
    """An overdue period of an application's backups, drills, offsite copies or continuous
    archiving (stalled) began or ended (for copies, ``last_success`` is when the newest copy
    finished; for archiving, the last archived moment)."""

    kind: Kind
    event: Literal["overdue", "recovered"]
    application_id: uuid.UUID
    workspace_id: uuid.UUID
    application: str
    overdue_since: datetime
    last_success: datetime | None

    def payload(self) -> dict[str, Any]:
        """What the webhook receives: names and moments, never a secret."""
        return {
            "event": f"{self.kind}.{self.event}",
            "kind": self.kind,
            "id": str(self.application_id),
            "application_id": str(self.application_id),
            "workspace_id": str(self.workspace_id),
            "application": self.application,
            "overdue_since": self.overdue_since.isoformat(),
            "last_success_at": self.last_success.isoformat() if self.last_success else None,
        }


async def _latest_notices(
    session: AsyncSession, application_ids: Collection[uuid.UUID]
) -> dict[tuple[str, str], Notified]:
    """The latest notice per (application id, kind)."""
    found: dict[tuple[str, str], Notified] = {}
    if not application_ids:
        return found
    rows = await session.execute(
        select(AuditEvent.target_id, AuditEvent.action, AuditEvent.details)
        .where(
            AuditEvent.action.in_(NOTICE_ACTIONS.values()),
            AuditEvent.target_id.in_([str(i) for i in application_ids]),
        )
        .order_by(AuditEvent.occurred_at)
    )
    for target_id, action, details in rows:
        kind, overdue = _KIND_OF_ACTION[action]
        since = datetime.fromisoformat(details["overdue_since"])
        found[(target_id, kind)] = Notified(overdue, since)
    return found


def offsite_verdict(lag: OffsiteLag, now: datetime) -> Verdict:
    """The offsite copies' standing read as a schedule's: owed since the oldest backup without
    a copy completed, overdue past its allowance (``core/offsite_overdue.py``)."""
    return Verdict(
        overdue=lag.overdue_since(now) is not None,
        due_at=lag.behind_since,
        deadline=lag.overdue_from,
    )


async def notices_due(
    session: AsyncSession,
    settings: Settings,
    now: datetime | None = None,
    offsite: dict[uuid.UUID, OffsiteLag] | None = None,
    archiving: dict[uuid.UUID, Archiving] | None = None,
) -> list[Notice]:
    """The notices to send now: each application newly overdue, each one recovered; for
    its offsite copies too when their lags (``offsite_targets.offsite_lags``) are given, and
    its continuous archiving when its state (``recovery_window.archiving_states``) is."""
    now = now or datetime.now(UTC)
    standing = await standings(session, settings, now=now)
    latest = await _latest_notices(session, list(standing))
    offsite, archiving = offsite or {}, archiving or {}
    due: list[Notice] = []
    for s in standing.values():
        lag = offsite.get(s.application_id)
        kinds: list[tuple[Kind, Verdict | None, datetime | None]]
        kinds = [("backup", s.backup, s.last_success), ("drill", s.drill, s.last_drill_success)]
        if lag is not None:
            kinds.append(("offsite", offsite_verdict(lag, now), lag.last_copied_at))
        archived = archiving.get(s.application_id)
        if archived is not None:
            kinds.append(("archive", archived.verdict(now), archived.last_archived))
        for kind, verdict, last in kinds:
            told = latest.get((str(s.application_id), kind))
            event = notice_due(verdict, last, told)
            if event is None:
                continue
            # an overdue period is named by its deadline; a recovery by the period it ends
            since = told.overdue_since if event == "recovered" and told else None
            since = since or (verdict.deadline if verdict else None)
            assert since is not None
            due.append(Notice(kind, event, s.application_id, s.workspace_id, s.name, since, last))
    return due


async def tell_alone(session: AsyncSession) -> None:
    """Waits until no other notices step runs, then holds them off until ``session``'s
    transaction ends: two at once (one started by hand, or a timed-out run's step still going
    when the schedule starts the next) would both find a notice due and tell it twice."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('cairn-notices'))"))


def record_notice(session: AsyncSession, notice: Notice) -> None:
    """Writes that ``notice`` was told (in the application's workspace's audit log)."""
    audit.record(
        session,
        NOTICE_ACTOR,
        NOTICE_ACTIONS[(notice.kind, notice.event == "overdue")],
        "application",
        notice.application_id,
        workspace_id=notice.workspace_id,
        details={"overdue_since": notice.overdue_since.isoformat(), "event": notice.event},
    )
