"""The steps of a restore: verify, quiesce, restore database, volumes and configuration,
verify, resume, record.

The platform restores each part into a staged copy beside the live one and swaps it in
(``adapters/platform.py``), so a failure at any point leaves the application's data as it
was; these steps keep the run's row, the repository and the verification against the
backup's manifest.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.copy_reading import backup_with_copy, open_copy
from activities.errors import fatal, temporal_errors, to_application_error
from activities.support import (
    ReadingActivities,
    execution_repository,
    heartbeating,
    no_progress,
    platform_of,
    read_metadata,
    to_completion,
    with_progress,
)
from adapters.engines.contract import BackedUp
from adapters.errors import AdapterError
from adapters.pg_dump import DumpError
from adapters.pg_identity import DatabaseIdentity
from adapters.platform import Measured, OtherDatabase, Platform, Scratch, named_databases
from adapters.restic import Repository, Restic, ResticError
from adapters.uploaded_dump import PLAIN, read_custom_dump, read_plain_dump
from contracts.restore import FinishRestore, NamedDatabaseJob, RestorePlan, VolumeJob
from core import crypto, metrics, secret_contexts
from core.boundaries import BoundaryError
from core.database_url import split_database_url
from core.restore_details import RestoreDetails, RestoreSource, RestoreUpload
from core.settings import Settings
from core.states import RunStatus
from db import audit
from db.models import Application, BackupExecution, BackupRestore, BackupStorage
from db.runs import settle
from repository import names
from repository.offsite import offsite_source
from repository.store import open_repository
from services import applications, database_identity

ACTOR = audit.Actor(label="system:restore-workflow")
# restic's words for data whose MAC or hash no longer matches: no retry reads it back intact
DAMAGED = re.compile(
    r"ciphertext verification failed|checksum mismatch|is damaged|invalid data returned", re.I
)


@dataclass
class Backup:
    """A backup to read back: its row (with the manifest), application and repository."""

    execution: BackupExecution
    application: Application
    repo: Repository

    @property
    def manifest(self) -> dict[str, Any]:
        return self.execution.metadata_ or {}

    def part(self, name: str) -> dict[str, Any]:
        """One part of the manifest (``repository/names.py``): snapshot id, bytes."""
        for item in self.manifest.get("parts", []):
            if item["part"] == name:
                return dict(item)
        raise fatal(f"the backup has no {name} part", "MissingBackup")

    def snapshot(self, part: str) -> str:
        return str(self.part(part)["snapshot_id"])


@dataclass
class Loaded(Backup):
    restore: BackupRestore
    restic: Restic
    """What reads the backup: the primary's restic, or one reading the offsite copy."""
    read_as: dict[str, Any] | None = None
    """The manifest as this restore reads it: as the offsite copy names its snapshots, or
    with another application's parts under this application's names."""
    source: Application | None = None
    """The other application of the workspace whose backup this is; None: its own."""

    @property
    def manifest(self) -> dict[str, Any]:
        return self.read_as if self.read_as is not None else super().manifest


async def backup_to_read(
    session: AsyncSession,
    settings: Settings,
    execution_id: uuid.UUID | None,
    application_id: uuid.UUID,
    purpose: str,
) -> Backup:
    """A successful backup and its opened repository; MissingBackup when it is gone or pruned."""
    execution, application = await successful_backup(session, execution_id, application_id, purpose)
    _, repo = await execution_repository(session, settings, execution, application)
    return Backup(execution, application, repo)


async def successful_backup(
    session: AsyncSession,
    execution_id: uuid.UUID | None,
    application_id: uuid.UUID,
    purpose: str,
) -> tuple[BackupExecution, Application]:
    """A successful backup and its application; MissingBackup when it is gone or pruned."""
    execution = await session.get(BackupExecution, execution_id) if execution_id else None
    application = await session.get(Application, application_id)
    if execution is None or execution.status != RunStatus.SUCCEEDED or application is None:
        raise fatal(f"the backup to {purpose} no longer exists or was pruned", "MissingBackup")
    return execution, application


