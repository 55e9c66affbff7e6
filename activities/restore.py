"""The steps of a restore: verify, quiesce, restore database and volumes, verify, resume, record.

Nothing is written over live data: the database is restored into a fresh database and
swapped in by rename, each volume into a staging folder beside it and swapped in by
rename, so a failure at any point leaves the application's data as it was.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.support import (
    execution_repository,
    fatal,
    heartbeating,
    open_platform,
    read_metadata,
    restic_failure,
    to_completion,
    with_progress,
)
from adapters import pg_databases, pg_dump
from adapters.restic import Repository, Restic, ResticError
from contracts.restore import FinishRestore, RestorePlan, VolumeJob
from core import crypto, metrics, secret_contexts
from core.boundaries import (
    BoundaryError,
    check_application_database,
    check_restore_target,
    check_volume_path,
)
from core.database_url import split_database_url
from core.settings import Settings
from db import audit
from db.models import Application, BackupExecution, BackupRestore
from db.runs import settle

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
        """One part of the manifest (``database``, ``volume:<name>``): snapshot id, bytes."""
        for item in self.manifest.get("parts", []):
            if item["part"] == name:
                return dict(item)
        raise fatal(f"the backup has no {name} part", "MissingBackup")

    def snapshot(self, part: str) -> str:
        return str(self.part(part)["snapshot_id"])


@dataclass
class Loaded(Backup):
    restore: BackupRestore


async def backup_to_read(
    session: AsyncSession,
    settings: Settings,
    execution_id: uuid.UUID | None,
    application_id: uuid.UUID,
    purpose: str,
) -> Backup:
    """A successful backup and its opened repository; MissingBackup when it is gone or pruned."""
    execution = await session.get(BackupExecution, execution_id) if execution_id else None
    application = await session.get(Application, application_id)
    if execution is None or execution.status != "succeeded" or application is None:
        raise fatal(f"the backup to {purpose} no longer exists or was pruned", "MissingBackup")
    _, repo = await execution_repository(session, settings, execution, application)
    return Backup(execution, application, repo)


def database_of(application: Application, settings: Settings) -> pg_dump.PgTarget:
    """How to reach the application's database (its server, role and password)."""
    database = open_platform(application, settings).database()
    if database is None:
        raise fatal("the application has no database configured", "InvalidConfiguration")
    return database


def own_database(application: Application, settings: Settings) -> pg_dump.PgTarget:
    """The application's database, its registration checked again where the data moves."""
    database = database_of(application, settings)
    try:  # the API's checks may predate a boundary rule
        check_application_database(application.platform_settings.get("database") or {}, settings)
    except BoundaryError as exc:
        raise fatal(f"restore target refused: {exc.message}", "TargetRefused") from None
    return database


def corrupt(message: str) -> ApplicationError | None:
    """The failure of a read that met damaged data in the repository, if it was one."""
    if DAMAGED.search(message):
        return fatal(f"the backup failed verification: {message}", "CorruptBackup")
    return None


def database_failure(exc: pg_dump.DumpError) -> ApplicationError:
    return corrupt(exc.message) or ApplicationError(
        f"database restore failed: {exc.message}", type="RestoreError",
        non_retryable=not exc.retryable,
    )  # fmt: skip


def read_failure(exc: ResticError) -> ApplicationError:
    """A restic command that reads the backup failed: damaged data, or restic's own error."""
    return corrupt(exc.message) or restic_failure(exc)


async def restore_copy(
    restic: Restic, repo: Repository, snapshot: str, copy: pg_dump.PgTarget, bin_dir: Path | None
) -> None:
    """Creates the database ``copy`` afresh and fills it from the backup's dump."""
    await asyncio.to_thread(pg_databases.create, copy, copy.dbname)
    await with_progress(
        lambda _p: pg_dump.restore_from_restic(copy, restic, repo, snapshot, bin_dir=bin_dir)
    )


def restore_folder(restic: Restic, repo: Repository, snapshot: str, folder: Path) -> None:
    """Restores a volume's snapshot into ``folder``; what a killed attempt left is redone."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    restic.restore(repo, snapshot, folder)


async def verify_against_manifest(
    manifest: dict[str, Any],
    database: pg_dump.PgTarget | None,
    folders: dict[str, Path],
    bin_dir: Path | None,
) -> dict[str, Any]:
    """Row counts per table and file counts and sizes per volume equal the manifest's."""
    problems: list[str] = []
    result: dict[str, Any] = {}
    if database is not None:
        expected = (manifest.get("database") or {}).get("row_counts", {})
        psql = pg_dump.tool("psql", bin_dir)
        actual = await heartbeating(asyncio.to_thread(pg_dump.table_row_counts, database, psql))
        problems += [
            f"table {t}: {actual.get(t)} rows, the backup had {n}"
            for t, n in expected.items()
            if actual.get(t) != n
        ]
        result["tables"] = len(actual)
    for volume, folder in folders.items():
        expected_volume = manifest.get("volumes", {}).get(volume, {})
        files, size = await heartbeating(asyncio.to_thread(count_files, folder))
        if (files, size) != (expected_volume.get("files"), expected_volume.get("bytes")):
            problems.append(
                f"volume {volume}: {files} files / {size} bytes, the backup had"
                f" {expected_volume.get('files')} / {expected_volume.get('bytes')}"
            )
        result[f"volume:{volume}"] = {"files": files, "bytes": size}
    if problems:
        raise fatal("restored data differs from the backup: " + "; ".join(problems), "VerifyFailed")
    return result


