"""Retention: backups older than their policy's ``retention_days`` are forgotten and pruned.

Runs after every backup and from a daily sweep (a policy whose schedule stopped still
expires its old backups). The newest successful backup of an application is never pruned.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.support import restic_failure, with_progress
from adapters.restic import Restic, ResticError
from core.settings import Settings
from db import audit
from db.models import Application, BackupExecution, BackupPolicy, BackupStorage
from db.runs import newest_success
from repository.store import open_repository

ACTOR = audit.Actor(label="system:retention")
ENDED = ("succeeded", "failed", "cancelled")


class RetentionActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, restic: Restic
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.restic = restic

    @activity.defn
    async def list_retained_policies(self) -> list[str]:
        """Policies that have ended backups, the only ones retention can act on."""
        async with self.sessions() as session:
            ids = await session.scalars(
                select(BackupPolicy.id)
                .join(
                    BackupExecution, BackupExecution.application_id == BackupPolicy.application_id
                )
                .where(BackupExecution.status.in_(ENDED))
                .distinct()
            )
            return [str(i) for i in ids]

    @activity.defn
    async def apply_retention(self, policy_id: str) -> list[str]:
        """Forgets the policy's expired backups in restic, prunes, marks the rows ``pruned``."""
        async with self.sessions() as session:
            policy = await session.get(BackupPolicy, uuid.UUID(policy_id))
            if policy is None:
                return []
            application = await session.get(Application, policy.application_id)
            storage = await session.get(BackupStorage, policy.storage_id)
            assert application is not None and storage is not None
            cutoff = datetime.now(UTC) - timedelta(days=policy.retention_days or 30)
            last = await newest_success(session, policy.application_id)
            newest = last.id if last else None
            expired = [
                str(e)
                for e in await session.scalars(
                    select(BackupExecution.id).where(
                        # the application's whole history in this storage, also backups
                        # made under an earlier policy
                        BackupExecution.application_id == policy.application_id,
                        BackupExecution.storage_id == policy.storage_id,
                        BackupExecution.status.in_(ENDED),
                        BackupExecution.started_at < cutoff,
                        BackupExecution.id != newest,
                    )
                )
            ]
            if not expired:
                return []
            repo = await open_repository(session, self.settings, application, storage)
        try:
            for old in expired:
                tags = [f"application={application.id}", f"execution={old}"]
                snapshots = await asyncio.to_thread(self.restic.snapshots, repo, tags)
                await asyncio.to_thread(self.restic.forget, repo, [s.id for s in snapshots])
            await with_progress(lambda _progress: self.restic.prune(repo))
        except ResticError as exc:
            raise restic_failure(exc) from None
        async with self.sessions() as session:
            for old in expired:
                row = await session.get(BackupExecution, uuid.UUID(old))
                if row is not None and row.status != "pruned":
                    row.metadata_ = {**(row.metadata_ or {}), "status_before_prune": row.status}
                    row.status = "pruned"
            audit.record(
                session, ACTOR, "backup.prune", "backup_policy", policy.id,
                workspace_id=application.workspace_id,
                details={"executions": expired, "retention_days": policy.retention_days},
            )  # fmt: skip
            await session.commit()
        return expired

    def data(self) -> list[Any]:
        return [self.list_retained_policies, self.apply_retention]
