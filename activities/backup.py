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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.channels import tell_recovery
from activities.errors import fatal, temporal_errors, to_application_error
from activities.support import (
    execution_repository,
    heartbeating,
    platform_of,
    read_metadata,
    with_progress,
)
from adapters import pg_dump
from adapters.errors import AdapterError
from adapters.platform import Platform, named_databases
from adapters.restic import Repository, Restic, ResticError
from adapters.storage_backend import StorageBackend
from contracts.backup import (
    BeginBackup,
    ExecutionRef,
    FailJob,
    FailRecorded,
    NamedDumpJob,
    PartResult,
    RecordJob,
    SnapshotStep,
    StoredManifest,
    SuccessJob,
    UploadJob,
)
from core import metrics
from core.run_outcome import shorten
from core.settings import Settings
from core.states import BackupType, RunStatus, StorageStatus
from core.units import GIB
from db import audit
from db.models import (
    Application,
    BackupExecution,
    BackupPolicy,
    BackupStorage,
)
from db.quota import recorded_bytes
from db.runs import lock_application, newest_success, settle
from repository import names
from repository.store import repository_bytes
from services.runs import RunInProgress, claim_application

ACTOR = audit.Actor(label="system:backup-workflow")


@dataclass
class Context:
    execution: BackupExecution
    policy: BackupPolicy | None  # a deleted policy leaves its history behind
    application: Application
    storage: BackupStorage
    repo: Repository

    @property
    def include_database(self) -> bool:
        return bool(self.policy and self.policy.include_database)

    @property
    def include_volumes(self) -> bool:
        return bool(self.policy and self.policy.include_volumes)


def _tags(ctx: Context, part: str) -> list[str]:
    return names.snapshot_tags(ctx.application.id, ctx.execution.id, part)


def _human(n: int) -> str:
    if n < GIB:  # "0.00 GiB free" would hide how little is left
        return f"{n / 1024**2:.1f} MiB"
    return f"{n / GIB:.2f} GiB"