def corrupt(message: str) -> ApplicationError | None:
    """The failure of a read that met damaged data in the repository, if it was one."""
    if DAMAGED.search(message):
        return fatal(f"the backup failed verification: {message}", "CorruptBackup")
    return None


def read_failure(exc: AdapterError) -> ApplicationError:
    """Reading the backup back failed: damaged data, or the failure as it came."""
    if isinstance(exc, DumpError):
        return corrupt(exc.message) or to_application_error(exc, "database restore failed")
    return corrupt(exc.message) or to_application_error(exc)


def matches_manifest(manifest: dict[str, Any], measured: Measured) -> dict[str, Any]:
    """Row counts per table and file counts and sizes per volume equal the manifest's."""
    problems: list[str] = []
    result: dict[str, Any] = {}
    if measured.row_counts is not None:
        expected = (manifest.get("database") or {}).get("row_counts", {})
        actual = measured.row_counts
        problems += [
            f"table {t}: {actual.get(t)} rows, the backup had {n}"
            for t, n in expected.items()
            if actual.get(t) != n
        ]
        result["tables"] = len(actual)
    for volume, figures in measured.volumes.items():
        expected_volume = manifest.get("volumes", {}).get(volume, {})
        files, size = figures.files, figures.bytes
        if (files, size) != (expected_volume.get("files"), expected_volume.get("bytes")):
            problems.append(
                f"volume {volume}: {files} files / {size} bytes, the backup had"
                f" {expected_volume.get('files')} / {expected_volume.get('bytes')}"
            )
        result[names.volume_part(volume)] = {"files": files, "bytes": size}
    if problems:
        raise fatal("restored data differs from the backup: " + "; ".join(problems), "VerifyFailed")
    return result


async def snapshots_present(restic: Restic, backup: Backup) -> int:
    """The backup's snapshots are all in the repository; how many there are."""
    tags = [names.execution_tag(backup.execution.id)]
    snapshots = await asyncio.to_thread(restic.snapshots, backup.repo, tags)
    wanted = {p["snapshot_id"] for p in backup.manifest.get("parts", [])}
    missing = sorted(w for w in wanted if not any(s.id.startswith(w) for s in snapshots))
    if missing:
        raise fatal(
            f"snapshots {', '.join(missing)} of the backup are missing from the repository",
            "MissingBackup",
        )
    return len(wanted)


# The data steps a restore and a drill share: a drill is a restore ``into=Scratch(drill_id)``.


async def restore_database_of(
    platform: Platform,
    backup: Backup,
    run_id: str,
    into: OtherDatabase | Scratch | None,
    protect: tuple[DatabaseIdentity, ...] = (),
    plain_sql: bool = False,
) -> str:
    """The backup's dump restored by ``platform`` (over the application's own database,
    ``into`` another one or a drill's scratch database, never one of ``protect``; an
    uploaded plain-format script with ``plain_sql``); the platform's note."""
    snapshot = backup.snapshot(names.DATABASE)
    with temporal_errors(translate=read_failure):
        return await with_progress(
            lambda progress: platform.restore_database(
                run_id,
                backup.repo,
                snapshot,
                progress,
                into=into,
                protect=protect,
                plain_sql=plain_sql,
            )
        )


async def restore_volume_of(
    platform: Platform, backup: Backup, run_id: str, volume: str, into: Scratch | None
) -> str:
    """One volume of the backup restored by ``platform``; the platform's note."""
    snapshot = backup.snapshot(names.volume_part(volume))
    with temporal_errors(translate=read_failure):
        # to its end: a swap must not stop half-way, nor a drill's cleanup race a restic
        # still writing its copy
        return await to_completion(
            lambda: platform.restore_volume(
                run_id, volume, backup.repo, snapshot, no_progress, into=into
            )
        )