async def snapshots_present(
    restic: Restic, repo: Repository, execution_id: object, manifest: dict[str, Any]
) -> int:
    """The backup's snapshots are all in the repository; how many there are."""
    snapshots = await asyncio.to_thread(restic.snapshots, repo, [f"execution={execution_id}"])
    wanted = {p["snapshot_id"] for p in manifest.get("parts", [])}
    missing = sorted(w for w in wanted if not any(s.id.startswith(w) for s in snapshots))
    if missing:
        raise fatal(
            f"snapshots {', '.join(missing)} of the backup are missing from the repository",
            "MissingBackup",
        )
    return len(wanted)


class RestoreActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, restic: Restic
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.restic = restic

    async def _load(self, session: AsyncSession, restore_id: str) -> Loaded:
        restore = await session.get(BackupRestore, uuid.UUID(restore_id))
        if restore is None:  # the API's transaction may not be visible yet
            raise ApplicationError("restore not visible yet", type="NotYetVisible")
        backup = await backup_to_read(
            session, self.settings, restore.backup_execution_id, restore.application_id, "restore"
        )
        return Loaded(backup.execution, backup.application, backup.repo, restore)

    def _target(self, loaded: Loaded) -> pg_dump.PgTarget:
        """The database to restore into: the application's own, or the requested other one."""
        target = (loaded.restore.details or {}).get("target") or {}
        if not target:
            return own_database(loaded.application, self.settings)
        original = database_of(loaded.application, self.settings)
        own = loaded.application.platform_settings.get("database") or {}
        try:  # checked again where the data moves: the API's checks may predate a setting
            check_restore_target(target, own, self.settings, by_platform_admin=True)
        except BoundaryError as exc:
            raise fatal(f"restore target refused: {exc.message}", "TargetRefused") from None
        if target.get("database_name"):
            return replace(original, dbname=target["database_name"])
        if target.get("database_url"):
            parts, _ = split_database_url(target["database_url"])
            password = None
            if target.get("password_sealed"):
                password = crypto.open_sealed(
                    target["password_sealed"],
                    master_key=self.settings.master_key_text,
                    context=secret_contexts.restore_target_password(loaded.restore.id),
                ).decode()
            return pg_dump.PgTarget(
                parts["host"], int(parts["port"]), parts.get("user"), parts["dbname"], password
            )
        raise fatal("the restore target names no database", "InvalidConfiguration")

    @activity.defn
    async def begin_restore(self, restore_id: str) -> RestorePlan:
        async with self.sessions() as session:
            loaded = await self._load(session, restore_id)
            restore = loaded.restore
            if restore.status == "pending":
                restore.status, restore.started_at = "running", datetime.now(UTC)
                audit.record(
                    session, ACTOR, "restore.start", "backup_restore", restore.id,
                    workspace_id=loaded.application.workspace_id,
                    details={"backup_id": str(loaded.execution.id)},
                )  # fmt: skip
                await session.commit()
                metrics.RESTORES_STARTED.inc()
            details = restore.details or {}
            return RestorePlan(
                restore_id, bool(details.get("database")), details.get("volumes", [])
            )

    @activity.defn
    async def verify_backup(self, restore_id: str) -> str:
        """The backup's snapshots exist and the repository's data reads back intact."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, restore_id))
        try:
            count = await snapshots_present(
                self.restic, loaded.repo, loaded.execution.id, loaded.manifest
            )
            await with_progress(lambda _p: self.restic.check(loaded.repo, read_data=True))
        except ResticError as exc:
            raise fatal(f"the backup failed verification: {exc.message}", "CorruptBackup") from None
        return f"{count} snapshots present; repository data read back intact"

    @activity.defn
    async def quiesce(self, restore_id: str) -> str:
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, restore_id))
        try:
            return await to_completion(open_platform(loaded.application, self.settings).quiesce)
        except (RuntimeError, OSError) as exc:
            raise fatal(f"the application could not be stopped: {exc}", "QuiesceFailed") from None

    @activity.defn
    async def resume(self, restore_id: str) -> str:
        async with self.sessions() as session:
            restore = await session.get(BackupRestore, uuid.UUID(restore_id))
            assert restore is not None
            application = await session.get(Application, restore.application_id)
            assert application is not None
        try:
            return await to_completion(open_platform(application, self.settings).resume)
        except (RuntimeError, OSError) as exc:
            raise ApplicationError(f"the application could not be started: {exc}") from None

    @activity.defn
    async def restore_database(self, restore_id: str) -> str:
        """Restores into a fresh database, then swaps it in by rename."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, restore_id))
        target = self._target(loaded)
        short = uuid.UUID(restore_id).hex[:12]
        staging, old = f"cairn_restore_{short}", f"cairn_old_{short}"
        snapshot = loaded.snapshot("database")
        try:
            swapped = await asyncio.to_thread(pg_databases.exists, target, old) and not (
                await asyncio.to_thread(pg_databases.exists, target, staging)
            )
            if not swapped:  # a retry restores again: a half-done pg_restore left nothing usable
                await restore_copy(
                    self.restic, loaded.repo, snapshot, replace(target, dbname=staging),
                    self.settings.pg_bin_dir,
                )  # fmt: skip
            await asyncio.to_thread(pg_databases.swap, target, staging, old)
        except pg_dump.DumpError as exc:
            await asyncio.to_thread(pg_databases.drop, target, staging)
            raise database_failure(exc) from None
        return f"database {target.dbname} replaced by the backup's copy"

    @activity.defn
    async def restore_volume(self, job: VolumeJob) -> str:
        """Restores into a staging folder beside the volume, then swaps the folders."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, job.restore_id))
        folders = loaded.application.platform_settings.get("volumes", {})
        if job.volume not in folders:
            raise fatal(
                f"the application has no volume {job.volume} any more", "InvalidConfiguration"
            )
        try:
            live = check_volume_path(folders[job.volume], self.settings)
        except BoundaryError as exc:
            raise fatal(f"volume {job.volume} refused: {exc.message}", "TargetRefused") from None
        short = uuid.UUID(job.restore_id).hex[:12]
        staging = live.with_name(f".{live.name}.cairn-restore-{short}")
        old = live.with_name(f".{live.name}.cairn-old-{short}")
        snapshot = loaded.snapshot(f"volume:{job.volume}")
        try:
            await to_completion(
                lambda: _swap_in_folder(self.restic, loaded.repo, snapshot, live, staging, old)
            )
        except ResticError as exc:
            await asyncio.to_thread(shutil.rmtree, staging, True)
            raise read_failure(exc) from None
        return f"volume {job.volume} replaced by the backup's copy"

    @activity.defn
    async def verify_restore(self, restore_id: str) -> dict[str, Any]:
        """Row counts per table and file counts and sizes per volume equal the manifest."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, restore_id))
        details = loaded.restore.details or {}
        folders = loaded.application.platform_settings.get("volumes", {})
        return await verify_against_manifest(
            loaded.manifest,
            self._target(loaded) if details.get("database") else None,
            {volume: Path(folders[volume]) for volume in details.get("volumes", [])},
            self.settings.pg_bin_dir,
        )

    @activity.defn
    async def finish_restore(self, finish: FinishRestore) -> bool:
        """Records the outcome (database only); True when this call ended the row."""
        async with self.sessions() as session:
            restore = await session.get(BackupRestore, uuid.UUID(finish.restore_id))
            assert restore is not None
            restore.details = {**(restore.details or {}), "notes": finish.notes}
            if finish.status != "succeeded":
                settled = await settle(session, restore, finish.status, finish.message, ACTOR)
                await session.commit()
                if settled is not None:
                    metrics.count_unsuccessful("restore", None, settled.started_at)
                return settled is not None
            if restore.status != "running":
                return False
            application = await session.get(Application, restore.application_id)
            assert application is not None
            now = datetime.now(UTC)
            restore.status, restore.completed_at = "succeeded", now
            audit.record(
                session, ACTOR, "restore.succeeded", "backup_restore", restore.id,
                workspace_id=application.workspace_id,
            )  # fmt: skip
            await session.commit()
        metrics.RESTORES_SUCCEEDED.inc()
        if restore.started_at is not None:
            metrics.RESTORE_DURATION.labels("succeeded").observe(
                (now - restore.started_at).total_seconds()
            )
        return True

    def control(self) -> list[Any]:
        return [self.begin_restore, self.quiesce, self.resume, self.finish_restore]

    def data(self) -> list[Any]:
        return [self.verify_backup, self.restore_database, self.restore_volume, self.verify_restore]


def count_files(path: Path) -> tuple[int, int]:
    """Regular files under ``path`` and their bytes, as the manifest counts a volume."""
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            if os.path.isfile(full) and not os.path.islink(full):
                files += 1
                size += os.path.getsize(full)
    return files, size


def _swap_in_folder(
    restic: Restic, repo: Repository, snapshot: str, live: Path, staging: Path, old: Path
) -> None:
    """Each state on the way keeps a complete copy under ``live`` or ``old``; safe to repeat."""
    if old.exists() and staging.exists() and not live.exists():
        staging.rename(live)  # a crash came between the two renames: finish the swap
        shutil.rmtree(old)
        return
    if old.exists() and live.exists() and not staging.exists():
        shutil.rmtree(old)  # swapped already; only the clean-up was cut short
        return
    restore_folder(restic, repo, snapshot, staging)
    shutil.rmtree(old, ignore_errors=True)
    if live.exists():
        live.rename(old)
    staging.rename(live)
    shutil.rmtree(old, ignore_errors=True)
