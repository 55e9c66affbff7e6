"""A restore to a moment (docs/pitr.md): recovery in a scratch server on the worker, then the
database moved out into a new database on the application's server.

The application's source, repository and identity checks are the archiver's
(``ArchiveActivities._load``); the moment and the target are in the restore row.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.archive import ArchiveActivities, Source
from activities.errors import fatal, temporal_errors
from activities.support import read_metadata, with_progress
from adapters.pg_archive import scratch
from adapters.pg_archive.window import OutsideWindow, plan, read_archive, read_stamp
from adapters.pg_dump import DumpError
from adapters.restic import Progress
from contracts.archive import LATEST, TARGET_TIME
from core import metrics
from core.restore_details import RestoreDetails
from core.states import RunStatus
from db import audit
from db.models import Application, BackupRestore

ACTOR = audit.Actor(label="system:restore-to-time-workflow")
PLAN_ATTEMPTS = 3


class RecoveryActivities(ArchiveActivities):
    @activity.defn
    async def begin_restore_to_time(self, restore_id: str) -> None:
        async with self.sessions() as session:
            restore = await session.get(BackupRestore, uuid.UUID(restore_id))
            if restore is None:  # the API's transaction may not be visible yet: retried
                raise ApplicationError("restore not visible yet", type="NotYetVisible")
            if restore.status != RunStatus.PENDING:
                return
            application = await session.get(Application, restore.application_id)
            assert application is not None
            restore.status, restore.started_at = RunStatus.RUNNING, datetime.now(UTC)
            audit.record(
                session,
                ACTOR,
                "restore.start",
                "backup_restore",
                restore.id,
                workspace_id=application.workspace_id,
                details={TARGET_TIME: (restore.details or {}).get(TARGET_TIME)},
            )
            await session.commit()
        metrics.RESTORES_STARTED.inc()

    async def _job(self, restore_id: str) -> tuple[str, str, datetime | None, str]:
        """The application, the target database's name, the moment (None: latest) and how
        the moment was asked."""
        async with self.sessions() as session:
            restore = await session.get(BackupRestore, uuid.UUID(restore_id))
            if restore is None:
                raise fatal("the restore was deleted", "RestoreDeleted")
            details = RestoreDetails.from_dict(restore.details)
            asked = str((restore.details or {})[TARGET_TIME])
            if details.target is None or details.target.database_name is None:
                raise fatal("a restore to a moment needs a target database", "NoTarget")
            moment = None if asked == LATEST else read_stamp(asked)
            return str(restore.application_id), details.target.database_name, moment, asked

    @activity.defn
    async def restore_to_time(self, restore_id: str) -> str:
        """Recovers the application's database to the moment into the target database."""
        application_id, into_name, moment, asked = await self._job(restore_id)
        source = await read_metadata(self.sessions, lambda s: self._load(s, application_id))

        def run(_progress: Callable[[Progress], None]) -> str:
            place = self._recover(source, restore_id, moment)
            try:
                into = replace(source.target, dbname=into_name)
                scratch.move_out(place, source.target, into, self.settings.pg_bin_dir)
            finally:
                scratch.remove(place)
            return f"recovered to {asked} into database {into_name}"

        with temporal_errors("restore to a moment"):
            return await with_progress(run)

    def _recover(self, source: Source, restore_id: str, moment: datetime | None) -> scratch.Scratch:
        """A scratch server recovered to ``moment``, running. Planned again when the archiver
        forgot a shipment the plan read meanwhile (superseded: its successor holds its WAL)."""
        attempt = 1
        while True:
            try:
                recovery = plan(read_archive(self.restic.snapshots(source.repo)), moment)
            except OutsideWindow as exc:
                raise fatal(str(exc), "OutsideWindow") from None
            place = scratch.Scratch(
                Path(tempfile.gettempdir()) / f"cairn-scratch-{restore_id}",
                recovery.base.major,
                "postgres" if os.getuid() == 0 else None,
            )
            scratch.remove(place)  # what an earlier attempt left
            try:
                scratch.recover(place, self.restic, source.repo, recovery)
                return place
            except DumpError:
                scratch.remove(place)
                present = {snapshot.id for snapshot in self.restic.snapshots(source.repo)}
                read = [recovery.base.snapshot_id, *(s.snapshot_id for s in recovery.shipments)]
                if attempt == PLAN_ATTEMPTS or set(read) <= present:
                    raise
                attempt += 1

    def control(self) -> list[Any]:
        return [self.begin_restore_to_time]

    def data(self) -> list[Any]:
        return [self.restore_to_time]
