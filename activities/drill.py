"""The steps of a restore drill: a backup restored into scratch copies, proven, then removed.

A drill reads the repository and writes only its scratch copies: a database named
``cairn_drill_<id>`` on the application's PostgreSQL server, folders under cairn's own
data folder, and for each named database a scratch copy of its engine's (a MariaDB database
``<name>_cairn_drill_<id>`` beside it, made only on the registered server; a Redis server on
the worker), removed within its own step. It never touches the application's database or
volumes and takes no run lock, so the application's backups and restores go on beside it.
Every scratch name follows from the drill's id, so a retried step (or the cleanup after a
crash) finds what an earlier attempt made.

It does not run ``restic check``: restic 0.14 takes an exclusive lock for it, which would
make a concurrent backup fail. Restoring reads every blob of the backup through restic's
authenticated decryption instead, so a damaged pack fails the drill all the same.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.copy_reading import Copy, backup_with_copy, open_copy
from activities.errors import fatal, temporal_errors
from activities.restore import (
    Backup,
    backup_to_read,
    measured_as_backed_up,
    read_failure,
    restore_database_of,
    restore_volume_of,
    snapshots_present,
)
from activities.support import ReadingActivities, heartbeating, platform_of, read_metadata
from adapters.engines.contract import BackedUp
from adapters.errors import AdapterError
from adapters.local_folders import remove_folder
from adapters.local_platform import drills_folder
from adapters.platform import Platform, Scratch, SqlCheck, named_databases
from adapters.restic import Restic
from contracts.archive import TARGET_TIME
from contracts.drill import (
    CLEANUP_ATTEMPTS,
    BeginDrill,
    CheckOutcome,
    DatabaseDrilled,
    DrillDatabase,
    DrillPlan,
    DrillRecorded,
    DrillVolume,
    FinishDrill,
    Verified,
)
from core import metrics
from core.run_outcome import shorten
from core.states import FINISHED, LIVE, RunStatus
from db import audit
from db.models import (
    Application,
    BackupExecution,
    BackupPolicy,
    RestoreDrill,
    RestoreDrillPolicy,
)
from db.runs import newest_success, settle
from repository import names
from repository.offsite import CHOSEN_KEY, SOURCE_KEY, offsite_source
from services import offsite_targets, recovery_window
from services.errors import Refusal
from services.recovery_window import Moment

ACTOR = audit.Actor(label="system:restore-drill")
# Each SQL check runs in its own read-only transaction under this statement timeout.
CHECK_TIMEOUT_SECONDS = 60


@dataclass
class Loaded(Backup):
    drill: RestoreDrill
    copy: Copy | None = None
    """The offsite copy the drill reads instead of the primary storage (docs/offsite.md)."""

    @property
    def manifest(self) -> dict[str, Any]:
        manifest = super().manifest
        return self.copy.manifest(manifest) if self.copy is not None else manifest


class DrillActivities(ReadingActivities):
    async def _load(self, session: AsyncSession, drill_id: str) -> Loaded:
        drill = await session.get(RestoreDrill, uuid.UUID(drill_id))
        if drill is None:
            raise fatal(f"restore drill {drill_id} does not exist", "NotFound")
        target_id = offsite_source(drill.details)
        if target_id is None:
            backup = await backup_to_read(
                session, self.settings, drill.backup_execution_id, drill.application_id, "drill"
            )
            return Loaded(backup.execution, backup.application, backup.repo, drill)
        execution, application = await backup_with_copy(
            session, drill.backup_execution_id, drill.application_id, "drill"
        )  # the primary storage stays untouched, as in a restore from the copy
        copy = await open_copy(
            session, self.settings, self.restic, execution, application, target_id
        )
        return Loaded(execution, application, copy.repo, drill, copy)

    async def _drill_of(
        self, session: AsyncSession, drill_id: str
    ) -> tuple[RestoreDrill, Application]:
        drill = await session.get(RestoreDrill, uuid.UUID(drill_id))
        if drill is None:
            raise fatal(f"restore drill {drill_id} does not exist", "NotFound")
        application = await session.get(Application, drill.application_id)
        assert application is not None  # drills cascade with their application
        return drill, application

    def _reader(self, loaded: Loaded) -> Restic:
        return loaded.copy.restic if loaded.copy is not None else self.restic

    def _reading(self, loaded: Loaded) -> Platform:
        """The application's platform, reading the backup where the drill reads it."""
        return platform_of(loaded.application, self.settings, self._reader(loaded))

    async def _insert_scheduled(self, session: AsyncSession, begin: BeginDrill) -> RestoreDrill:
        """The row of a scheduled drill, made by its first step (idempotent by workflow id)."""
        req = begin.request
        await session.execute(
            insert(RestoreDrill)
            .values(
                application_id=uuid.UUID(req.application_id),
                workflow_id=begin.workflow_id,
                run_id=begin.run_id,
                trigger=req.trigger,
                schedule_id=req.schedule_id,
                status=RunStatus.PENDING,
            )
            .on_conflict_do_nothing(index_elements=["workflow_id"])
        )
        await session.commit()
        drill = await session.scalar(
            select(RestoreDrill).where(RestoreDrill.workflow_id == begin.workflow_id)
        )
        assert drill is not None
        return drill

    async def _scheduled(self, session: AsyncSession, drill: RestoreDrill) -> dict[str, Any]:
        """What a scheduled drill drills, from its policy, decided now and committed with the
        start (a retry drills the same): a moment (``target_time`` ``latest`` or ``random``,
        drawn and checked as a manual drill's is when requested), the newest backup with a
        finished offsite copy (``source``: ``offsite`` or a target), or {}: the newest backup
        from the primary. A moment no longer restorable (archiving turned off, an empty
        window) or no copied backup fails the drill with the reason."""
        policy = (
            await session.execute(
                select(RestoreDrillPolicy.target_time, RestoreDrillPolicy.source)
                .join(BackupPolicy, BackupPolicy.id == RestoreDrillPolicy.policy_id)
                .where(BackupPolicy.application_id == drill.application_id)
            )
        ).first()
        target, source = policy if policy is not None else (None, None)
        if target is not None:
            try:
                return await recovery_window.moment_to_drill(
                    session, self.settings, drill.application_id, cast(Moment, target)
                )
            except Refusal as exc:
                raise fatal(exc.detail, "NotRestorable") from None
        if source is None:
            return {}
        at = None if source == "offsite" else uuid.UUID(source)
        application = await session.get(Application, drill.application_id)
        assert application is not None  # drills cascade with their application
        chosen = await offsite_targets.newest_copied(session, application, at)
        if chosen is None:
            there = "at any offsite target" if at is None else f"at offsite target {at}"
            raise fatal(
                f"the drill policy reads an offsite copy, and no backup of the application has"
                f" a finished copy {there} yet; wait for a copy or set the source to primary",
                "NoCopy",
            )
        drill.backup_execution_id = chosen.execution.id
        return {SOURCE_KEY: str(chosen.target_id), CHOSEN_KEY: chosen.why}

    @activity.defn
    async def begin_drill(self, begin: BeginDrill) -> DrillPlan:
        """Picks the newest successful backup (manual drills: the API picked it) and starts."""
        req = begin.request
        async with self.sessions() as session:
            if req.drill_id:
                drill = await session.get(RestoreDrill, uuid.UUID(req.drill_id))
                if drill is None:  # the API's transaction is not visible yet: retry
                    raise ApplicationError("drill not visible yet", type="NotYetVisible")
            else:
                drill = await self._insert_scheduled(session, begin)
                if drill.status == RunStatus.PENDING and drill.details is None:
                    drill.details = await self._scheduled(session, drill) or None
            if drill.status not in LIVE:
                raise fatal(f"this drill had already ended ({drill.status})", "AlreadyEnded")
            moment = (drill.details or {}).get(TARGET_TIME)
            if moment is not None:  # to a moment: recovered from the archive, no backup
                await self._start(session, begin, drill, {TARGET_TIME: moment})
                return DrillPlan(str(drill.id), None, True, [], moment)
            if drill.backup_execution_id is None:
                newest = await newest_success(session, drill.application_id)
                if newest is None:
                    raise fatal(
                        "the application has no successful backup to drill; take a backup first",
                        "NoBackup",
                    )
                drill.backup_execution_id = newest.id
            execution = await session.get(BackupExecution, drill.backup_execution_id)
            offsite = offsite_source(drill.details)
            if offsite is not None:  # a pruned backup's copy may be read
                execution, _ = await backup_with_copy(
                    session, drill.backup_execution_id, drill.application_id, "drill"
                )
            elif execution is None or execution.status != RunStatus.SUCCEEDED:
                raise fatal("the backup to drill no longer exists or was pruned", "MissingBackup")
            source = {SOURCE_KEY: str(offsite)} if offsite is not None else {}
            await self._start(session, begin, drill, {"backup_id": str(execution.id), **source})
            parts = names.parts_of(execution.metadata_)
            return DrillPlan(
                str(drill.id),
                str(execution.id),
                names.DATABASE in parts,
                names.volumes_in(parts),
                databases=names.databases_in(parts),
            )

    async def _start(
        self, session: AsyncSession, begin: BeginDrill, drill: RestoreDrill, what: dict[str, str]
    ) -> None:
        """A pending drill marked running with its policy's checks and scratch names, audited
        with ``what`` it drills; committed. A drill running already (a retry) is left."""
        if drill.status == RunStatus.PENDING:
            checks = await session.scalar(
                select(RestoreDrillPolicy.checks)
                .join(BackupPolicy, BackupPolicy.id == RestoreDrillPolicy.policy_id)
                .where(BackupPolicy.application_id == drill.application_id)
            )
            application = await session.get(Application, drill.application_id)
            assert application is not None  # drills cascade with their application
            scratch = self._platform(application).describe_scratch(str(drill.id))
            drill.status, drill.started_at = RunStatus.RUNNING, datetime.now(UTC)
            drill.run_id = begin.run_id
            drill.details = {**(drill.details or {}), "checks": checks or [], **scratch}
            audit.record(
                session,
                ACTOR,
                "drill.start",
                "restore_drill",
                drill.id,
                workspace_id=uuid.UUID(begin.request.workspace_id),
                details={**what, "workflow_id": begin.workflow_id},
            )
        await session.commit()

    @activity.defn
    async def verify_drill_backup(self, drill_id: str) -> str:
        """The backup's snapshots are in the repository (a shared lock: backups go on)."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, drill_id))
        with temporal_errors(translate=read_failure):
            count = await snapshots_present(self._reader(loaded), loaded)
        return f"{count} snapshots present"

    @activity.defn
    async def restore_drill_database(self, drill_id: str) -> int:
        """Restores the dump into the scratch database; the dump's bytes, which it read back."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, drill_id))
        platform = self._reading(loaded)
        # a failure leaves the scratch copy to the cleanup step
        await restore_database_of(platform, loaded, drill_id, Scratch(drill_id))
        return int(loaded.part(names.DATABASE).get("bytes_processed") or 0)

    @activity.defn
    async def restore_drill_volume(self, job: DrillVolume) -> str:
        """Restores one volume's snapshot into the drill's scratch area."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, job.drill_id))
        platform = self._reading(loaded)
        return await restore_volume_of(
            platform, loaded, job.drill_id, job.volume, Scratch(job.drill_id)
        )

    @activity.defn
    async def drill_named_database(self, job: DrillDatabase) -> DatabaseDrilled:
        """A named database (MariaDB, Redis) loaded into its scratch copy through its engine,
        measured against the manifest and removed (docs/engines.md): VerifyFailed naming
        what differs."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, job.drill_id))
        named = named_databases(self._reading(loaded))
        part = names.database_part(job.database)
        details = (loaded.manifest.get("databases") or {}).get(job.database)
        if named is None or details is None:
            raise fatal(f"the backup's database {job.database} cannot be drilled", "Unsupported")
        backed_up = BackedUp.of(details)
        snapshot = loaded.snapshot(part)
        with temporal_errors(translate=read_failure):
            problems = await heartbeating(
                asyncio.to_thread(
                    named.drill_named, job.drill_id, job.database, loaded.repo, snapshot, backed_up
                )
            )
        if problems:
            raise fatal(
                f"database {job.database} restored in scratch differs from the backup: "
                + "; ".join(problems),
                "VerifyFailed",
            )
        n = len(backed_up.figures)
        what = (
            f"row counts of {n} tables"
            if details.get("engine") == "mariadb"
            else (f"key counts of {n} logical databases")
        )
        return DatabaseDrilled(
            int(loaded.part(part).get("bytes_processed") or 0),
            f"as in the backup: {what}, scratch copy removed",
        )

    @activity.defn
    async def verify_drill(self, plan: DrillPlan) -> Verified:
        """Row counts and file counts and sizes of the scratch copies equal the manifest's."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, plan.drill_id))
        platform = self._reading(loaded)
        figures = await measured_as_backed_up(
            platform, loaded, plan.database, plan.volumes, Scratch(plan.drill_id)
        )
        volumes = {
            volume: v for k, v in figures.items() if (volume := names.volume_of(k)) is not None
        }
        matched = [f"{figures['tables']} tables' row counts"] if plan.database else []
        matched += [
            f"{name}: {v['files']} files, {v['bytes']} bytes" for name, v in volumes.items()
        ]
        return Verified(
            sum(v["bytes"] for v in volumes.values()), "as in the backup: " + "; ".join(matched)
        )

    @activity.defn
    async def run_drill_checks(self, plan: DrillPlan) -> list[CheckOutcome]:
        """The application's SQL checks, read-only, against the scratch database."""
        drill, application = await read_metadata(
            self.sessions, lambda s: self._drill_of(s, plan.drill_id)
        )  # not the backup: a drill to a moment has none, and the checks need only the copy
        checks: list[dict[str, str]] = (drill.details or {}).get("checks", [])
        if not checks:
            return []
        if not plan.database:
            return [
                CheckOutcome(c["name"], "error", "the backup holds no database to check")
                for c in checks
            ]
        platform = self._platform(application)
        queries = [SqlCheck(c["name"], c["sql"]) for c in checks]
        with temporal_errors():
            results = await heartbeating(
                asyncio.to_thread(
                    platform.run_checks, plan.drill_id, queries, CHECK_TIMEOUT_SECONDS
                )
            )
        return [CheckOutcome(r.name, r.outcome, r.message) for r in results]

    @activity.defn
    async def finish_drill(self, finish: FinishDrill) -> DrillRecorded:
        """Records the outcome (metadata database only); settled once, the first one wins."""
        begin = finish.begin
        async with self.sessions() as session:
            drill = (
                await session.get(RestoreDrill, uuid.UUID(finish.drill_id))
                if finish.drill_id
                else None
            )
            if drill is None and not begin.request.drill_id:
                app_id = uuid.UUID(begin.request.application_id)
                if await session.get(Application, app_id) is not None:
                    drill = await self._insert_scheduled(session, begin)
            if drill is None:  # a manual run whose API request never committed its row
                return DrillRecorded(None, settled=False)
            if finish.checks:
                drill.checks = [asdict(c) for c in finish.checks]
            drill.details = {**(drill.details or {}), "notes": finish.notes}
            drill.bytes_restored = finish.bytes_restored
            if finish.status != RunStatus.SUCCEEDED:
                settled = await settle(session, drill, finish.status, finish.message, ACTOR)
                await session.commit()
                if settled is not None:
                    metrics.count_unsuccessful("drill", settled.trigger, settled.started_at)
                return DrillRecorded(str(drill.id), settled is not None)
            if drill.status != RunStatus.RUNNING:
                return DrillRecorded(str(drill.id), settled=False)
            now = datetime.now(UTC)
            drill.status, drill.completed_at = RunStatus.SUCCEEDED, now
            drill.recovery_seconds = finish.recovery_seconds
            audit.record(
                session,
                ACTOR,
                "drill.succeeded",
                "restore_drill",
                drill.id,
                workspace_id=uuid.UUID(begin.request.workspace_id),
                details={
                    "recovery_seconds": finish.recovery_seconds,
                    **(
                        {TARGET_TIME: drill.details[TARGET_TIME]}
                        if TARGET_TIME in drill.details
                        else {"backup_id": str(drill.backup_execution_id)}
                    ),
                },
            )
            await session.commit()
        application_id = begin.request.application_id
        metrics.DRILL_LAST_SUCCESS.labels(application_id).set(now.timestamp())
        if finish.recovery_seconds is not None:
            metrics.DRILL_RECOVERY_SECONDS.labels(application_id).set(finish.recovery_seconds)
        return DrillRecorded(str(drill.id), settled=True)

    @activity.defn
    async def clean_up_drill(self, drill_id: str) -> str:
        """Drops the scratch database and removes the scratch folder, in every outcome.

        Also removes what earlier drills of the application left because their workflow
        ended without its cleanup (terminated in Temporal, then settled by the reconciler).
        Retried by the workflow; the last attempt writes what is left on the row instead of
        failing, so an operator finds it.
        """
        async with self.sessions() as session:
            drill = await session.get(RestoreDrill, uuid.UUID(drill_id))
            application = await session.get(Application, drill.application_id) if drill else None
            earlier = []
            if application is not None:
                earlier = list(
                    await session.scalars(
                        select(RestoreDrill.id)
                        .where(
                            RestoreDrill.application_id == application.id,
                            RestoreDrill.id != uuid.UUID(drill_id),
                            RestoreDrill.status.in_(FINISHED),
                            RestoreDrill.details["cleanup"].astext.is_(None),
                        )
                        .limit(20)
                    )
                )
        removed = [uuid.UUID(drill_id), *earlier]
        try:
            if application is not None:
                platform = self._platform(application)
                for each in removed:
                    await heartbeating(asyncio.to_thread(platform.remove_scratch, str(each)))
            else:  # a deleted application took its drills' rows and its settings along: what
                # is left to find is a local drill's scratch folder in the worker's data folder
                folder = drills_folder(self.settings) / str(uuid.UUID(drill_id))
                await heartbeating(asyncio.to_thread(remove_folder, folder))
        except (ApplicationError, AdapterError, OSError) as exc:
            note = shorten(f"cleanup incomplete: {getattr(exc, 'message', None) or exc}")
            if activity.info().attempt < CLEANUP_ATTEMPTS:
                raise ApplicationError(note, type="CleanupFailed") from None
            activity.logger.error("drill %s: %s", drill_id, note)
            removed = [uuid.UUID(drill_id)]
        else:
            note = "scratch database and folder removed"
        async with self.sessions() as session:
            for each in removed:
                row = await session.get(RestoreDrill, each)
                if row is not None:
                    mine = each == uuid.UUID(drill_id)
                    row.details = {
                        **(row.details or {}),
                        "cleanup": note if mine else f"{note} by the cleanup of drill {drill_id}",
                    }
            await session.commit()
        return note

    def control(self) -> list[Any]:
        return [self.begin_drill, self.finish_drill]

    def data(self) -> list[Any]:
        return [
            self.verify_drill_backup,
            self.restore_drill_database,
            self.restore_drill_volume,
            self.drill_named_database,
            self.verify_drill,
            self.run_drill_checks,
            self.clean_up_drill,
        ]