def filesystem_reserve(total_bytes: int) -> int:
    """Free space a backup must leave on the storage's file system: 2 % of it, at most 1 GiB.

    The file system is shared with whatever else lives there (and restic needs room for its
    index, locks and a later prune), so a backup that would fill it to the last byte is
    refused rather than left to fail half-written.
    """
    return min(total_bytes // 50, GIB)


def _dump_failure(exc: AdapterError) -> ApplicationError:
    """pg_dump's own failures say so; the repository's and the platform's come as they are."""
    doing = "database dump failed" if isinstance(exc, pg_dump.DumpError) else None
    return to_application_error(exc, doing)


class BackupActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        restic: Restic,
        backend: StorageBackend,
        client: Client,
    ) -> None:
        self.client = client
        self.sessions = sessions
        self.settings = settings
        self.restic = restic
        self.backend = backend
        self._initialised: set[Path] = set()
        self._initialising: dict[Path, asyncio.Lock] = {}
        self._tools: dict[str, str] | None = None

    # -- shared -------------------------------------------------------------------------

    async def _context(self, session: AsyncSession, execution_id: str) -> Context:
        execution = await session.get(BackupExecution, uuid.UUID(execution_id))
        if execution is None:
            raise fatal(f"backup execution {execution_id} does not exist", "NotFound")
        policy = (
            await session.get(BackupPolicy, execution.policy_id) if execution.policy_id else None
        )
        application = await session.get(Application, execution.application_id)
        assert application is not None  # executions cascade with their application
        storage, repo = await execution_repository(session, self.settings, execution, application)
        return Context(execution, policy, application, storage, repo)

    async def _ensure_repository(self, repo: Repository) -> None:
        """Creates the repository on first use; once per worker process is enough, also when
        a backup's parts start at the same moment."""
        async with self._initialising.setdefault(repo.path, asyncio.Lock()):
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
        """Creates (or finds) the execution row; refuses a second live backup of the app."""
        req = begin.request
        async with self.sessions() as session:
            app_id = uuid.UUID(req.application_id)
            await lock_application(session, app_id)
            if req.execution_id:
                execution = await session.get(BackupExecution, uuid.UUID(req.execution_id))
                if execution is None:  # the API's transaction is not visible yet: retry
                    raise ApplicationError("execution not visible yet", type="NotYetVisible")
            else:
                execution = await self._insert_scheduled(session, begin)
            if execution.status != RunStatus.RUNNING:
                raise fatal(f"this backup had already ended ({execution.status})", "AlreadyEnded")
            try:
                await claim_application(session, self.client, app_id, exclude=execution.id)
            except RunInProgress as exc:
                raise fatal(
                    "another backup or a restore of this application is running"
                    f" ({exc.workflow_id})",
                    "BackupRunning",
                ) from None
            first_attempt = execution.run_id != begin.run_id or activity.info().attempt == 1
            execution.run_id = begin.run_id
            application = await session.get(Application, app_id)
            assert application is not None
            if first_attempt:
                audit.record(
                    session,
                    ACTOR,
                    "backup.start",
                    "backup_execution",
                    execution.id,
                    workspace_id=application.workspace_id,
                    details={"workflow_id": begin.workflow_id, "trigger": req.trigger},
                )
            await session.commit()
            if first_attempt:
                metrics.BACKUPS_STARTED.labels(req.trigger).inc()
            platform = platform_of(application, self.settings, self.restic)
            volumes = platform.volume_names() if req.include_volumes else []
            # the policy's "include database" covers every database the application has
            named = named_databases(platform)
            databases = named.database_names() if named and req.include_database else []
            # the main database only when there is one (an application may have named ones only)
            main = req.include_database and platform.has_database()
            return ExecutionRef(str(execution.id), volumes, main, databases)

    async def _insert_scheduled(self, session: AsyncSession, begin: BeginBackup) -> BackupExecution:
        """The row of a scheduled run, made by its first step (idempotent by workflow id)."""
        req = begin.request
        policy = await session.get(BackupPolicy, uuid.UUID(req.policy_id))
        await session.execute(
            insert(BackupExecution)
            .values(
                policy_id=policy.id if policy else None,
                application_id=uuid.UUID(req.application_id),
                storage_id=policy.storage_id if policy else None,
                workflow_id=begin.workflow_id,
                run_id=begin.run_id,
                trigger=req.trigger,
                schedule_id=begin.schedule_id,
                status=RunStatus.RUNNING,
                started_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing(index_elements=["workflow_id"])
        )
        execution = await session.scalar(
            select(BackupExecution).where(BackupExecution.workflow_id == begin.workflow_id)
        )
        assert execution is not None
        return execution

    @activity.defn
    async def check_quota(self, execution_id: str) -> int:
        """Fails at once, before any data is written, when the backup cannot fit."""
        ctx, expected, workspace_used, quota_gb, recorded = await read_metadata(
            self.sessions, lambda s: self._quota_figures(s, execution_id)
        )
        storage = ctx.storage
        if expected is None:
            expected = await heartbeating(self._first_backup_estimate(ctx))
        with temporal_errors():
            status = await heartbeating(
                asyncio.to_thread(self.backend.status, storage.proxmox_storage_id)
            )
        if not status.active:
            raise fatal(
                f"backup storage {storage.name} is not active on the storage server (not"
                " mounted or unreachable); the backup did not start",
                "StorageUnavailable",
            )
        capacity = storage.capacity_gb * GIB
        quota = int(quota_gb or 0) * GIB

        def fits(own: int) -> bool:
            return own + expected <= capacity and workspace_used + own + expected <= quota

        # cairn's own bytes (PVE's "used" is the whole file system's): the recorded reading
        # plus what backups added since, in constant time; measured by walking the storage
        # when there is no fresh reading or the backup would not fit, so a refusal is exact
        own = recorded
        if own is None or not fits(own):
            own = await heartbeating(
                asyncio.to_thread(
                    repository_bytes, self.settings.storage_mount_root, storage.proxmox_storage_id
                )
            )
        if own + expected > capacity:
            raise fatal(
                f"storage {storage.name} holds {_human(own)} of its"
                f" {storage.capacity_gb} GB; this backup needs about {_human(expected)} more."
                " Grow the storage, shorten retention or prune old backups",
                "QuotaExceeded",
            )
        if workspace_used + own + expected > quota:
            raise fatal(
                f"the workspace's backups use {_human(workspace_used + own)} of its"
                f" {quota_gb} GB quota; this backup needs about {_human(expected)} more",
                "QuotaExceeded",
            )
        reserve = filesystem_reserve(status.total_bytes)
        if status.total_bytes and expected + reserve > status.avail_bytes:
            raise fatal(
                f"the file system of storage {storage.name} is nearly full:"
                f" {_human(status.avail_bytes)} free of {_human(status.total_bytes)}, and this"
                " backup needs about"
                f" {_human(expected)} while keeping {_human(reserve)} free. The storage itself"
                f" holds {_human(own)} of its {storage.capacity_gb} GB; free space on the file"
                " system (other data shares it) or move the storage",
                "FilesystemFull",
            )
        return int(expected)

    async def _quota_figures(
        self, session: AsyncSession, execution_id: str
    ) -> tuple[Context, int | None, int, int | None, int | None]:
        """The context, the last good backup's size, the workspace's other usage and quota,
        and the storage's own bytes as recorded (None: walk it)."""
        ctx = await self._context(session, execution_id)
        storage, application = ctx.storage, ctx.application
        if storage.status != StorageStatus.ACTIVE:
            raise fatal(
                f"backup storage {storage.name} is {storage.status}"
                f"{': ' + storage.status_message if storage.status_message else ''};"
                " the backup did not start",
                "StorageUnavailable",
            )
        last = await newest_success(session, application.id)
        expected = last.size_bytes if last else None
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
        fresh = timedelta(minutes=3 * self.settings.usage_refresh_minutes)
        recorded = await recorded_bytes(session, storage, datetime.now(UTC), fresh)
        return ctx, expected, workspace_used, quota_gb, recorded

    async def _first_backup_estimate(self, ctx: Context) -> int:
        platform = self._platform(ctx)
        database = ctx.include_database and platform.has_database()
        volumes = platform.volume_names() if ctx.include_volumes else []
        named = named_databases(platform) if ctx.include_database else None
        with temporal_errors():
            total = await asyncio.to_thread(platform.estimate_bytes, database, volumes)
            if named is not None:
                for name in named.database_names():
                    total += await asyncio.to_thread(named.estimate_named, name)
        return total

    def _platform(self, ctx: Context) -> Platform:
        return platform_of(ctx.application, self.settings, self.restic)

    @activity.defn
    async def snapshot_volumes(self, execution_id: str) -> SnapshotStep:
        ctx = await read_metadata(self.sessions, lambda s: self._context(s, execution_id))
        platform = self._platform(ctx)
        names = platform.volume_names() if ctx.include_volumes else []
        with temporal_errors():
            await asyncio.to_thread(platform.check_targets, False, names)
            point = await heartbeating(asyncio.to_thread(platform.snapshot, execution_id, names))
        return SnapshotStep(point.consistent, point.note, dict(point.volumes))

    @activity.defn
    async def dump_database(self, execution_id: str) -> PartResult:
        """The database into one snapshot; the figures verification compares come with it."""
        ctx = await read_metadata(self.sessions, lambda s: self._context(s, execution_id))
        platform = self._platform(ctx)
        tags = _tags(ctx, names.DATABASE)
        with temporal_errors(translate=_dump_failure):
            await self._ensure_repository(ctx.repo)
            retried = activity.info().attempt > 1
            if retried:
                await asyncio.to_thread(self.restic.unlock, ctx.repo)  # a killed attempt's
            dump = await with_progress(
                lambda progress: platform.dump_database(execution_id, ctx.repo, tags, progress)
            )
            if retried:
                # What an earlier attempt left may be a partial dump without its figures
                # (restic keeps what it read when its stdin closes): forgotten. A platform
                # whose earlier dump finished anyway (a Kubernetes Job outlives the worker)
                # returns that snapshot, figures included, and it is kept.
                await asyncio.to_thread(self._forget, ctx.repo, tags, dump.snapshot_id)
        # The figures restore verification compares were taken inside the dump's snapshot.
        return PartResult(
            names.DATABASE,
            dump.snapshot_id,
            dump.bytes_processed,
            dump.data_added,
            1,
            reused=False,
            details={
                "database_size_bytes": dump.database_size_bytes,
                "row_counts": dump.row_counts,
                "server_major": dump.server_major,
            },
        )

    @activity.defn
    async def dump_named_database(self, job: NamedDumpJob) -> PartResult:
        """A named database (MariaDB, Redis) into one snapshot through its engine, with the
        figures its restore is verified against (docs/engines.md)."""
        ctx = await read_metadata(self.sessions, lambda s: self._context(s, job.execution_id))
        named = named_databases(self._platform(ctx))
        if named is None:
            raise fatal(
                f"the {ctx.application.platform_kind} platform has no named databases",
                "Unsupported",
            )
        part = names.database_part(job.database)
        tags = _tags(ctx, part)
        with temporal_errors(translate=_dump_failure):
            await self._ensure_repository(ctx.repo)
            retried = activity.info().attempt > 1
            if retried:
                await asyncio.to_thread(self.restic.unlock, ctx.repo)  # a killed attempt's
            dump = await with_progress(
                lambda progress: named.dump_named(
                    job.execution_id, job.database, ctx.repo, tags, progress
                )
            )
            if retried:  # an earlier attempt's snapshot may be partial: as dump_database
                await asyncio.to_thread(self._forget, ctx.repo, tags, dump.snapshot_id)
        return PartResult(
            part,
            dump.snapshot_id,
            dump.bytes_processed,
            dump.data_added,
            1,
            reused=False,
            details=dump.details(),
        )

    @activity.defn
    async def upload_volume(self, job: UploadJob) -> PartResult:
        """One volume into the repository; incremental reuses the previous snapshot as parent."""
        ctx = await read_metadata(self.sessions, lambda s: self._context(s, job.execution_id))
        platform = self._platform(ctx)
        part = names.volume_part(job.volume)
        with temporal_errors():
            await self._ensure_repository(ctx.repo)
            existing = await self._existing(ctx, part)
            if existing is not None:
                return existing
            parent = None
            if job.backup_type == BackupType.INCREMENTAL:
                previous = await asyncio.to_thread(
                    self.restic.snapshots,
                    ctx.repo,
                    [names.application_tag(ctx.application.id), names.part_tag(part)],
                )
                parent = previous[-1].id if previous else None
            upload = await with_progress(
                lambda progress: platform.upload_volume(
                    job.execution_id,
                    job.volume,
                    job.path,
                    ctx.repo,
                    _tags(ctx, part),
                    parent=parent,
                    force=job.backup_type == BackupType.FULL,
                    progress=progress,
                )
            )
        return PartResult(
            part,
            upload.snapshot_id,
            upload.bytes_processed,
            upload.data_added,
            upload.files,
            reused=False,
            details={"parent": parent},
        )

    @activity.defn
    async def store_manifest(self, job: RecordJob) -> StoredManifest:
        """Writes the manifest into the repository beside the data it describes."""
        ctx = await read_metadata(self.sessions, lambda s: self._context(s, job.execution_id))
        with temporal_errors():
            config = await self._export_config(ctx)
        parts = [*job.parts, config] if config else job.parts
        database = next((p for p in parts if p.part == names.DATABASE), None)
        manifest = {
            "execution_id": job.execution_id,
            "application_id": str(ctx.application.id),
            "workspace_id": str(ctx.application.workspace_id),
            "trigger": ctx.execution.trigger,
            "backup_type": ctx.policy.backup_type if ctx.policy else None,
            "started_at": job.started_at,
            "parts": [{k: v for k, v in asdict(p).items() if k != "details"} for p in parts],
            "snapshot": {"consistent": job.snapshot.consistent, "note": job.snapshot.note},
            "database": database.details if database else None,
            "volumes": {
                volume: {"files": p.files, "bytes": p.bytes_processed}
                for p in parts
                if (volume := names.volume_of(p.part)) is not None
            },
            "databases": {
                named: p.details for p in parts if (named := names.database_of(p.part)) is not None
            },
            "tools": await asyncio.to_thread(self._tool_versions),
            "repository": str(ctx.repo.path),
        }
        with temporal_errors():
            existing = await self._existing(ctx, names.MANIFEST)
            if existing is None:
                manifest_id = await heartbeating(
                    asyncio.to_thread(
                        self._store_manifest, ctx.repo, manifest, _tags(ctx, names.MANIFEST)
                    )
                )
            else:
                manifest_id = existing.snapshot_id
        size = sum(p.bytes_processed for p in parts)
        return StoredManifest(manifest_id, manifest, size)

    async def _export_config(self, ctx: Context) -> PartResult | None:
        """The platform's configuration objects, stored beside the data; None: it has none."""
        existing = await self._existing(ctx, names.CONFIG)
        if existing is not None:
            return existing
        platform = self._platform(ctx)
        upload = await heartbeating(
            asyncio.to_thread(
                platform.export_config, str(ctx.execution.id), ctx.repo, _tags(ctx, names.CONFIG)
            )
        )
        if upload is None:
            return None
        return PartResult(
            names.CONFIG,
            upload.snapshot_id,
            upload.bytes_processed,
            upload.data_added,
            upload.files,
            reused=False,
        )

    @activity.defn
    async def record_success(self, job: SuccessJob) -> int:
        """Marks the backup succeeded; needs only the metadata database, retried through outages."""
        stored = job.stored
        now = datetime.now(UTC)
        async with self.sessions() as session:
            execution = await session.get(BackupExecution, uuid.UUID(job.execution_id))
            assert execution is not None
            if execution.status != RunStatus.RUNNING:
                return stored.size_bytes
            execution.status = RunStatus.SUCCEEDED
            execution.size_bytes = stored.size_bytes
            execution.backup_path = stored.manifest.get("repository")
            execution.completed_at = now
            execution.metadata_ = {**stored.manifest, "manifest_snapshot_id": stored.snapshot_id}
            workspace_id = uuid.UUID(stored.manifest["workspace_id"])
            audit.record(
                session,
                ACTOR,
                "backup.succeeded",
                "backup_execution",
                execution.id,
                workspace_id=workspace_id,
                details={"size_bytes": stored.size_bytes},
            )
            await session.commit()
        metrics.BACKUPS_SUCCEEDED.labels(execution.trigger).inc()
        metrics.BACKUP_SIZE.observe(stored.size_bytes)
        metrics.BACKUP_DURATION.observe((now - execution.started_at).total_seconds())
        metrics.LAST_SUCCESS.labels(str(execution.application_id)).set(now.timestamp())
        await tell_recovery(self.client, self.sessions, execution.id)
        return stored.size_bytes

    def _store_manifest(self, repo: Repository, manifest: dict[str, Any], tags: list[str]) -> str:
        """The manifest travels with the data, so a restore without cairn can still read it."""
        with tempfile.TemporaryDirectory(prefix="cairn-manifest-") as tmp:
            Path(tmp, names.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
            return self.restic.backup_paths(repo, Path(tmp), tags).snapshot_id

    def _tool_versions(self) -> dict[str, str]:
        """Asked once per worker process (an upgraded tool is picked up at its restart)."""
        if self._tools is None:
            pg = pg_dump.tool("pg_dump", self.settings.pg_bin_dir)
            self._tools = {
                "restic": self.restic.version(),
                "pg_dump": str(pg_dump.client_major(pg)),
            }
        return self._tools

    @activity.defn
    async def record_failure(self, job: FailJob) -> FailRecorded:
        """Ends the row failed or cancelled with the reason, before any cleanup is tried.

        Touches only the metadata database, so it cannot fail for the reason the run failed
        (restic, the platform, secrets). A scheduled run that failed before its first step
        made a row gets one now, so the failure is visible.
        """
        async with self.sessions() as session:
            execution = None
            if job.execution_id:
                execution = await session.get(BackupExecution, uuid.UUID(job.execution_id))
            scheduled = not job.begin.request.execution_id
            if execution is None and scheduled:
                app_id = uuid.UUID(job.begin.request.application_id)
                if await session.get(Application, app_id) is not None:
                    execution = await self._insert_scheduled(session, job.begin)
            if execution is None:  # a manual run whose API request never committed its row
                return FailRecorded(None, settled=False)
            settled = await settle(session, execution, job.status, job.message, ACTOR)
            await session.commit()
            if settled is not None:
                metrics.count_unsuccessful("backup", settled.trigger, settled.started_at)
            return FailRecorded(str(execution.id), settled is not None)

    @activity.defn
    async def clean_up_failed(self, execution_id: str) -> str:
        """Best effort: forgets the partial snapshots and releases the platform's resources.

        Whatever goes wrong here is written on the row as a note and returned; the run's
        outcome has been recorded already and is never replaced by a cleanup error.
        """
        try:
            async with self.sessions() as session:
                ctx = await self._context(session, execution_id)
            await heartbeating(
                asyncio.to_thread(self._forget, ctx.repo, [names.execution_tag(execution_id)])
            )
            await asyncio.to_thread(self._platform(ctx).release, execution_id)
        except (ApplicationError, AdapterError, OSError) as exc:
            return await self._note_cleanup(execution_id, exc)
        return "partial snapshots removed"

    @activity.defn
    async def release_backup(self, execution_id: str) -> str:
        """Frees what the platform still holds for a recorded backup (Jobs, claims, Secrets,
        snapshots): cleanup in every outcome, not only after a failure.

        The backup stands whatever happens here: a failure is retried while the retry policy
        allows, then written on the row as a note and returned.
        """
        try:
            async with self.sessions() as session:
                ctx = await self._context(session, execution_id)
            await heartbeating(asyncio.to_thread(self._platform(ctx).release, execution_id))
        except (ApplicationError, AdapterError, OSError) as exc:
            info = activity.info()
            limit = info.retry_policy.maximum_attempts if info.retry_policy else 1
            if isinstance(exc, AdapterError) and exc.retryable and info.attempt < limit:
                raise to_application_error(exc) from None
            return await self._note_cleanup(execution_id, exc)
        return "the run's platform resources released"

    async def _note_cleanup(self, execution_id: str, exc: Exception) -> str:
        """A cleanup that did not finish, noted on the run's row (the outcome stays)."""
        note = shorten(f"cleanup incomplete: {getattr(exc, 'message', None) or exc}")
        async with self.sessions() as session:
            row = await session.get(BackupExecution, uuid.UUID(execution_id))
            if row is not None:
                row.metadata_ = {**(row.metadata_ or {}), "cleanup": note}
                await session.commit()
        return note

    def _forget(self, repo: Repository, tags: list[str], keep: str | None = None) -> None:
        """Forgets the snapshots carrying every tag but ``keep``; a repository never created
        has none."""
        try:
            found = self.restic.snapshots(repo, tags)  # clears a killed attempt's lock too
            # restic's backup summary gives the short id, the snapshot list the full one
            doomed = [s.id for s in found if not (keep and s.id.startswith(keep))]
            if doomed:
                self.restic.forget(repo, doomed)
        except ResticError as exc:
            if "does not exist" not in exc.message and "unable to open config" not in exc.message:
                raise

    def control(self) -> list[Any]:
        return [
            self.begin_backup,
            self.check_quota,
            self.snapshot_volumes,
            self.record_success,
            self.record_failure,
        ]

    def data(self) -> list[Any]:
        return [
            self.dump_database,
            self.dump_named_database,
            self.upload_volume,
            self.store_manifest,
            self.clean_up_failed,
            self.release_backup,
        ]
