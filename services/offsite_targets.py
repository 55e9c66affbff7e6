"""Offsite targets of a workspace: checked before they are stored, credentials sealed apart.

A target is stored only once the check passed: cairn reached the server, its everyday
credentials wrote a probe repository, and the server refused them a delete (an append-only
server). The maintenance credentials are sealed in a column of their own and opened only by
offsite retention.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.restic import Restic
from adapters.restic_remote import (
    S3_REGION,
    OffsiteRestic,
    Remote,
    TargetRefused,
    check_maintenance,
    check_target,
)
from core.offsite_overdue import copy_deadline
from core.settings import Settings
from core.states import CopyStatus, RunStatus
from db import audit
from db.models import (
    Application,
    BackupCopy,
    BackupExecution,
    BackupPolicy,
    BackupStorage,
    OffsiteTarget,
    RestoreDrillPolicy,
)
from repository.offsite import seal_credentials, seal_maintenance
from services import overdue
from services.errors import Conflict, Invalid, NotFound, Unsupported


async def get(
    session: AsyncSession, workspace_id: uuid.UUID, target_id: uuid.UUID
) -> OffsiteTarget:
    target = await session.get(OffsiteTarget, target_id)
    if target is None or target.workspace_id != workspace_id:
        raise NotFound("offsite target", target_id)
    return target


async def _name_free(session: AsyncSession, workspace_id: uuid.UUID, name: str) -> None:
    taken = await session.scalar(
        select(OffsiteTarget.id).where(
            OffsiteTarget.workspace_id == workspace_id, OffsiteTarget.name == name
        )
    )
    if taken:
        raise Conflict(f"an offsite target named {name} already exists in this workspace")


async def _check(settings: Settings, body: dict[str, Any], field: str = "url") -> dict[str, Any]:
    """Runs the target check; what immutability the target gives. A refusal is a 422
    naming the URL and what failed (in ``errors`` as ``body.{field}``)."""
    offsite = OffsiteRestic(Restic(settings.restic_bin, cache_dir=settings.restic_cache))
    url, credentials = body["url"], body["credentials"]
    probe = Remote(
        url,
        credentials["username"],
        credentials["password"],
        secrets.token_urlsafe(32),
        body["kind"],
    )
    try:
        return await asyncio.to_thread(
            check_target, offsite, probe, body.get("region") or S3_REGION
        )
    except TargetRefused as exc:
        raise Unsupported(
            f"the offsite target at {url} failed its check: {exc}; nothing was saved",
            "offsite-target-check-failed",
            "Offsite target check failed",
            {field: str(exc)},
        ) from None


async def create(
    session: AsyncSession,
    settings: Settings,
    actor: audit.Actor,
    workspace_id: uuid.UUID,
    body: dict[str, Any],
) -> OffsiteTarget:
    """Checks the target with its everyday credentials, then stores it (caller commits)."""
    await _name_free(session, workspace_id, body["name"])
    immutability = await _check(settings, body)
    target = OffsiteTarget(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        name=body["name"],
        kind=body["kind"],
        location={
            "url": body["url"],
            "maintenance_url": body.get("maintenance_url"),
            "region": body.get("region"),
            # what the check found when the target was added (docs/offsite.md)
            "immutability": immutability,
        },
        protection_days=body["protection_days"],
        upload_limit_kib=body.get("upload_limit_kib"),
    )
    seal_credentials(settings, target, body["credentials"])
    if body.get("maintenance_credentials"):
        seal_maintenance(settings, target, body["maintenance_credentials"])
    session.add(target)
    audit.record(
        session,
        actor,
        "offsite_target.create",
        "offsite_target",
        target.id,
        workspace_id=workspace_id,
        details={
            "name": target.name,
            "kind": target.kind,
            "url": body["url"],
            "maintenance_url": body.get("maintenance_url"),
            "protection_days": target.protection_days,
            "upload_limit_kib": target.upload_limit_kib,
            "immutability": immutability,
        },
    )
    await session.flush()
    return target


async def _check_maintenance(
    settings: Settings, target: OffsiteTarget, body: dict[str, Any]
) -> None:
    """New maintenance credentials must write and delete at the maintenance endpoint (what
    offsite retention does); a 422 naming what failed otherwise."""
    offsite = OffsiteRestic(Restic(settings.restic_bin, cache_dir=settings.restic_cache))
    url = body.get("maintenance_url") or target.location.get("maintenance_url")
    url = url or target.location["url"]
    credentials = body["maintenance_credentials"]
    probe = Remote(
        url,
        credentials["username"],
        credentials["password"],
        secrets.token_urlsafe(32),
        target.kind,
    )
    region = target.location.get("region") or S3_REGION
    try:
        await asyncio.to_thread(check_maintenance, offsite, probe, region)
    except TargetRefused as exc:
        raise Unsupported(
            f"the maintenance credentials at {url} failed their check: {exc}; nothing was saved",
            "offsite-target-check-failed",
            "Offsite target check failed",
            {"maintenance_credentials": str(exc)},
        ) from None


async def update(
    session: AsyncSession,
    settings: Settings,
    actor: audit.Actor,
    target: OffsiteTarget,
    body: dict[str, Any],
) -> OffsiteTarget:
    """Renames the target, sets its upload limit, raises its protection, rotates its
    credentials (caller commits). ``body``: only the fields the request set.

    New everyday credentials pass the add-time check against the target's URL (a probe
    written, a delete refused) and its findings replace the recorded ``immutability``; new
    maintenance credentials (optionally at a new ``maintenance_url``) must write and delete
    there. Any refusal leaves the target as it was. Audited with what changed, never a
    secret.
    """
    changed: dict[str, Any] = {}
    if "name" in body and body["name"] != target.name:
        await _name_free(session, target.workspace_id, body["name"])
        changed["name"] = body["name"]
    if "protection_days" in body and body["protection_days"] != target.protection_days:
        if body["protection_days"] < target.protection_days:
            raise Invalid(
                [
                    {
                        "loc": ("protection_days",),
                        "msg": f"can only be raised (it is {target.protection_days}): a shorter"
                        " protection would let offsite retention remove younger copies",
                        "type": "protection_lowered",
                    }
                ]
            )
        changed["protection_days"] = body["protection_days"]
    if "upload_limit_kib" in body and body["upload_limit_kib"] != target.upload_limit_kib:
        changed["upload_limit_kib"] = body["upload_limit_kib"]
    if body.get("maintenance_url") and not body.get("maintenance_credentials"):
        raise Invalid(
            [
                {
                    "loc": ("maintenance_credentials",),
                    "msg": "a new maintenance_url is given with the maintenance credentials"
                    " for it (they are checked there)",
                    "type": "missing",
                }
            ]
        )
    location = dict(target.location)
    if body.get("credentials"):
        check_body = {
            "url": target.location["url"],
            "kind": target.kind,
            "region": target.location.get("region"),
            "credentials": body["credentials"],
        }
        location["immutability"] = await _check(settings, check_body, "credentials")
        changed["credentials"] = "rotated"
        changed["immutability"] = location["immutability"]
    if body.get("maintenance_credentials"):
        await _check_maintenance(settings, target, body)
        changed["maintenance_credentials"] = "rotated"
        if body.get("maintenance_url"):
            location["maintenance_url"] = body["maintenance_url"]
            changed["maintenance_url"] = body["maintenance_url"]
    if not changed:
        return target
    # every check passed: only now is anything changed
    for key in ("name", "protection_days", "upload_limit_kib"):
        if key in changed:
            setattr(target, key, changed[key])
    if body.get("credentials"):
        seal_credentials(settings, target, body["credentials"])
    if body.get("maintenance_credentials"):
        seal_maintenance(settings, target, body["maintenance_credentials"])
    target.location = location
    audit.record(
        session,
        actor,
        "offsite_target.update",
        "offsite_target",
        target.id,
        workspace_id=target.workspace_id,
        details=changed,
    )
    await session.flush()
    return target


async def delete(session: AsyncSession, actor: audit.Actor, target: OffsiteTarget) -> None:
    """Forgets the target (its copies stay on the server); refused while a policy names it."""
    users = await session.scalar(
        select(BackupPolicy.id).where(BackupPolicy.offsite_target_id == target.id).limit(1)
    )
    readers = await session.scalar(
        select(RestoreDrillPolicy.id).where(RestoreDrillPolicy.source == str(target.id)).limit(1)
    )
    if users is not None or readers is not None:
        which = "backup" if users is not None else "drill"
        raise Conflict(
            f"offsite target {target.name} is named by a {which} policy; change the policy first",
            "offsite-target-in-use",
            "Offsite target in use",
        )
    audit.record(
        session,
        actor,
        "offsite_target.delete",
        "offsite_target",
        target.id,
        workspace_id=target.workspace_id,
        details={"name": target.name},
    )
    await session.delete(target)
    await session.flush()


async def copies_of(session: AsyncSession, execution: BackupExecution) -> list[dict[str, Any]]:
    """Where a backup lives: its primary storage first, then each offsite copy."""
    storage = (
        await session.get(BackupStorage, execution.storage_id) if execution.storage_id else None
    )
    places: list[dict[str, Any]] = [
        {
            "where": "primary",
            "status": execution.status,
            "storage_id": storage.id if storage else None,
        }
    ]
    rows = await session.execute(
        select(BackupCopy, OffsiteTarget.name)
        .join(OffsiteTarget, OffsiteTarget.id == BackupCopy.target_id)
        .where(BackupCopy.execution_id == execution.id)
        .order_by(OffsiteTarget.name)
    )
    for copy, name in rows:
        places.append(
            {
                "where": "offsite",
                "status": copy.status,
                "target_id": copy.target_id,
                "target_name": name,
                "copied_at": copy.copied_at,
                "error_message": copy.error_message,
                "snapshot_ids": copy.snapshot_ids,
            }
        )
    return places


def _pruned_how(execution: BackupExecution) -> str:
    """How a pruned backup left its primary storage (retention, or its storage's deletion)."""
    if execution.error_message:
        return f"({execution.error_message})"
    return "by the backup policy's retention"


def _copy_states(places: Sequence[dict[str, Any]]) -> str:
    """The offsite copies of a backup as a refusal tells them ("none" when there are none)."""
    said = []
    for place in places:
        state = place["status"]
        if state == CopyStatus.EXPIRED:
            state = "expired (removed by offsite retention)"
        elif state == CopyStatus.FAILED and place["error_message"]:
            state = f"failed: {place['error_message']}"
        said.append(f"at {place['target_name']} ({place['target_id']}): {state}")
    return "; ".join(said) if said else "none was ever made"


async def copy_to_read(
    session: AsyncSession,
    application: Application,
    execution: BackupExecution,
    source: uuid.UUID | str,
) -> uuid.UUID | None:
    """The target whose copy a restore reads (None: the primary), from what it asked.

    ``source``: ``"primary"``, ``"offsite"`` (the backup's latest finished copy) or a target's
    id. Only a copy marked ``copied`` is read (by restic on the worker for a local
    application; for a Kubernetes one by its movers, which reach the target themselves). A
    backup the primary's retention pruned is read from its copy alone: refused from the
    primary, and refused when no copy is left (409s naming why).
    """
    pruned = execution.status == RunStatus.PRUNED
    if pruned:
        before = (execution.metadata_ or {}).get("status_before_prune", RunStatus.SUCCEEDED)
        if before != RunStatus.SUCCEEDED:
            raise Conflict(
                f"the backup had {before} before it was pruned; only completed backups can be"
                " restored",
                backup_status=execution.status,
            )
    if source == "primary":
        if pruned:
            places = (await copies_of(session, execution))[1:]
            copied = [p for p in places if p["status"] == CopyStatus.COPIED]
            states = _copy_states(places)
            hint = (
                'its offsite copy is still there: ask for "source": "offsite" (CLI: --from offsite)'
                if copied
                else f"it has no offsite copy to restore from (offsite copies: {states})"
            )
            raise Conflict(
                f"the backup was pruned from its primary storage {_pruned_how(execution)}; {hint}",
                kind="backup-pruned-on-primary",
                title="Backup pruned on the primary storage",
                backup_status=execution.status,
                offsite_copies=len(copied),
            )
        return None
    query = select(BackupCopy).where(
        BackupCopy.execution_id == execution.id, BackupCopy.status == CopyStatus.COPIED
    )
    if isinstance(source, uuid.UUID):
        await get(session, application.workspace_id, source)
        query = query.where(BackupCopy.target_id == source)
    copy = await session.scalar(query.order_by(BackupCopy.copied_at.desc()).limit(1))
    if copy is None and pruned:
        places = (await copies_of(session, execution))[1:]
        if isinstance(source, uuid.UUID):
            places = [p for p in places if p["target_id"] == source]
        there = "at that target " if isinstance(source, uuid.UUID) else ""
        raise Conflict(
            f"the backup was pruned from its primary storage {_pruned_how(execution)} and has"
            f" no finished offsite copy {there}to restore from (offsite copies:"
            f" {_copy_states(places)}); nothing holds it any more",
            kind="backup-pruned-without-offsite-copy",
            title="Backup pruned, no offsite copy",
            backup_status=execution.status,
        )
    if copy is None:
        raise Conflict(
            "the backup has no finished offsite copy there to restore from"
            " (GET …/backups/{id}/copies shows where it lives)",
            kind="offsite-copy-not-copied",
            title="No offsite copy",
        )
    return copy.target_id


@dataclass(frozen=True)
class CopiedBackup:
    """The backup a scheduled drill from an offsite copy reads, and why that one."""

    execution: BackupExecution
    target_id: uuid.UUID
    why: str


async def newest_copied(
    session: AsyncSession, application: Application, target_id: uuid.UUID | None
) -> CopiedBackup | None:
    """The newest backup with a finished copy at ``target_id`` (None: at any target; then its
    latest finished copy, as ``copy_to_read`` reads for ``offsite``). A copy lags its backup,
    so newer backups not copied yet are passed over (``why`` counts them); one the primary's
    retention pruned counts, its copy outlives it. None: no backup has such a copy."""
    readable = or_(
        BackupExecution.status == RunStatus.SUCCEEDED,
        and_(
            BackupExecution.status == RunStatus.PRUNED,
            func.coalesce(
                BackupExecution.metadata_["status_before_prune"].astext, RunStatus.SUCCEEDED
            )
            == RunStatus.SUCCEEDED,
        ),
    )
    query = (
        select(BackupExecution, BackupCopy, OffsiteTarget.name)
        .join(BackupCopy, BackupCopy.execution_id == BackupExecution.id)
        .join(OffsiteTarget, OffsiteTarget.id == BackupCopy.target_id)
        .where(
            BackupExecution.application_id == application.id,
            BackupCopy.status == CopyStatus.COPIED,
            readable,
        )
    )
    if target_id is not None:
        query = query.where(BackupCopy.target_id == target_id)
    found = (
        await session.execute(
            query.order_by(BackupExecution.completed_at.desc(), BackupCopy.copied_at.desc())
        )
    ).first()
    if found is None:
        return None
    execution, copy, name = found
    newer = await session.scalar(
        select(func.count()).where(
            BackupExecution.application_id == application.id,
            BackupExecution.status == RunStatus.SUCCEEDED,
            BackupExecution.completed_at > execution.completed_at,
        )
    )
    there = "at that target" if target_id is not None else "at any target"
    assert copy.copied_at is not None  # set with the status copied
    copied = f"copied to {name} ({copy.target_id}) at {copy.copied_at.isoformat('T', 'seconds')}"
    why = (
        f"the newest successful backup, {copied}"
        if not newer
        else f"the newest backup with a finished offsite copy {there}, {copied}; {newer} newer"
        f" backup(s) not copied {there} yet"
    )
    return CopiedBackup(execution, copy.target_id, why)


async def restorable_from(
    session: AsyncSession, executions: Sequence[BackupExecution]
) -> dict[uuid.UUID, tuple[list[dict[str, Any]], list[str]]]:
    """Each backup's offsite copies (target, state, when copied) and the ``source`` values a
    restore of it accepts now: ``primary`` while its primary storage holds it, and the id of
    each target holding a finished copy (a backup the primary's retention pruned keeps only
    those)."""
    found: dict[uuid.UUID, list[dict[str, Any]]] = {e.id: [] for e in executions}
    if found:
        rows = await session.execute(
            select(BackupCopy, OffsiteTarget.name)
            .join(OffsiteTarget, OffsiteTarget.id == BackupCopy.target_id)
            .where(BackupCopy.execution_id.in_(list(found)))
            .order_by(OffsiteTarget.name)
        )
        for copy, name in rows:
            found[copy.execution_id].append(
                {
                    "target_id": copy.target_id,
                    "target_name": name,
                    "status": copy.status,
                    "copied_at": copy.copied_at,
                }
            )
    answer = {}
    for execution in executions:
        copies = found[execution.id]
        before = (execution.metadata_ or {}).get("status_before_prune", RunStatus.SUCCEEDED)
        sources: list[str] = []
        if execution.status == RunStatus.SUCCEEDED:
            sources.append("primary")
        readable = execution.status == RunStatus.SUCCEEDED or (
            execution.status == RunStatus.PRUNED and before == RunStatus.SUCCEEDED
        )
        if readable:
            sources += [str(c["target_id"]) for c in copies if c["status"] == CopyStatus.COPIED]
        answer[execution.id] = (copies, sources)
    return answer


@dataclass(frozen=True)
class OffsiteLag:
    """How far an application's offsite copies trail its backups, at its policy's target.

    ``behind_since`` is when the oldest backup newer than the newest copied one completed
    (None: the newest backup is copied, or none is waiting); the lag is the time since then,
    so a copy that is merely running late shows a growing lag, and a daily backup copied
    minutes after it completes shows none.
    """

    target_id: uuid.UUID
    last_copied_backup_at: datetime | None
    last_copied_at: datetime | None
    behind_since: datetime | None
    copies_pending: int
    copies_failed: int
    # when the oldest waiting copy is past its allowance (core/offsite_overdue.py); None:
    # none waits
    overdue_from: datetime | None = None

    def lag_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.behind_since).total_seconds()) if self.behind_since else 0.0

    def overdue_since(self, now: datetime) -> datetime | None:
        """The moment the copies became overdue, if they are at ``now``."""
        late = self.overdue_from is not None and now >= self.overdue_from
        return self.overdue_from if late else None


