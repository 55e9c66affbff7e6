"""Which storages and workspace quotas became nearly full (``core/nearly_full.py``), told to
the workspaces' channels once per period.

A period begins when a check (the storage's capacity, the file system under it, the
workspace's quota) finds it past its threshold and ends when a later look finds it back under.
Both are written to the workspace's audit log (``storage.nearly_full`` once it was told,
``storage.nearly_full_ended``): the log is what was told, as for overdue notices
(``services/overdue.py``), so a retried step tells nothing twice. Storages are judged on
their last usage reading (the usage refresh, every few minutes) while active.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import nearly_full
from core.nearly_full import Check, Fullness
from core.states import StorageStatus
from core.units import GIB
from db import audit
from db.models import AuditEvent, BackupStorage, Workspace

NOTICE_ACTOR = audit.Actor(label="system:storage-notices")
TOLD = "storage.nearly_full"
ENDED = "storage.nearly_full_ended"


@dataclass(frozen=True)
class _Judged:
    """One check of a storage (or a workspace's quota) on the last readings: nearly full
    (``fullness`` set) or not (None)."""

    workspace_id: uuid.UUID
    target_type: Literal["backup_storage", "workspace"]
    target_id: uuid.UUID
    name: str
    check: Check
    fullness: Fullness | None


@dataclass(frozen=True)
class FullNotice(_Judged):
    """A nearly-full period of a storage (or a workspace's quota) began (``fullness`` set)
    or ended (None). ``period`` counts the periods of that target and check told before, so
    the notice is named the same however often a retried step finds it."""

    period: int

    @property
    def key(self) -> str:
        return f"{self.target_id}-{self.check}-{self.period}"

    @property
    def storage_id(self) -> uuid.UUID | None:
        return self.target_id if self.target_type == "backup_storage" else None

    def message(self) -> str:
        """What a person reads: how full, of what."""
        full = self.fullness
        assert full is not None
        used, limit = f"{full.used / GIB:.2f} GiB", f"{full.limit / GIB:.2f} GiB"
        if full.check == "storage":
            return (
                f"storage {self.name} holds {used} of its {full.limit // GIB} GB"
                f" ({full.share:.0%}); backups are refused when the next one would not fit"
            )
        if full.check == "filesystem":
            free = f"{(full.limit - full.used) / GIB:.2f} GiB"
            return (
                f"the file system under storage {self.name} has {free} free of {limit}"
                f" ({1 - full.share:.0%}); it is shared with other data"
            )
        return (
            f"the storages of workspace {self.name} hold {used} of its {full.limit // GIB} GB"
            f" backup quota ({full.share:.0%})"
        )


async def _judged(session: AsyncSession) -> list[_Judged]:
    """Every active storage's two checks and every workspace's quota, on the last readings."""
    found: list[_Judged] = []
    storages = await session.scalars(
        select(BackupStorage).where(
            BackupStorage.status == StorageStatus.ACTIVE, BackupStorage.usage_read_at.is_not(None)
        )
    )
    for s in storages:
        checks: tuple[tuple[Check, Fullness | None], ...] = (
            ("storage", nearly_full.storage(s.used_bytes or 0, s.capacity_gb * GIB)),
            ("filesystem", nearly_full.filesystem(s.available_bytes, s.filesystem_total_bytes)),
        )
        for check, full in checks:
            found.append(_Judged(s.workspace_id, "backup_storage", s.id, s.name, check, full))
    quotas = await session.execute(
        select(
            Workspace.id,
            Workspace.name,
            Workspace.backup_quota_gb,
            func.sum(BackupStorage.used_bytes),
        )
        .join(BackupStorage, BackupStorage.workspace_id == Workspace.id)
        .group_by(Workspace.id)
    )
    for ws_id, ws_name, quota_gb, used in quotas:
        full = nearly_full.quota(int(used or 0), quota_gb * GIB)
        found.append(_Judged(ws_id, "workspace", ws_id, ws_name, "quota", full))
    return found


async def _told(
    session: AsyncSession, target_ids: Collection[uuid.UUID]
) -> dict[tuple[str, str], tuple[str, int]]:
    """Per (target id, check): the latest of the two actions and how many periods were told."""
    found: dict[tuple[str, str], tuple[str, int]] = {}
    if not target_ids:
        return found
    rows = await session.execute(
        select(AuditEvent.target_id, AuditEvent.action, AuditEvent.details)
        .where(
            AuditEvent.action.in_([TOLD, ENDED]),
            AuditEvent.target_id.in_([str(i) for i in target_ids]),
        )
        .order_by(AuditEvent.occurred_at)
    )
    for target_id, action, details in rows:
        key = (target_id, details["check"])
        _, periods = found.get(key, (ENDED, 0))
        found[key] = (action, periods + (action == TOLD))
    return found


async def notices_due(session: AsyncSession) -> list[FullNotice]:
    """The periods that began and were not told yet, and the told ones that ended."""
    judged = await _judged(session)
    told = await _told(session, {j.target_id for j in judged})
    due = []
    for j in judged:
        latest, periods = told.get((str(j.target_id), j.check), (ENDED, 0))
        if (j.fullness is not None) == (latest == TOLD):
            continue  # told and still full, or not full and nothing told
        due.append(
            FullNotice(
                j.workspace_id, j.target_type, j.target_id, j.name, j.check, j.fullness, periods
            )
        )
    return due


def record(session: AsyncSession, notice: FullNotice) -> None:
    """Writes that the period was told (or ended) in the workspace's audit log."""
    details: dict[str, object] = {"check": notice.check, "name": notice.name}
    if notice.fullness is not None:
        details.update(used_bytes=notice.fullness.used, limit_bytes=notice.fullness.limit)
    audit.record(
        session,
        NOTICE_ACTOR,
        TOLD if notice.fullness is not None else ENDED,
        notice.target_type,
        notice.target_id,
        workspace_id=notice.workspace_id,
        details=details,
    )
