"""The steps of a backup: begin, quota check, snapshot, dump, upload, record, prune, fail.

Data steps run restic and pg_dump in a thread while the activity heartbeats their
progress (bytes done / total). Every step is safe to retry: uploads look for the
snapshot tagged with their execution and part before making one.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.support import fatal, open_platform, restic_failure, with_progress
from adapters import pg_dump
from adapters.restic import Repository, Restic, ResticError
from adapters.storage_backend import BackendError, StorageBackend, folder_usage
from core import crypto, metrics
from core.settings import Settings
from db import audit
from db.models import (
    Application,
    BackupExecution,
    BackupPolicy,
    BackupRestore,
    BackupStorage,
)
from repository.store import open_repository
from workflows.backup_request import BackupRequest

GIB = 1024**3
ACTOR = audit.Actor(label="system:backup-workflow")


@dataclass
class BeginBackup:
    request: BackupRequest
    workflow_id: str
    run_id: str
    schedule_id: str | None = None


@dataclass
class ExecutionRef:
    execution_id: str
    volumes: list[str]
    include_database: bool


@dataclass
class SnapshotStep:
    consistent: bool
    note: str
    volumes: dict[str, str]  # volume name -> folder the upload reads


@dataclass
class UploadJob:
    execution_id: str
    volume: str
    path: str
    backup_type: str


@dataclass
class PartResult:
    part: str
    snapshot_id: str
    bytes_processed: int
    data_added: int
    files: int
    reused: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecordJob:
    execution_id: str
    parts: list[PartResult]
    snapshot: SnapshotStep
    started_at: str


@dataclass
class FailJob:
    execution_id: str
    message: str
    status: str = "failed"  # failed | cancelled


@dataclass
class Context:
    execution: BackupExecution
    policy: BackupPolicy
    application: Application
    storage: BackupStorage
    repo: Repository


def _tags(ctx: Context, part: str) -> list[str]:
    return [f"application={ctx.application.id}", f"execution={ctx.execution.id}", f"part={part}"]


def _human(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


class BackupActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        restic: Restic,
        backend: StorageBackend,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.restic = restic
        self.backend = backend
        self._initialised: set[Path] = set()

    # -- shared -------------------------------------------------------------------------

    async def _context(self, session: AsyncSession, execution_id: str) -> Context:
        execution = await session.get(BackupExecution, uuid.UUID(execution_id))
        if execution is None:
            raise fatal(f"backup execution {execution_id} does not exist", "NotFound")
        policy = await session.get(BackupPolicy, execution.policy_id)
        assert policy is not None  # executions cascade with their policy
        application = await session.get(Application, policy.application_id)
        storage = await session.get(BackupStorage, policy.storage_id)
        assert application is not None and storage is not None
        try:
            repo = await open_repository(session, self.settings, application, storage)
        except crypto.CryptoError as exc:
            raise fatal(str(exc), "SecretsUnavailable") from None
        return Context(execution, policy, application, storage, repo)

    async def _ensure_repository(self, repo: Repository) -> None:
        """Creates the repository on first use; once per worker process is enough."""
        if repo.path not in self._initialised:
            await asyncio.to_thread(self.restic.init, repo)
            self._initialised.add(repo.path)

    async def _existing(self, ctx: Context, part: str) -> PartResult | None:
        """The snapshot an earlier attempt already made for this part, if any.

        Only a retry can find one (a first attempt has no predecessor); it also clears the
        lock a killed attempt left behind.
        """
        if activity.info().attempt == 1:
            return None
        await asyncio.to_thread(self.restic.unlock, ctx.repo)
        found = await asyncio.to_thread(self.restic.snapshots, ctx.repo, _tags(ctx, part))
        if not found:
            return None
        snapshot = found[-1]
        return PartResult(part, snapshot.id, 0, 0, 0, reused=True)

    # -- steps --------------------------------------------------------------------------

    @activity.defn
    async def begin_backup(self, begin: BeginBackup) -> ExecutionRef:
        """Creates (or finds) the execution row; refuses a second concurrent backup of the app."""
        req = begin.request
        async with self.sessions() as session:
            app_id = uuid.UUID(req.application_id)
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"backup:{app_id}"}
            )
            if req.execution_id:
                execution = await session.get(BackupExecution, uuid.UUID(req.execution_id))
                if execution is None:  # the API's transaction is not visible yet: retry
                    raise ApplicationError("execution not visible yet", type="NotYetVisible")
            else:
                await session.execute(
                    insert(BackupExecution)
                    .values(
                        policy_id=uuid.UUID(req.policy_id),
                        workflow_id=begin.workflow_id,
                        run_id=begin.run_id,
                        trigger=req.trigger,
                        schedule_id=begin.schedule_id,
                        status="running",
                        started_at=datetime.now(UTC),
                    )
                    .on_conflict_do_nothing(index_elements=["workflow_id"])
                )
                execution = await session.scalar(
                    select(BackupExecution).where(BackupExecution.workflow_id == begin.workflow_id)
                )
                assert execution is not None
            other = await session.scalar(
                select(BackupExecution.workflow_id)
                .join(BackupPolicy, BackupPolicy.id == BackupExecution.policy_id)
                .where(
                    BackupPolicy.application_id == app_id,
                    BackupExecution.status == "running",
                    BackupExecution.id != execution.id,
                )
            )
            if not other:
                other = await session.scalar(
                    select(BackupRestore.workflow_id).where(
                        BackupRestore.application_id == app_id,
                        BackupRestore.status.in_(("pending", "running")),
                    )
                )
            if other:
                execution.status = "failed"
                execution.error_message = (
                    f"another backup or a restore of this application is running ({other})"
                )
                execution.completed_at = datetime.now(UTC)
                await session.commit()
                metrics.BACKUPS_FAILED.labels(req.trigger).inc()
                raise fatal(execution.error_message, "BackupRunning")
            first_attempt = execution.run_id != begin.run_id or activity.info().attempt == 1
            execution.run_id = begin.run_id
            application = await session.get(Application, app_id)
            assert application is not None
            if first_attempt:
                audit.record(
                    session, ACTOR, "backup.start", "backup_execution", execution.id,
                    workspace_id=application.workspace_id,
                    details={"workflow_id": begin.workflow_id, "trigger": req.trigger},
                )  # fmt: skip
            await session.commit()
            if first_attempt:
                metrics.BACKUPS_STARTED.labels(req.trigger).inc()
            volumes = (
                sorted(application.platform_settings.get("volumes", {}))
                if req.include_volumes
                else []
            )
            return ExecutionRef(str(execution.id), volumes, req.include_database)

    @activity.defn
    async def check_quota(self, execution_id: str) -> int:
        """Fails at once, before any data is written, when the backup cannot fit."""
        async with self.sessions() as session:
            ctx = await self._context(session, execution_id)
            storage, application = ctx.storage, ctx.application
            if storage.status != "active":
                raise fatal(
                    f"backup storage {storage.name} is {storage.status}"
                    f"{': ' + storage.status_message if storage.status_message else ''};"
                    " the backup did not start",
                    "StorageUnavailable",
                )
            expected = await session.scalar(
                select(BackupExecution.size_bytes)
                .join(BackupPolicy, BackupPolicy.id == BackupExecution.policy_id)
                .where(
                    BackupPolicy.application_id == application.id,
                    BackupExecution.status == "succeeded",
                )
                .order_by(BackupExecution.completed_at.desc())
                .limit(1)
            )
            workspace_used = int(
                await session.scalar(
                    select(func.coalesce(func.sum(BackupStorage.used_bytes), 0)).where(
                        BackupStorage.workspace_id == application.workspace_id,
                        BackupStorage.id != storage.id,
                    )
                )
                or 0
            )
            quota_gb = await session.scalar(
                text("SELECT backup_quota_gb FROM workspaces WHERE id = :id"),
                {"id": application.workspace_id},
            )
        if expected is None:
            expected = await self._first_backup_estimate(ctx)
        try:
            status = await asyncio.to_thread(self.backend.status, storage.proxmox_storage_id)
        except BackendError as exc:
            raise ApplicationError(
                exc.message, type="StorageUnavailable", non_retryable=not exc.retryable
            ) from None
        capacity = storage.capacity_gb * GIB
        if status.used_bytes + expected > capacity:
            raise fatal(
                f"storage {storage.name} holds {_human(status.used_bytes)} of its"
                f" {storage.capacity_gb} GB; this backup needs about {_human(expected)} more."
                " Grow the storage, shorten retention or prune old backups",
                "QuotaExceeded",
            )
        quota = int(quota_gb or 0) * GIB
        if workspace_used + status.used_bytes + expected > quota:
            raise fatal(
                f"the workspace's backups use {_human(workspace_used + status.used_bytes)} of its"
                f" {quota_gb} GB quota; this backup needs about {_human(expected)} more",
                "QuotaExceeded",
            )
        return int(expected)

    async def _first_backup_estimate(self, ctx: Context) -> int:
        platform = open_platform(ctx.application, self.settings)
        total = 0
        target = platform.database() if ctx.policy.include_database else None
        if target is not None:
            psql = pg_dump.tool("psql", self.settings.pg_bin_dir)
            try:
                _, size = await asyncio.to_thread(pg_dump.server_info, target, psql)
            except pg_dump.DumpError as exc:
                raise ApplicationError(
                    f"database unreachable: {exc.message}", type="DatabaseUnavailable",
                    non_retryable=not exc.retryable,
                ) from None  # fmt: skip
            total += size
        if ctx.policy.include_volumes:
            for name in platform.volume_names():
                path = Path(ctx.application.platform_settings["volumes"][name])
                total += await asyncio.to_thread(folder_usage, path)
        return total

    @activity.defn
    async def snapshot_volumes(self, execution_id: str) -> SnapshotStep:
        async with self.sessions() as session:
            ctx = await self._context(session, execution_id)
        platform = open_platform(ctx.application, self.settings)
        names = platform.volume_names() if ctx.policy.include_volumes else []
        try:
            point = await asyncio.to_thread(platform.snapshot, execution_id, names)
        except FileNotFoundError as exc:
            raise fatal(str(exc), "InvalidConfiguration") from None
        return SnapshotStep(
            point.consistent, point.note, {v.name: str(v.path) for v in point.volumes}
        )

    @activity.defn
    async def dump_database(self, execution_id: str) -> PartResult:
        """pg_dump streamed into ``restic backup --stdin``: no temporary copy, bounded memory."""
        async with self.sessions() as session:
            ctx = await self._context(session, execution_id)
        target = open_platform(ctx.application, self.settings).database()
        if target is None:
            raise fatal("the application has no database configured", "InvalidConfiguration")
        await self._ensure_repository(ctx.repo)
        existing = await self._existing(ctx, "database")
        psql = pg_dump.tool("psql", self.settings.pg_bin_dir)
        try:
            _, db_size = await asyncio.to_thread(pg_dump.server_info, target, psql)
            rows = await asyncio.to_thread(pg_dump.table_row_counts, target, psql)
            if existing is not None:
                existing.details = {"database_size_bytes": db_size, "row_counts": rows}
                return existing
            result = await with_progress(
                lambda progress: pg_dump.dump_into_restic(
                    target,
                    self.restic,
                    ctx.repo,
                    _tags(ctx, "database"),
                    bin_dir=self.settings.pg_bin_dir,
                    progress=progress,
                )
            )
        except pg_dump.DumpError as exc:
            raise ApplicationError(
                f"database dump failed: {exc.message}", type="DumpError",
                non_retryable=not exc.retryable,
            ) from None  # fmt: skip
        except ResticError as exc:
            raise restic_failure(exc) from None
        return PartResult(
            "database", result.snapshot_id, result.total_bytes_processed, result.data_added, 1,
            reused=False, details={"database_size_bytes": db_size, "row_counts": rows},
        )  # fmt: skip

    @activity.defn
    async def upload_volume(self, job: UploadJob) -> PartResult:
        """One volume into the repository; incremental reuses the previous snapshot as parent."""
        async with self.sessions() as session:
            ctx = await self._context(session, job.execution_id)
        part = f"volume:{job.volume}"
        try:
            await self._ensure_repository(ctx.repo)
            existing = await self._existing(ctx, part)
            if existing is not None:
                return existing
            parent = None
            if job.backup_type == "incremental":
                previous = await asyncio.to_thread(
                    self.restic.snapshots,
                    ctx.repo,
                    [f"application={ctx.application.id}", f"part={part}"],
                )
                parent = previous[-1].id if previous else None
            result = await with_progress(
                lambda progress: self.restic.backup_paths(
                    ctx.repo,
                    Path(job.path),
                    _tags(ctx, part),
                    parent=parent,
                    force=job.backup_type == "full",
                    progress=progress,
                )
            )
        except ResticError as exc:
            raise restic_failure(exc) from None
        files = result.files_new + result.files_changed + result.files_unmodified
        return PartResult(
            part, result.snapshot_id, result.total_bytes_processed, result.data_added, files,
            reused=False, details={"parent": parent},
        )  # fmt: skip

    @activity.defn
    async def record_backup(self, job: RecordJob) -> int:
        """Writes the manifest into the repository and the row; the backup is then complete."""
        async with self.sessions() as session:
            ctx = await self._context(session, job.execution_id)
        database = next((p for p in job.parts if p.part == "database"), None)
        manifest = {
            "execution_id": job.execution_id,
            "application_id": str(ctx.application.id),
            "workspace_id": str(ctx.application.workspace_id),
            "trigger": ctx.execution.trigger,
            "backup_type": ctx.policy.backup_type,
            "started_at": job.started_at,
            "parts": [{k: v for k, v in asdict(p).items() if k != "details"} for p in job.parts],
            "snapshot": {"consistent": job.snapshot.consistent, "note": job.snapshot.note},
            "database": database.details if database else None,
            "volumes": {
                p.part.removeprefix("volume:"): {"files": p.files, "bytes": p.bytes_processed}
                for p in job.parts
                if p.part.startswith("volume:")
            },
            "tools": await asyncio.to_thread(self._tool_versions),
        }
        try:
            existing = await self._existing(ctx, "manifest")
            if existing is None:
                manifest_id = await asyncio.to_thread(
                    self._store_manifest, ctx.repo, manifest, _tags(ctx, "manifest")
                )
            else:
                manifest_id = existing.snapshot_id
        except ResticError as exc:
            raise restic_failure(exc) from None
        size = sum(p.bytes_processed for p in job.parts)
        now = datetime.now(UTC)
        async with self.sessions() as session:
            execution = await session.get(BackupExecution, uuid.UUID(job.execution_id))
            assert execution is not None
            if execution.status == "succeeded":
                return size
            execution.status = "succeeded"
            execution.size_bytes = size
            execution.backup_path = str(ctx.repo.path)
            execution.completed_at = now
            execution.metadata_ = {**manifest, "manifest_snapshot_id": manifest_id}
            audit.record(
                session, ACTOR, "backup.succeeded", "backup_execution", execution.id,
                workspace_id=ctx.application.workspace_id, details={"size_bytes": size},
            )  # fmt: skip
            await session.commit()
        metrics.BACKUPS_SUCCEEDED.labels(ctx.execution.trigger).inc()
        metrics.BACKUP_SIZE.observe(size)
        metrics.BACKUP_DURATION.observe((now - ctx.execution.started_at).total_seconds())
        metrics.LAST_SUCCESS.labels(str(ctx.application.id)).set(now.timestamp())
        return size

    def _store_manifest(self, repo: Repository, manifest: dict[str, Any], tags: list[str]) -> str:
        """The manifest travels with the data, so a restore without cairn can still read it."""
        with tempfile.TemporaryDirectory(prefix="cairn-manifest-") as tmp:
            Path(tmp, "manifest.json").write_text(json.dumps(manifest, indent=2))
            return self.restic.backup_paths(repo, Path(tmp), tags).snapshot_id

    def _tool_versions(self) -> dict[str, str]:
        pg = pg_dump.tool("pg_dump", self.settings.pg_bin_dir)
        return {"restic": self.restic.version(), "pg_dump": str(pg_dump.client_major(pg))}

    @activity.defn
    async def fail_backup(self, job: FailJob) -> None:
        """Marks the run failed (or cancelled) and removes the snapshots it left behind."""
        async with self.sessions() as session:
            ctx = await self._context(session, job.execution_id)
            execution = ctx.execution
            if execution.status in ("failed", "cancelled", "succeeded"):
                return
        try:
            await asyncio.to_thread(self.restic.unlock, ctx.repo)
            partial = await asyncio.to_thread(
                self.restic.snapshots, ctx.repo, [f"execution={job.execution_id}"]
            )
            await asyncio.to_thread(self.restic.forget, ctx.repo, [s.id for s in partial])
        except ResticError as exc:
            if "does not exist" not in exc.message and "unable to open config" not in exc.message:
                raise restic_failure(exc) from None
        await asyncio.to_thread(
            open_platform(ctx.application, self.settings).release, job.execution_id
        )
        async with self.sessions() as session:
            row = await session.get(BackupExecution, uuid.UUID(job.execution_id))
            assert row is not None
            row.status, row.error_message = job.status, job.message
            row.completed_at = datetime.now(UTC)
            await session.commit()
        metrics.BACKUPS_FAILED.labels(ctx.execution.trigger).inc()

    def control(self) -> list[Any]:
        return [self.begin_backup, self.check_quota, self.snapshot_volumes]

    def data(self) -> list[Any]:
        return [
            self.dump_database,
            self.upload_volume,
            self.record_backup,
            self.fail_backup,
        ]
