"""Offsite retention: copies whose backup the primary's retention removed are forgotten at
the target, with the maintenance credentials, once older than the target's protection period.

The only code that opens a target's maintenance credentials. A copy younger than
``protection_days`` (counted from when it was copied) is never removed, whatever the policy
keeps: an attacker who shortens a policy cannot empty the offsite history with it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import to_application_error
from activities.support import heartbeating
from adapters.restic import Restic, ResticError
from adapters.restic_remote import OffsiteRestic
from core.settings import Settings
from core.states import LIVE, CopyStatus, RunStatus
from db import audit
from db.models import (
    Application,
    BackupCopy,
    BackupExecution,
    BackupRestore,
    OffsiteTarget,
    RestoreDrill,
)
from repository.offsite import maintenance_remote

ACTOR = audit.Actor(label="system:offsite-retention")


class OffsiteRetentionActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, restic: Restic
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.offsite = OffsiteRestic(restic)

    @activity.defn
    async def list_offsite_targets(self) -> list[str]:
        """Targets holding copies and the maintenance credentials retention needs."""
        async with self.sessions() as session:
            ids = await session.scalars(
                select(OffsiteTarget.id)
                .join(BackupCopy, BackupCopy.target_id == OffsiteTarget.id)
                .where(OffsiteTarget.maintenance_sealed.is_not(None))
                .distinct()
            )
            return [str(i) for i in ids]

    @activity.defn
    async def apply_offsite_retention(self, target_id: str) -> list[str]:
        """Forgets and prunes the expired copies at one target; the backups whose copy went."""
        async with self.sessions() as session:
            target = await session.get(OffsiteTarget, uuid.UUID(target_id))
            if target is None:
                return []
            protected_since = datetime.now(UTC) - timedelta(days=target.protection_days)
            rows = (
                await session.execute(
                    select(BackupCopy, BackupExecution.application_id)
                    .join(BackupExecution, BackupExecution.id == BackupCopy.execution_id)
                    .where(
                        BackupCopy.target_id == target.id,
                        BackupCopy.status == CopyStatus.COPIED,
                        BackupCopy.copied_at < protected_since,
                        BackupExecution.status == RunStatus.PRUNED,
                        # a restore or drill reading the copy (its primary pruned) keeps it
                        ~exists().where(
                            BackupRestore.backup_execution_id == BackupCopy.execution_id,
                            BackupRestore.status.in_(LIVE),
                        ),
                        ~exists().where(
                            RestoreDrill.backup_execution_id == BackupCopy.execution_id,
                            RestoreDrill.status.in_(LIVE),
                        ),
                    )
                    .with_for_update(of=BackupCopy)
                )
            ).all()
            by_application: dict[uuid.UUID, list[BackupCopy]] = {}
            for copy, application_id in rows:
                by_application.setdefault(application_id, []).append(copy)
            expired: list[str] = []
            for application_id, copies in by_application.items():
                application = await session.get(Application, application_id)
                assert application is not None
                remote = await maintenance_remote(session, self.settings, application, target)
                if remote is None:
                    return []
                ids = [i for c in copies for i in (c.snapshot_ids or [])]
                try:
                    await heartbeating(asyncio.to_thread(self.offsite.forget, remote, ids))
                except ResticError as exc:
                    raise to_application_error(exc, "offsite retention") from None
                for copy in copies:
                    copy.status = CopyStatus.EXPIRED
                    expired.append(str(copy.execution_id))
                    audit.record(
                        session,
                        ACTOR,
                        "backup.offsite_copy.expired",
                        "backup_execution",
                        copy.execution_id,
                        workspace_id=target.workspace_id,
                        details={"target_id": target_id, "snapshots": copy.snapshot_ids},
                    )
            await session.commit()
            return expired

    def control(self) -> list[Any]:
        return [self.list_offsite_targets]

    def data(self) -> list[Any]:
        return [self.apply_offsite_retention]