async def offsite_lags(
    session: AsyncSession,
    settings: Settings,
    application_ids: Sequence[uuid.UUID] | None = None,
) -> dict[uuid.UUID, OffsiteLag]:
    """The offsite lag of each application whose policy names a target (all when None), and
    when it is overdue by the backup schedule's grace (``core/offsite_overdue.py``)."""
    policies = select(
        BackupPolicy.application_id,
        BackupPolicy.offsite_target_id,
        BackupPolicy.schedule,
        BackupPolicy.timezone,
    ).where(BackupPolicy.offsite_target_id.is_not(None))
    if application_ids is not None:
        policies = policies.where(BackupPolicy.application_id.in_(application_ids))
    targets, fires = {}, {}
    for app, target, schedule, zone in await session.execute(policies):
        if target:
            targets[app] = target
            fires[app] = overdue.fires_of(schedule, ZoneInfo(zone))
    if not targets:
        return {}
    copies = (
        select(BackupExecution.application_id)
        .join(BackupCopy, BackupCopy.execution_id == BackupExecution.id)
        .join(
            BackupPolicy,
            (BackupPolicy.application_id == BackupExecution.application_id)
            & (BackupPolicy.offsite_target_id == BackupCopy.target_id),
        )
        .where(BackupExecution.application_id.in_(list(targets)))
    )
    newest: dict[uuid.UUID, tuple[datetime, datetime]] = {
        app: (completed, copied)
        for app, completed, copied in await session.execute(
            copies.add_columns(
                func.max(BackupExecution.completed_at), func.max(BackupCopy.copied_at)
            )
            .where(BackupCopy.status == CopyStatus.COPIED)
            .group_by(BackupExecution.application_id)
        )
    }
    waiting: dict[uuid.UUID, list[tuple[datetime, str]]] = {}
    for app, completed, status in await session.execute(
        copies.add_columns(BackupExecution.completed_at, BackupCopy.status).where(
            BackupExecution.status == RunStatus.SUCCEEDED,
            BackupCopy.status.in_([CopyStatus.PENDING, CopyStatus.FAILED]),
        )
    ):
        last = newest.get(app)
        if completed is not None and (last is None or completed > last[0]):
            waiting.setdefault(app, []).append((completed, status))
    lags = {}
    grace = overdue.grace_of(settings)
    for app, target in targets.items():
        behind = waiting.get(app, [])
        last = newest.get(app)
        since = min((completed for completed, _ in behind), default=None)
        lags[app] = OffsiteLag(
            target,
            last[0] if last else None,
            last[1] if last else None,
            since,
            sum(status == CopyStatus.PENDING for _, status in behind),
            sum(status == CopyStatus.FAILED for _, status in behind),
            copy_deadline(fires[app], since, grace),
        )
    return lags
