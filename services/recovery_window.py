"""What an application can be restored to (docs/pitr.md): the window read from its
repository's tags, and how its archiver stands.

Read only: an application without a repository yet has an empty window (the repository is
never created by a read). The API process reads the storage as the catalog import does; after
an import, before a policy is made again, from the repository the import brought back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from adapters.pg_archive.window import (
    Archive,
    OutsideWindow,
    Plan,
    Span,
    plan,
    read_archive,
    stamp,
)
from adapters.pg_archive.window import window as window_of
from adapters.restic import Repository, Restic, ResticError, Snapshot
from contracts.archive import DRAWN, LATEST, RANDOM, TARGET_TIME
from core import archive_lag
from core.overdue import Verdict
from core.settings import Settings
from db.models import Application, AuditEvent, BackupPolicy
from repository.store import archive_repository
from schedules import archiver
from services.errors import Conflict, Invalid

log = logging.getLogger(__name__)

Moment = datetime | Literal["latest", "random"]
"""What a drill to a moment asks for: a moment, the latest, or one drawn from the window."""

EMPTY = Archive([], [])
LOCK_ATTEMPTS = 5


@dataclass(frozen=True)
class RecoveryWindow:
    archiving: bool  # the policy has continuous archiving on
    earliest: datetime | None
    latest: datetime | None
    gaps: list[Span]
    archiver_running: bool | None  # None: Temporal could not tell
    last_shipment_at: datetime | None  # the server time every shipped commit is in by
    lag_seconds: float | None  # now minus that time


@dataclass(frozen=True)
class Archiving:
    """An application's continuous archiving as the notices judge it: on since when, and the
    last archived moment (the newest shipment's ``until``; None before the first)."""

    on_since: datetime
    last_archived: datetime | None

    def verdict(self, now: datetime) -> Verdict:
        """Stalled or not (``core/archive_lag.py``), read as a schedule's overdue verdict."""
        return archive_lag.judge(self.on_since, self.last_archived, now)


async def _snapshots(restic: Restic, repo: Repository) -> list[Snapshot]:
    """The repository's snapshots; asked again while the archiver's forget of a superseded
    shipment holds the repository's lock (a second or so)."""
    for _ in range(LOCK_ATTEMPTS - 1):
        try:
            return await asyncio.to_thread(restic.snapshots, repo)
        except ResticError as exc:
            if not exc.retryable:
                raise
            await asyncio.sleep(1)
    return await asyncio.to_thread(restic.snapshots, repo)


async def archive(session: AsyncSession, settings: Settings, application_id: uuid.UUID) -> Archive:
    """The base backups and WAL shipments in the application's repository, by their tags."""
    repo = await archive_repository(session, settings, application_id)
    if repo is None:
        return EMPTY
    restic = Restic(settings.restic_bin, cache_dir=settings.restic_cache)
    try:
        snapshots = await _snapshots(restic, repo)
    except ResticError as exc:
        raise Conflict(
            f"the application's repository could not be read: {exc.message}",
            kind="storage-unreadable",
            title="Storage unreadable",
        ) from exc
    return read_archive(snapshots)


async def _running(temporal: Client | None, application_id: uuid.UUID) -> bool | None:
    """Whether the archiver runs; None while Temporal cannot be reached (the window, read
    from the storage, is still shown)."""
    if temporal is None:
        return None
    try:
        return (await archiver.state(temporal, application_id)).running
    except Exception as exc:
        log.warning("archiver state of %s unreadable: %s", application_id, exc)
        return None


async def archiving_on(session: AsyncSession, application_id: uuid.UUID) -> bool:
    """Whether the application's policy has continuous archiving on (no storage read)."""
    on = await session.scalar(
        select(BackupPolicy.continuous_archiving).where(
            BackupPolicy.application_id == application_id
        )
    )
    return bool(on)


async def read(
    session: AsyncSession, settings: Settings, temporal: Client | None, application: Application
) -> RecoveryWindow:
    policy = await session.scalar(
        select(BackupPolicy).where(BackupPolicy.application_id == application.id)
    )
    found = await archive(session, settings, application.id)
    window = window_of(found)
    last = found.shipments[-1].until if found.shipments else None
    return RecoveryWindow(
        archiving=bool(policy and policy.continuous_archiving),
        earliest=window.earliest,
        latest=window.latest,
        gaps=window.gaps,
        archiver_running=await _running(temporal, application.id),
        last_shipment_at=last,
        lag_seconds=(datetime.now(UTC) - last).total_seconds() if last else None,
    )


async def plan_to(
    session: AsyncSession, settings: Settings, application_id: uuid.UUID, target: datetime | None
) -> Plan:
    """What a restore to ``target`` (None: latest) replays; 422 naming the window when the
    moment is not restorable."""
    try:
        return plan(await archive(session, settings, application_id), target)
    except OutsideWindow as exc:
        raise Invalid(
            [{"loc": ("target_time",), "msg": str(exc), "type": "outside_window"}]
        ) from exc


def _moment_refused(message: str, kind: str) -> Invalid:
    return Invalid([{"loc": ("target_time",), "msg": message, "type": kind}])


def archiving_off() -> Invalid:
    """The 422 of a drill to a moment (or a drill policy asking for one) without archiving."""
    return _moment_refused(
        "continuous archiving is off for this application: a drill to a moment recovers"
        " from its WAL archive; turn it on in the backup policy first",
        "archiving_off",
    )


async def moment_to_drill(
    session: AsyncSession, settings: Settings, application_id: uuid.UUID, target: Moment
) -> dict[str, Any]:
    """What a drill to a moment records in its details: the moment (a stamp, or ``latest``),
    a ``random`` one drawn once from the window (gaps left out) and marked as drawn. The
    moment is checked as a restore to a moment checks it (``plan_to``: 422 naming the
    window). For a manual drill when it is requested, for a scheduled one when it begins."""
    if not await archiving_on(session, application_id):
        raise archiving_off()
    if target == RANDOM:
        found = window_of(await archive(session, settings, application_id))
        try:
            drawn = found.moment_at(secrets.SystemRandom().random())
        except OutsideWindow as exc:
            raise _moment_refused(str(exc), "outside_window") from None
        await plan_to(session, settings, application_id, drawn)
        return {TARGET_TIME: stamp(drawn), DRAWN: True}
    moment = target if isinstance(target, datetime) else None  # None: latest
    await plan_to(session, settings, application_id, moment)
    return {TARGET_TIME: stamp(moment) if moment else LATEST}


async def archiving_states(session: AsyncSession, settings: Settings) -> dict[uuid.UUID, Archiving]:
    """Every application with archiving on, by its id. On since: the latest policy change that
    turned it on, from the audit log (the policy's creation when the log has none); the last
    archived moment read from the repository's tags, as the window is (the archiver records it
    nowhere else). A repository that cannot be read is left out, not taken as stalled: it is
    judged again at the next look."""
    policies = (
        await session.execute(
            select(BackupPolicy.id, BackupPolicy.application_id, BackupPolicy.created_at).where(
                BackupPolicy.continuous_archiving.is_(True)
            )
        )
    ).all()
    if not policies:
        return {}
    turned_on: dict[str, datetime] = {
        target: at
        for target, at in await session.execute(
            select(AuditEvent.target_id, func.max(AuditEvent.occurred_at))
            .where(
                AuditEvent.action.in_(("policy.create", "policy.update")),
                AuditEvent.target_id.in_([str(p.id) for p in policies]),
                AuditEvent.details.contains({"continuous_archiving": True}),
            )
            .group_by(AuditEvent.target_id)
        )
    }
    found: dict[uuid.UUID, Archiving] = {}
    for policy_id, application_id, created in policies:
        try:
            shipped = (await archive(session, settings, application_id)).shipments
        except Conflict as exc:
            log.warning("archive of %s unreadable: %s", application_id, exc)
            continue
        last = shipped[-1].until if shipped else None
        on_since = turned_on.get(str(policy_id)) or created or datetime.now(UTC)
        found[application_id] = Archiving(on_since, last)
    return found
