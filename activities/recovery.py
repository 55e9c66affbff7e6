"""A restore to a moment (docs/pitr.md): recovery in a scratch server on the worker, then the
database moved out into a new database on the application's server.

The application's source and identity checks are the archiver's, its repository the one the
window is read from (``ArchiveActivities._load_archive``: no policy needed, as after a catalog
import); the moment and the target are in the restore row.
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
from activities.support import read_metadata, to_completion, with_progress
from adapters import pg_databases
from adapters.local_platform import scratch_database
from adapters.pg_archive import scratch, stream
from adapters.pg_archive.window import OutsideWindow, Plan, plan, read_archive, read_stamp, stamp
from adapters.pg_dump import DumpError, PgTarget, table_row_counts, tool
from adapters.pg_identity import DatabaseIdentity, identity_of_current
from adapters.restic import Progress
from contracts.archive import LATEST, RESTORED_DATABASE, TARGET_TIME
from contracts.drill import Recovered
from core import metrics
from core.restore_details import RestoreDetails
from core.states import RunStatus
from db import audit
from db.models import Application, BackupRestore, RestoreDrill

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

    async def _job(self, restore_id: str) -> tuple[str, str | None, datetime | None, str]:
        """The application, the target database's name (None: over the live one), the
        moment (None: latest) and how the moment was asked."""
        async with self.sessions() as session:
            restore = await session.get(BackupRestore, uuid.UUID(restore_id))
            if restore is None:
                raise fatal("the restore was deleted", "RestoreDeleted")
            details = RestoreDetails.from_dict(restore.details)
            asked = str((restore.details or {})[TARGET_TIME])
            if details.target is not None and details.target.database_name is None:
                raise fatal("a restore to a moment goes into a database by name", "NoTarget")
            moment = None if asked == LATEST else read_stamp(asked)
            name = details.target.database_name if details.target else None
            return str(restore.application_id), name, moment, asked

    @activity.defn
    async def restore_to_time(self, restore_id: str) -> str:
        """Recovers the application's database to the moment into the target database, or,
        over the live one, into the copy beside it that ``swap_in_moment`` swaps in; the copy
        is verified against the recovered server (every table's rows counted in both)."""
        application_id, into_name, moment, asked = await self._job(restore_id)
        source = await read_metadata(self.sessions, lambda s: self._load_archive(s, application_id))
        staging = pg_databases.staging_names(restore_id)[0]
        into = replace(source.target, dbname=into_name or staging)

        def run(_progress: Callable[[Progress], None]) -> tuple[str, DatabaseIdentity | None]:
            tables, _ = self._recover_into(source, restore_id, moment, into)
            where = f"database {into_name}" if into_name else f"the copy {staging}"
            made = _identity(into) if into_name else None
            return f"recovered to {asked} into {where}; {tables} tables verified", made

        with temporal_errors("restore to a moment"):
            note, made = await with_progress(run)
        if made is not None:  # the archiver accepts it beside the live database
            async with self.sessions() as session:
                restore = await session.get(BackupRestore, uuid.UUID(restore_id))
                assert restore is not None
                restore.details = {**(restore.details or {}), RESTORED_DATABASE: str(made)}
                await session.commit()
        return note

    @activity.defn
    async def recover_drill_database(self, drill_id: str) -> Recovered:
        """A drill to a moment: the application's database recovered to the drill's moment
        into the drill's scratch database (which its cleanup drops), verified as a restore
        to a moment verifies its copy."""
        async with self.sessions() as session:
            drill = await session.get(RestoreDrill, uuid.UUID(drill_id))
            if drill is None:
                raise fatal(f"restore drill {drill_id} does not exist", "NotFound")
            application_id = str(drill.application_id)
            asked = str((drill.details or {})[TARGET_TIME])
        source = await read_metadata(self.sessions, lambda s: self._load_archive(s, application_id))
        into = replace(source.target, dbname=scratch_database(drill_id))
        moment = None if asked == LATEST else read_stamp(asked)

        def run(_progress: Callable[[Progress], None]) -> Recovered:
            tables, reached = self._recover_into(source, drill_id, moment, into)
            with stream.connect(into) as conn:
                row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            return Recovered(
                int(row[0]) if row else 0,
                f"recovered to {asked if moment else f'latest ({stamp(reached)})'} into"
                f" {into.dbname}; {tables} tables verified",
            )

        with temporal_errors("recovering to the moment"):
            return await with_progress(run)

    def _recover_into(
        self, source: Source, run_id: str, moment: datetime | None, into: PgTarget
    ) -> tuple[int, datetime]:
        """Recovers the database to ``moment`` (None: latest) in a scratch server, moves it
        out into the new database ``into`` and verifies it; the scratch server is removed in
        every outcome. How many tables, and the moment recovered to."""
        place, recovery = self._recover(source, run_id, moment)
        try:
            scratch.move_out(place, source.target, into, self.settings.pg_bin_dir)
            tables = self._verified(place.database(source.target), into)
        finally:
            scratch.remove(place)
        return tables, recovery.reaches

    def _verified(self, recovered: PgTarget, copy: PgTarget) -> int:
        """Every table of the copy holds as many rows as in the recovered server; how many
        tables there are."""
        psql = tool("psql", self.settings.pg_bin_dir)
        expected, actual = table_row_counts(recovered, psql), table_row_counts(copy, psql)
        differ = [
            f"table {t}: {actual.get(t)} rows, the recovered server has {n}"
            for t, n in expected.items()
            if actual.get(t) != n
        ] + [f"table {t} is not in the recovered server" for t in actual.keys() - expected]
        if differ:
            raise fatal(
                f"the copy in {copy.dbname} differs from the recovered database: "
                + "; ".join(differ),
                "VerifyFailed",
            )
        return len(expected)

    async def _live(self, restore_id: str) -> tuple[PgTarget, str, str]:
        """The live database (checked as the archiver checks it) and the restore's names
        beside it."""
        application_id, into_name, _, _ = await self._job(restore_id)
        if into_name is not None:
            raise fatal(
                "this restore goes into a new database, not over the live one", "NotInPlace"
            )
        target = await read_metadata(self.sessions, lambda s: self._target(s, application_id))
        staging, old = pg_databases.staging_names(restore_id)
        return target, staging, old

    @activity.defn
    async def swap_in_moment(self, restore_id: str) -> str:
        """The verified copy renamed into the live database's place, the live one dropped
        (the application is stopped); safe to repeat after a crash."""
        target, staging, old = await self._live(restore_id)
        with temporal_errors("swapping the copy in"):
            await to_completion(lambda: pg_databases.swap(target, staging, old))
        return f"database {target.dbname} replaced by the copy recovered to the moment"

    @activity.defn
    async def abandon_moment(self, restore_id: str) -> str:
        """After a failure: the copy dropped, and a swap stopped half way undone."""
        target, staging, old = await self._live(restore_id)
        with temporal_errors("removing the copy"):
            return await to_completion(lambda: pg_databases.abandon(target, staging, old))

    def _recover(
        self, source: Source, run_id: str, moment: datetime | None
    ) -> tuple[scratch.Scratch, Plan]:
        """A scratch server recovered to ``moment``, running, and its plan. Planned again
        when the archiver forgot a shipment the plan read meanwhile (superseded: its
        successor holds its WAL)."""
        attempt = 1
        while True:
            try:
                recovery = plan(read_archive(self.restic.snapshots(source.repo)), moment)
            except OutsideWindow as exc:
                raise fatal(str(exc), "OutsideWindow") from None
            place = scratch.Scratch(
                Path(tempfile.gettempdir()) / f"cairn-scratch-{run_id}",
                recovery.base.major,
                "postgres" if os.getuid() == 0 else None,
            )
            scratch.remove(place)  # what an earlier attempt left
            try:
                scratch.recover(place, self.restic, source.repo, recovery)
                return place, recovery
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
        return [
            self.restore_to_time,
            self.swap_in_moment,
            self.abandon_moment,
            self.recover_drill_database,
        ]


def _identity(target: PgTarget) -> DatabaseIdentity:
    with stream.connect(target) as conn:
        return identity_of_current(conn)