async def measured_as_backed_up(
    platform: Platform,
    backup: Backup,
    database: bool,
    volumes: list[str],
    into: OtherDatabase | Scratch | None,
) -> dict[str, Any]:
    """What ``platform`` measures of the restored parts equals the backup's manifest."""
    with temporal_errors():
        measured = await heartbeating(
            asyncio.to_thread(platform.measure, database, volumes, into=into)
        )
    return matches_manifest(backup.manifest, measured)


def _backed_up(backup: Backup, name: str) -> BackedUp:
    """A named database's figures and restore settings as the backup's manifest has them."""
    details = (backup.manifest.get("databases") or {}).get(name)
    if details is None:
        raise fatal(f"the backup's manifest does not describe database {name}", "MissingBackup")
    return BackedUp.of(details)


class RestoreActivities(ReadingActivities):
    async def _load(self, session: AsyncSession, restore_id: str) -> Loaded:
        restore = await session.get(BackupRestore, uuid.UUID(restore_id))
        if restore is None:  # the API's transaction may not be visible yet
            raise ApplicationError("restore not visible yet", type="NotYetVisible")
        details = RestoreDetails.from_dict(restore.details)
        if details.source is not None:
            return await self._load_from(session, restore, details.source)
        if details.upload is not None:
            return await self._load_upload(session, restore, details.upload)
        target_id = offsite_source(restore.details)
        if target_id is None:
            backup = await backup_to_read(
                session,
                self.settings,
                restore.backup_execution_id,
                restore.application_id,
                "restore",
            )
            return Loaded(backup.execution, backup.application, backup.repo, restore, self.restic)
        execution, application = await backup_with_copy(
            session, restore.backup_execution_id, restore.application_id, "restore"
        )  # the primary storage stays untouched: it may be the reason to read the copy
        copy = await open_copy(
            session, self.settings, self.restic, execution, application, target_id
        )
        copied = copy.manifest(execution.metadata_ or {})
        return Loaded(execution, application, copy.repo, restore, copy.restic, copied)

    async def _load_from(
        self, session: AsyncSession, restore: BackupRestore, source: RestoreSource
    ) -> Loaded:
        """Another application's backup, read from its repository into this application's
        parts (its names mapped to this one's); the source application itself is only read."""
        execution, origin = await successful_backup(
            session, restore.backup_execution_id, uuid.UUID(source.application_id), "restore"
        )
        application = await session.get(Application, restore.application_id)
        if execution.application_id != origin.id or application is None:
            raise fatal("the backup to restore is not the source application's", "MissingBackup")
        _, repo = await execution_repository(session, self.settings, execution, origin)
        read_as = names.renamed_manifest(
            execution.metadata_ or {}, source.volume_map, source.database_map
        )
        return Loaded(execution, application, repo, restore, self.restic, read_as, origin)

    async def _load_upload(
        self, session: AsyncSession, restore: BackupRestore, upload: RestoreUpload
    ) -> Loaded:
        """A dump the owner uploaded, read as a backup of one part (never stored as one: the
        row stands for it in this run only) whose manifest holds the rows the dump itself
        holds, once ``verify_backup`` has read them (docs/restore-from-upload.md)."""
        application = await session.get(Application, restore.application_id)
        storage = await session.get(BackupStorage, uuid.UUID(upload.storage_id))
        if application is None or storage is None:
            raise fatal("the storage that held the uploaded dump was deleted", "StorageDeleted")
        try:
            repo = await open_repository(session, self.settings, application, storage)
        except crypto.CryptoError as exc:
            raise fatal(str(exc), "SecretsUnavailable") from None
        part = {"part": names.DATABASE, "snapshot_id": upload.snapshot_id, "bytes": upload.bytes}
        as_backup = BackupExecution(
            id=restore.id,
            application_id=application.id,
            storage_id=storage.id,
            status=RunStatus.SUCCEEDED,
            metadata_={"parts": [part], "database": {"row_counts": upload.row_counts or {}}},
        )
        return Loaded(as_backup, application, repo, restore, self.restic)

    async def _read_upload(self, loaded: Loaded, upload: RestoreUpload) -> str:
        """The uploaded dump read whole by pg_restore (a truncated or foreign file fails
        here, before the application is stopped); the rows it holds recorded as what the
        restored database must hold."""
        try:
            await asyncio.to_thread(loaded.restic.snapshot, loaded.repo, upload.snapshot_id)
        except ResticError as exc:
            raise to_application_error(exc) from None
        restic, repo, snapshot = loaded.restic, loaded.repo, upload.snapshot_id
        with temporal_errors(translate=read_failure):
            counts = await to_completion(
                (lambda: read_plain_dump(restic, repo, snapshot))
                if upload.format == PLAIN
                else (
                    lambda: read_custom_dump(
                        restic, repo, snapshot, bin_dir=self.settings.pg_bin_dir
                    )
                )
            )
        async with self.sessions() as session:
            restore = await session.get(BackupRestore, loaded.restore.id)
            assert restore is not None
            details = RestoreDetails.from_dict(restore.details)
            assert details.upload is not None
            counted = replace(details.upload, row_counts=counts)
            restore.details = replace(details, upload=counted).to_dict()
            await session.commit()
        rows = sum(counts.values())
        how = "without a backslash command" if upload.format == PLAIN else "by pg_restore"
        return f"uploaded dump read whole {how}: {len(counts)} tables, {rows} rows"

    def _reading(self, loaded: Loaded) -> Platform:
        """The application's platform, reading the backup where the restore reads it."""
        return platform_of(loaded.application, self.settings, loaded.restic)

    def _into(self, loaded: Loaded) -> OtherDatabase | None:
        """The other database a platform administrator asked for; None: the application's own."""
        target = RestoreDetails.from_dict(loaded.restore.details).target
        if target is None:
            return None
        password = None
        if target.password_sealed:
            try:
                password = crypto.open_sealed(
                    target.password_sealed,
                    master_key=self.settings.master_key_text,
                    context=secret_contexts.restore_target_password(loaded.restore.id),
                ).decode()
            except crypto.CryptoError as exc:
                raise fatal(str(exc), "SecretsUnavailable") from None
        return OtherDatabase(target.database_name, target.database_url, password)

    async def _others(self, loaded: Loaded, into: OtherDatabase) -> tuple[DatabaseIdentity, ...]:
        """Other applications' databases of the target's name, each asked of its server."""
        dbname = into.name or split_database_url(str(into.url))[0]["dbname"]
        return await read_metadata(
            self.sessions,
            lambda s: database_identity.other_applications(
                s, loaded.application, dbname, self.settings, wait_seconds=15
            ),
        )

    @activity.defn
    async def begin_restore(self, restore_id: str) -> RestorePlan:
        async with self.sessions() as session:
            loaded = await self._load(session, restore_id)
            restore = loaded.restore
            if restore.status == RunStatus.PENDING:
                restore.status, restore.started_at = RunStatus.RUNNING, datetime.now(UTC)
                upload = RestoreDetails.from_dict(restore.details).upload
                started = (
                    {"upload_sha256": upload.sha256}
                    if upload is not None
                    else {"backup_id": str(loaded.execution.id)}
                )
                if loaded.source is not None:
                    started["source_application_id"] = str(loaded.source.id)
                audit.record(
                    session,
                    ACTOR,
                    "restore.start",
                    "backup_restore",
                    restore.id,
                    workspace_id=loaded.application.workspace_id,
                    details=started,
                )
                await session.commit()
                metrics.RESTORES_STARTED.inc()
            details = RestoreDetails.from_dict(restore.details)
            return RestorePlan(
                restore_id,
                details.database,
                details.volumes,
                config=details.config,
                databases=details.databases,
            )

    @activity.defn
    async def verify_backup(self, restore_id: str) -> str:
        """The backup's snapshots exist, the repository's structure is whole, and every part
        to restore reads back intact, before anything live is touched: the cost of the
        parts restored, not of every backup kept (docs/architecture.md, Restores)."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, restore_id))
        details = RestoreDetails.from_dict(loaded.restore.details)
        if details.upload is not None:
            return await self._read_upload(loaded, details.upload)
        parts = [
            *([names.DATABASE] if details.database else []),
            *(names.database_part(d) for d in details.databases),
            *(names.volume_part(v) for v in details.volumes),
        ]

        def read_back(progress: Callable[[Any], None]) -> None:
            if loaded.source is None:  # another application's repository: its shared lock only
                loaded.restic.check(loaded.repo)
            for part in parts:
                progress(None)  # a cancel stops between parts
                loaded.restic.read_through(loaded.repo, loaded.snapshot(part))

        try:
            count = await snapshots_present(loaded.restic, loaded)
            await with_progress(read_back)
        except ResticError as exc:
            if damaged := corrupt(exc.message):
                raise damaged from None
            if exc.exit_code is None or exc.retryable:  # restic never judged the data:
                raise to_application_error(exc) from None  # a refused or unreachable storage
            raise fatal(f"the backup failed verification: {exc.message}", "CorruptBackup") from None
        return f"{count} snapshots present; {', '.join(parts) or 'no data part'} read back intact"

    async def _application_of(self, session: AsyncSession, restore_id: str) -> Application:
        """The restore's application (a restore from a backup or to a moment alike)."""
        restore = await session.get(BackupRestore, uuid.UUID(restore_id))
        if restore is None:  # the API's transaction may not be visible yet
            raise ApplicationError("restore not visible yet", type="NotYetVisible")
        application = await session.get(Application, restore.application_id)
        assert application is not None
        return application

    @activity.defn
    async def quiesce(self, restore_id: str) -> str:
        application = await read_metadata(
            self.sessions, lambda s: self._application_of(s, restore_id)
        )
        with temporal_errors("the application could not be stopped"):
            return await to_completion(self._platform(application).quiesce)

    @activity.defn
    async def resume(self, restore_id: str) -> str:
        async with self.sessions() as session:
            application = await self._application_of(session, restore_id)
        with temporal_errors("the application could not be started"):
            return await to_completion(self._platform(application).resume)

    @activity.defn
    async def restore_database(self, restore_id: str) -> str:
        """Restores into a fresh database, then swaps it in by rename."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, restore_id))
        platform = self._reading(loaded)
        into = self._into(loaded)
        if into is not None:  # never another application's, whatever its address
            with temporal_errors(translate=read_failure):
                into = replace(into, protect=await self._others(loaded, into))
        protect: tuple[DatabaseIdentity, ...] = ()
        if loaded.source is not None:  # never the source's database, whatever its address
            source = loaded.source
            with temporal_errors(translate=read_failure):
                found = await database_identity.identity_of(
                    source, self.settings, database_identity.SOURCE_DATABASE, wait_seconds=15
                )
            protect = (found,) if found is not None else ()
        upload = RestoreDetails.from_dict(loaded.restore.details).upload
        plain = upload is not None and upload.format == PLAIN
        return await restore_database_of(platform, loaded, restore_id, into, protect, plain)

    @activity.defn
    async def restore_named_database(self, job: NamedDatabaseJob) -> str:
        """A named database (MariaDB, Redis) replaced through its engine: proven beside the
        live one first (docs/engines.md)."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, job.restore_id))
        named = named_databases(self._reading(loaded))
        if named is None:
            raise fatal(
                f"the {loaded.application.platform_kind} platform has no named databases",
                "Unsupported",
            )
        snapshot = loaded.snapshot(names.database_part(job.database))
        backed_up = _backed_up(loaded, job.database)
        with temporal_errors(translate=read_failure):  # to its end: the live load is a swap
            return await to_completion(
                lambda: named.restore_named(
                    job.restore_id, job.database, loaded.repo, snapshot, backed_up
                )
            )

    @activity.defn
    async def restore_volume(self, job: VolumeJob) -> str:
        """Restores into a staging folder beside the volume, then swaps the folders."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, job.restore_id))
        try:  # asked again now: a folder may have become a link or a mount since
            await read_metadata(
                self.sessions,
                lambda s: applications.check_volumes_apart(s, loaded.application, [job.volume]),
            )
        except BoundaryError as exc:
            raise fatal(f"volume {job.volume} refused: {exc.message}", "BoundaryRefused") from None
        return await restore_volume_of(
            self._reading(loaded), loaded, job.restore_id, job.volume, into=None
        )

    @activity.defn
    async def restore_config(self, restore_id: str) -> str:
        """Puts the backup's configuration objects (ConfigMaps, Secrets) back."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, restore_id))
        platform = self._reading(loaded)
        snapshot = loaded.snapshot(names.CONFIG)
        with temporal_errors(translate=read_failure):  # to its end: objects go one by one
            return await to_completion(
                lambda: platform.restore_config(restore_id, loaded.repo, snapshot)
            )

    @activity.defn
    async def verify_restore(self, restore_id: str) -> dict[str, Any]:
        """Row counts per table and file counts and sizes per volume equal the manifest."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, restore_id))
        details = RestoreDetails.from_dict(loaded.restore.details)
        platform = self._platform(loaded.application)
        into = self._into(loaded) if details.database else None
        verified = await measured_as_backed_up(
            platform, loaded, details.database, details.volumes, into
        )
        named = named_databases(platform)
        for name in details.databases:
            assert named is not None  # restore_named_database refused otherwise
            backed_up = _backed_up(loaded, name)
            with temporal_errors():
                problems = await heartbeating(
                    asyncio.to_thread(named.measure_named, name, backed_up)
                )
            if problems:
                raise fatal(
                    f"restored database {name} differs from the backup: " + "; ".join(problems),
                    "VerifyFailed",
                )
            verified[names.database_part(name)] = backed_up.figures
        return verified

    @activity.defn
    async def finish_restore(self, finish: FinishRestore) -> bool:
        """Records the outcome (database only); True when this call ended the row."""
        async with self.sessions() as session:
            restore = await session.get(BackupRestore, uuid.UUID(finish.restore_id))
            assert restore is not None
            restore.details = {**(restore.details or {}), "notes": finish.notes}
            if finish.status != RunStatus.SUCCEEDED:
                settled = await settle(session, restore, finish.status, finish.message, ACTOR)
                await session.commit()
                if settled is not None:
                    metrics.count_unsuccessful("restore", None, settled.started_at)
                return settled is not None
            if restore.status != RunStatus.RUNNING:
                return False
            application = await session.get(Application, restore.application_id)
            assert application is not None
            now = datetime.now(UTC)
            restore.status, restore.completed_at = RunStatus.SUCCEEDED, now
            audit.record(
                session,
                ACTOR,
                "restore.succeeded",
                "backup_restore",
                restore.id,
                workspace_id=application.workspace_id,
            )
            await session.commit()
        metrics.RESTORES_SUCCEEDED.inc()
        if restore.started_at is not None:
            metrics.RESTORE_DURATION.labels(RunStatus.SUCCEEDED).observe(
                (now - restore.started_at).total_seconds()
            )
        return True

    def control(self) -> list[Any]:
        return [self.begin_restore, self.quiesce, self.resume, self.finish_restore]

    def data(self) -> list[Any]:
        return [
            self.verify_backup,
            self.restore_database,
            self.restore_named_database,
            self.restore_volume,
            self.restore_config,
            self.verify_restore,
        ]
