"""The archiver's steps: stream and ship WAL for a stretch, take a base backup, stop.

The application's database is reached as the local platform reaches it (its registered
server, role and sealed password); Kubernetes applications are refused for now
(docs/pitr.md). pg_receivewal's spool lives on the worker's disk between stretches, so the
next stretch resumes from its ``.partial``; a worker without it resumes from the slot.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import fatal, temporal_errors, to_application_error
from activities.support import read_metadata, with_progress
from adapters.errors import AdapterError
from adapters.pg_archive import base_backup, stream
from adapters.pg_archive.window import Shipment, read_archive, stamp, window
from adapters.pg_dump import PgTarget
from adapters.pg_identity import DatabaseIdentity, protected
from adapters.restic import Progress, Repository, Restic, ResticError
from contracts.archive import RESTORED_DATABASE, SLOT_LOST, Stretch, StretchJob
from core import crypto, metrics, secret_contexts
from core.boundaries import BoundaryError, check_application_database
from core.settings import Settings
from db import audit
from db.models import Application, BackupPolicy, BackupRestore, BackupStorage
from repository.names import KEY_FILE
from repository.store import archive_repository, open_repository
from schedules.cron import next_times

SHIP_SECONDS = 5.0
"""How often the spool is shipped: the archiver's part of the recovery point objective."""
CATCH_UP_SECONDS = 10.0
ACTOR = audit.Actor(label="system:archiver")


@dataclass(frozen=True)
class Source:
    application_id: str
    target: PgTarget
    repo: Repository
    restored: tuple[DatabaseIdentity, ...] = ()
    """The new databases its restores to a moment made on its server (``stream.prepare``)."""


def spool_of(settings: Settings, application_id: str) -> Path:
    base = settings.data_dir if settings.data_dir else Path(tempfile.gettempdir()) / "cairn"
    return base / "wal-spool" / application_id


class ArchiveActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, restic: Restic
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.restic = restic

    async def _target(self, session: AsyncSession, application_id: str) -> PgTarget:
        """The application's database as the worker reaches it; no policy needed (a deleted
        policy's archiver still drops its slot)."""
        application = await session.get(Application, application_id)
        if application is None:
            raise fatal("the application was deleted", "ApplicationDeleted")
        if application.platform_kind != "local":
            raise fatal(
                "continuous archiving is not available for this platform yet", "Unsupported"
            )
        db = application.platform_settings.get("database")
        if not db:
            raise fatal("the application has no database configured", "NoDatabase")
        try:
            check_application_database(db, self.settings)
            secrets: dict[str, Any] = (
                crypto.open_json(
                    application.platform_secrets,
                    master_key=self.settings.master_key_text,
                    context=secret_contexts.application_secrets(application.id),
                )
                if application.platform_secrets
                else {}
            )
        except BoundaryError as exc:
            raise fatal(
                f"the application's database is refused: {exc.message}", "Refused"
            ) from None
        except crypto.CryptoError as exc:
            raise fatal(str(exc), "SecretsUnavailable") from None
        return PgTarget(
            db["host"],
            int(db["port"]),
            db.get("user"),
            db["dbname"],
            secrets.get("database_password"),
            protect=protected(self.settings),
        )

    async def _load(self, session: AsyncSession, application_id: str) -> Source:
        target = await self._target(session, application_id)
        application = await session.get(Application, application_id)
        assert application is not None
        policy = await session.scalar(
            select(BackupPolicy).where(BackupPolicy.application_id == application.id)
        )
        storage = await session.get(BackupStorage, policy.storage_id) if policy else None
        if storage is None:
            # retried: the API starts the archiver just before the policy's row commits
            raise to_application_error(
                AdapterError("the application has no backup policy with a storage", retryable=True)
            )
        try:
            repo = await open_repository(session, self.settings, application, storage)
            if not (repo.path / KEY_FILE).exists():
                # made here, so its key file is written with it: an archive-only repository
                # is found by a catalog import from its first shipment on
                await asyncio.to_thread(self.restic.init, repo)
                repo = await open_repository(session, self.settings, application, storage)
        except BoundaryError as exc:
            raise fatal(f"the application's storage is refused: {exc.message}", "Refused") from None
        except crypto.CryptoError as exc:
            raise fatal(str(exc), "SecretsUnavailable") from None
        except ResticError as exc:
            raise to_application_error(exc) from None
        return await self._source(session, application, target, repo)

    async def _load_archive(self, session: AsyncSession, application_id: str) -> Source:
        """The application as a recovery reads its archive: no policy needed (after a catalog
        import the repository is back before any policy is), and nothing created."""
        target = await self._target(session, application_id)
        application = await session.get(Application, application_id)
        assert application is not None
        try:
            repo = await archive_repository(session, self.settings, application.id)
        except crypto.CryptoError as exc:
            raise fatal(str(exc), "SecretsUnavailable") from None
        if repo is None:
            raise fatal("the application has no archive in any storage", "NoArchive")
        return await self._source(session, application, target, repo)

    async def _source(
        self, session: AsyncSession, application: Application, target: PgTarget, repo: Repository
    ) -> Source:
        made = await session.scalars(
            select(BackupRestore.details[RESTORED_DATABASE].astext).where(
                BackupRestore.application_id == application.id,
                BackupRestore.details.has_key(RESTORED_DATABASE),
            )
        )
        restored = tuple(DatabaseIdentity.parse(text) for text in made if text)
        return Source(str(application.id), target, repo, restored)

    def _stream(
        self, source: Source, seconds: int, progress: Callable[[Progress], None]
    ) -> Stretch:
        """Runs pg_receivewal and ships its spool every few seconds, for ``seconds``."""
        slot = stream.slot_name(source.application_id)
        spool = spool_of(self.settings, source.application_id)
        self.restic.init(source.repo)
        stream.prepare(source.target, slot, source.restored)
        receiver: subprocess.Popen[bytes] | None = None
        last: Shipment | None = None
        shipments = restarts = 0
        end = time.monotonic() + seconds
        try:
            while True:
                if receiver is None or receiver.poll() is not None:
                    if receiver is not None:
                        restarts += 1
                        assert receiver.stderr is not None
                        activity.logger.warning(
                            "pg_receivewal ended: %s", receiver.stderr.read().decode()[-500:]
                        )
                    receiver = stream.receiver(
                        source.target, slot, spool / "wal", self.settings.pg_bin_dir
                    )
                until = stream.covered_until(source.target, slot, CATCH_UP_SECONDS)
                if until is not None:
                    shipped = stream.ship(
                        spool / "wal",
                        spool / "outbox",
                        self.restic,
                        source.repo,
                        source.application_id,
                        until,
                    )
                    if shipped is not None:
                        shipments += 1
                        if stream.superseded(last, shipped):
                            assert last is not None
                            try:  # another writer's lock: the next shipment tries again
                                self.restic.forget(source.repo, [last.snapshot_id])
                            except ResticError as exc:
                                activity.logger.info("kept a superseded shipment: %s", exc)
                        last = shipped
                state = stream.slot_state(source.target, slot)
                metrics.archiver_seen(
                    source.application_id,
                    last.until if last else None,
                    state.retained_bytes,
                    state.keep_limit_bytes,
                    state.lost,
                )
                progress(Progress(0, 0, shipments, 0, 0.0))
                if state.lost:  # nothing more can come on it: the workflow replaces it
                    activity.logger.warning("slot %s lost: the stretch ends for a new one", slot)
                    break
                if time.monotonic() >= end:
                    break
                time.sleep(SHIP_SECONDS)
        finally:
            if receiver is not None:
                receiver.terminate()
                receiver.wait()
        state = stream.slot_state(source.target, slot)
        return Stretch(
            shipments,
            stamp(last.until) if last else None,
            restarts,
            state.retained_bytes,
            state.keep_limit_bytes,
            state.lost,
        )

    @activity.defn
    async def archive_wal(self, job: StretchJob) -> Stretch:
        """One stretch of streaming; cancelling it (archiving turned off) stops it."""
        source = await read_metadata(self.sessions, lambda s: self._load(s, job.application_id))
        with temporal_errors("archiving WAL"):
            stretch = await with_progress(
                lambda progress: self._stream(source, job.seconds, progress)
            )
            if stretch.slot_lost:
                await self._audit_lost_slot(source)
        return stretch

    async def _audit_lost_slot(self, source: Source) -> None:
        """Says plainly that the window has a gap from its last archived moment on (to the
        base backup taken after the workflow replaces the slot): ``archive.slot_lost``."""
        snapshots = await asyncio.to_thread(self.restic.snapshots, source.repo)
        latest = window(read_archive(snapshots)).latest
        async with self.sessions() as session:
            application = await session.get(Application, source.application_id)
            if application is None:
                return
            audit.record(
                session,
                ACTOR,
                SLOT_LOST,
                "application",
                application.id,
                workspace_id=application.workspace_id,
                details={
                    "slot": stream.slot_name(source.application_id),
                    "last_archived": stamp(latest) if latest else None,
                },
            )
            await session.commit()

    @activity.defn
    async def take_base_backup(self, application_id: str) -> str:
        """A physical base backup into the repository; the moment it is consistent from."""
        source = await read_metadata(self.sessions, lambda s: self._load(s, application_id))
        slot = stream.slot_name(application_id)

        def take(_progress: Callable[[Progress], None]) -> str:
            self.restic.init(source.repo)
            stream.prepare(source.target, slot, source.restored)
            taken = base_backup.take(
                source.target,
                slot,
                self.restic,
                source.repo,
                application_id,
                bin_dir=self.settings.pg_bin_dir,
            )
            return stamp(taken.consistent_from)

        with temporal_errors("base backup"):
            return await with_progress(take)

    @activity.defn
    async def next_base_backup(self, application_id: str) -> str:
        """When the next base backup is due: the policy's next fire time (its cron in its
        time zone), so base backups follow the schedule the dumps do; a day from now when the
        policy is gone or its cron never fires again."""
        now = datetime.now(UTC)
        async with self.sessions() as session:
            policy = await session.scalar(
                select(BackupPolicy).where(BackupPolicy.application_id == application_id)
            )
        fires = next_times(policy.schedule, ZoneInfo(policy.timezone), 1, now) if policy else []
        return (fires[0] if fires else now + timedelta(days=1)).astimezone(UTC).isoformat()

    @activity.defn
    async def stop_archiving(self, application_id: str) -> None:
        """Drops the slot, so the server no longer keeps WAL for a stopped archiver, and this
        worker's spool: pg_receivewal resumes from a spool's last segment, so one left behind
        would make an archiver started again later ask a new slot for WAL long removed."""
        target = await read_metadata(self.sessions, lambda s: self._target(s, application_id))
        with temporal_errors("dropping the replication slot"):
            await with_progress(
                lambda _p: stream.drop_slot(target, stream.slot_name(application_id))
            )
        shutil.rmtree(spool_of(self.settings, application_id), ignore_errors=True)
        metrics.archiver_stopped(application_id)

    def data(self) -> list[Any]:
        return [
            self.archive_wal,
            self.take_base_backup,
            self.next_base_backup,
            self.stop_archiving,
        ]
