"""The steps of a backup's offsite copy: which target, the copy itself, its row.

The copy reads the primary repository and writes the application's repository at the
target with the target's everyday credentials only (append only); the maintenance
credentials are never opened here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import fatal, to_application_error
from activities.support import execution_repository, read_metadata, with_progress
from adapters.restic import Repository, Restic, ResticError
from adapters.restic_remote import CopyProgress, OffsiteRestic, Remote
from contracts.copy import CopyJob, CopyOutcome
from core import crypto, metrics
from core.settings import Settings
from core.states import CopyStatus, RunStatus
from db import audit
from db.models import Application, BackupCopy, BackupExecution, BackupPolicy, OffsiteTarget
from repository import names
from repository.offsite import everyday_remote

ACTOR = audit.Actor(label="system:offsite-copy")
T = TypeVar("T")


class CopyActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, restic: Restic
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.restic = restic
        self.offsite = OffsiteRestic(restic)

    @activity.defn
    async def offsite_target_of(self, execution_id: str) -> str | None:
        """The target the backup's policy copies to, if any (asked once it is recorded)."""
        async with self.sessions() as session:
            execution = await session.get(BackupExecution, uuid.UUID(execution_id))
            if execution is None or execution.policy_id is None:
                return None
            policy = await session.get(BackupPolicy, execution.policy_id)
            target = policy.offsite_target_id if policy is not None else None
            return str(target) if target is not None else None

    @activity.defn
    async def start_copy(self, job: CopyJob) -> None:
        """The backup shows its copy as pending from now on."""
        async with self.sessions() as session:
            await session.execute(
                insert(BackupCopy)
                .values(
                    execution_id=uuid.UUID(job.execution_id),
                    target_id=uuid.UUID(job.target_id),
                    status=CopyStatus.PENDING,
                    workflow_id=activity.info().workflow_id,
                )
                .on_conflict_do_nothing(index_elements=["execution_id", "target_id"])
            )
            await session.commit()

    @activity.defn
    async def copy_to_offsite(self, job: CopyJob) -> list[str]:
        """Copies the backup's snapshots; the ids they have at the target.

        Repeated after a kill, restic skips the snapshots already there and the blobs the
        target already indexes (packs the killed restic uploaded but had not indexed yet are
        sent again), and the killed one's stale lock is removed; the count is checked against
        the primary before it ends.
        """
        primary, remote, limit = await read_metadata(self.sessions, lambda s: self._open(s, job))
        tags = [names.execution_tag(job.execution_id)]

        def work(tick: Callable[[CopyProgress | None], None]) -> list[str]:
            if not self.offsite.init_copy_of(remote, primary):
                self.offsite.unlock(remote)  # a copy killed before this one left its lock
            self.offsite.copy(remote, primary, tags, limit_kib=limit, tick=tick)
            copied = self.offsite.snapshot_ids(remote, tags)
            expected = len(self.restic.snapshots(primary, tags))
            if len(copied) < expected:
                raise ResticError(
                    f"the target holds {len(copied)} of the backup's {expected} snapshots",
                    retryable=True,
                )
            return copied

        try:
            return await with_progress(work)
        except ResticError as exc:
            metrics.OFFSITE_COPY_ATTEMPTS_FAILED.inc()
            raise to_application_error(exc, "offsite copy") from None

    async def _open(
        self, session: AsyncSession, job: CopyJob
    ) -> tuple[Repository, Remote, int | None]:
        execution = await session.get(BackupExecution, uuid.UUID(job.execution_id))
        target = await session.get(OffsiteTarget, uuid.UUID(job.target_id))
        if execution is None or target is None:
            raise fatal("the backup or its offsite target was deleted", "CopyGone")
        if execution.status != RunStatus.SUCCEEDED:
            raise fatal(f"the backup is {execution.status}, not copied", "NotCopyable")
        application = await session.get(Application, execution.application_id)
        assert application is not None
        _, primary = await execution_repository(session, self.settings, execution, application)
        try:
            remote = await everyday_remote(session, self.settings, application, target)
        except crypto.CryptoError as exc:
            raise fatal(str(exc), "SecretsUnavailable") from None
        return primary, remote, target.upload_limit_kib

    @activity.defn
    async def finish_copy(self, outcome: CopyOutcome) -> None:
        """Records how the copy ended (first ``copied`` wins over a late failure)."""
        job = outcome.job
        async with self.sessions() as session:
            row = await session.get(
                BackupCopy, (uuid.UUID(job.execution_id), uuid.UUID(job.target_id))
            )
            if row is None or row.status == CopyStatus.COPIED:
                return
            row.status = outcome.status
            row.error_message = outcome.message
            row.snapshot_ids = outcome.snapshot_ids or None
            row.copied_at = datetime.now(UTC) if outcome.status == CopyStatus.COPIED else None
            target = await session.get(OffsiteTarget, row.target_id)
            audit.record(
                session,
                ACTOR,
                f"backup.offsite_copy.{outcome.status}",
                "backup_execution",
                job.execution_id,
                workspace_id=target.workspace_id if target else None,
                details={"target_id": job.target_id, "message": outcome.message},
            )
            await session.commit()
        metrics.OFFSITE_COPIES_FINISHED.labels(outcome.status).inc()

    def control(self) -> list[Any]:
        return [self.offsite_target_of, self.start_copy, self.finish_copy]

    def data(self) -> list[Any]:
        return [self.copy_to_offsite]
