"""Retention: the backups a policy's rule does not keep are forgotten and pruned.

Runs from the daily sweep over every policy (a policy whose schedule stopped still expires
its old backups); backup runs started before issue 13 call it after their backup. What is
kept is decided by ``services.policies.retention_plan``, the very plan the API's retention
preview shows; the newest successful backup and protected backups are never pruned.

Dumps are forgotten by their execution tag only, which continuous archiving's snapshots
(WAL shipments, base backups) never carry: the dump rule cannot touch them. They are pruned
by the policy's ``archive_window_days`` instead (``adapters/pg_archive/prune.py``). A dump
uploaded to restore from (docs/restore-from-upload.md) is forgotten once its restore ended.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import to_application_error
from activities.support import heartbeating, with_progress
from adapters.pg_archive.prune import forget_outside
from adapters.restic import Repository, Restic, ResticError
from core.restore_details import RestoreDetails, RestoreUpload
from core.settings import Settings
from core.states import FINISHED, RunStatus
from db import audit
from db.models import Application, BackupExecution, BackupPolicy, BackupRestore, BackupStorage
from repository import names
from repository.store import open_repository
from services.policies import policy_rule, retention_plan

ACTOR = audit.Actor(label="system:retention")


class RetentionActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, restic: Restic
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.restic = restic

    @activity.defn
    async def list_retained_policies(self) -> list[str]:
        """Policies that have ended backups or archive continuously, the only ones retention
        can act on."""
        async with self.sessions() as session:
            ids = await session.scalars(
                select(BackupPolicy.id)
                .outerjoin(
                    BackupExecution, BackupExecution.application_id == BackupPolicy.application_id
                )
                .where(
                    or_(
                        BackupExecution.status.in_(FINISHED),
                        BackupPolicy.continuous_archiving.is_(True),
                    )
                )
                .distinct()
            )
            return [str(i) for i in ids]

    @activity.defn
    async def apply_retention(self, policy_id: str) -> list[str]:
        """Forgets the backups the rule does not keep, marks their rows ``pruned``, forgets
        the archive snapshots no moment of the recovery window needs, prunes.

        The rows are locked while their snapshots are forgotten: a backup protected in the
        meantime is skipped, and a protect request waits and then finds the backup pruned.
        """
        async with self.sessions() as session:
            policy = await session.get(BackupPolicy, uuid.UUID(policy_id))
            if policy is None:
                return []
            application = await session.get(Application, policy.application_id)
            storage = await session.get(BackupStorage, policy.storage_id)
            assert application is not None and storage is not None
            rule = policy_rule(policy)
            verdicts = await retention_plan(
                session, policy, rule, ZoneInfo(policy.timezone), datetime.now(UTC)
            )
            doomed = {uuid.UUID(v.backup.id): v.reasons for v in verdicts if not v.keep}
            repo = await open_repository(session, self.settings, application, storage)
            rows = (
                await session.scalars(
                    select(BackupExecution)
                    .where(
                        BackupExecution.id.in_(doomed),
                        BackupExecution.status.in_(FINISHED),
                        BackupExecution.protected.is_(False),
                    )
                    .with_for_update()
                )
            ).all()
            expired = [str(row.id) for row in rows]
            uploads = await _ended_uploads(session, policy)
            window_start = datetime.now(UTC) - timedelta(days=policy.archive_window_days)
            try:
                await heartbeating(asyncio.to_thread(self._forget, repo, expired))
                await heartbeating(
                    asyncio.to_thread(self.restic.forget, repo, [u.snapshot_id for _, u in uploads])
                )
                outside = await heartbeating(
                    asyncio.to_thread(
                        forget_outside,
                        self.restic,
                        repo,
                        window_start,
                        archiving=policy.continuous_archiving,
                    )
                )
            except ResticError as exc:
                raise to_application_error(exc) from None
            if outside:
                audit.record(
                    session,
                    ACTOR,
                    "archive.prune",
                    "backup_policy",
                    policy.id,
                    workspace_id=application.workspace_id,
                    details={
                        "snapshots": len(outside),
                        "window_start": window_start.isoformat(),
                        "archive_window_days": policy.archive_window_days,
                        "continuous_archiving": policy.continuous_archiving,
                    },
                )
            for restore, upload in uploads:
                details = RestoreDetails.from_dict(restore.details)
                restore.details = replace(details, upload=replace(upload, forgotten=True)).to_dict()
                audit.record(
                    session,
                    ACTOR,
                    "restore.upload_forgotten",
                    "backup_restore",
                    restore.id,
                    workspace_id=application.workspace_id,
                    details={"snapshot_id": upload.snapshot_id, "bytes": upload.bytes},
                )
            for row in rows:
                row.metadata_ = {**(row.metadata_ or {}), "status_before_prune": row.status}
                row.status = RunStatus.PRUNED
            if rows:
                audit.record(
                    session,
                    ACTOR,
                    "backup.prune",
                    "backup_policy",
                    policy.id,
                    workspace_id=application.workspace_id,
                    details={
                        "executions": expired,
                        "rule": rule.describe(),
                        "timezone": policy.timezone,
                        "reasons": {str(r.id): list(doomed[r.id]) for r in rows},
                    },
                )
            await session.commit()
        if not expired and not outside and not uploads and activity.info().attempt == 1:
            return []  # a retry prunes again: its first attempt may have failed there
        try:
            await with_progress(lambda _progress: self.restic.prune(repo))
        except ResticError as exc:
            raise to_application_error(exc) from None
        return expired

    def _forget(self, repo: Repository, executions: list[str]) -> None:
        """By execution tag alone: after a catalog import the application may have a new id,
        while its older snapshots still carry the one they were made under."""
        for execution in executions:
            snapshots = self.restic.snapshots(repo, [names.execution_tag(execution)])
            if snapshots:
                self.restic.forget(repo, [s.id for s in snapshots])

    def data(self) -> list[Any]:
        return [self.list_retained_policies, self.apply_retention]


async def _ended_uploads(
    session: AsyncSession, policy: BackupPolicy
) -> list[tuple[BackupRestore, RestoreUpload]]:
    """The application's uploaded dumps in this policy's storage whose restore has ended and
    whose snapshot is still there: nothing will read them again (a failed restore is asked
    again with a new upload)."""
    restores = await session.scalars(
        select(BackupRestore)
        .where(
            BackupRestore.application_id == policy.application_id,
            BackupRestore.status.in_(FINISHED),
            BackupRestore.details.has_key("upload"),
        )
        .with_for_update()
    )
    found = []
    for restore in restores:
        upload = RestoreDetails.from_dict(restore.details).upload
        if (
            upload is not None
            and not upload.forgotten
            and upload.storage_id == str(policy.storage_id)
        ):
            found.append((restore, upload))
    return found
