"""The steps of a restore drill: a backup restored into scratch copies, proven, then removed.

A drill reads the repository and writes only its scratch copies: a database named
``cairn_drill_<id>`` on the application's PostgreSQL server and folders under cairn's own
data folder. It never touches the application's database or volumes and takes no run lock,
so the application's backups and restores go on beside it. Every scratch name follows
from the drill's id, so a retried step (or the cleanup after a crash) finds what an earlier
attempt made.

It does not run ``restic check``: restic 0.14 takes an exclusive lock for it, which would
make a concurrent backup fail. Restoring reads every blob of the backup through restic's
authenticated decryption instead, so a damaged pack fails the drill all the same.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.restore import (
    Backup,
    backup_to_read,
    database_failure,
    own_database,
    read_failure,
    restore_copy,
    restore_folder,
    snapshots_present,
    verify_against_manifest,
)
from activities.support import fatal, heartbeating, read_metadata, to_completion
from adapters import pg_databases, pg_dump
from adapters.restic import Restic, ResticError
from contracts.drill import (
    BeginDrill,
    CheckOutcome,
    DrillPlan,
    DrillRecorded,
    DrillVolume,
    FinishDrill,
    Verified,
)
from core import crypto, metrics
from core.boundaries import volume_roots
from core.run_outcome import shorten
from core.settings import Settings
from db import audit
from db.models import (
    Application,
    BackupExecution,
    BackupPolicy,
    RestoreDrill,
    RestoreDrillPolicy,
)
from db.runs import FINISHED, RUNNING_DRILL, newest_success, settle

DRILL_WORKFLOW = "RestoreDrillWorkflow"
ACTOR = audit.Actor(label="system:restore-drill")
SCRATCH_PREFIX = "cairn_drill_"
# Each SQL check runs in its own read-only transaction under this statement timeout.
CHECK_TIMEOUT_SECONDS = 60
# Cleanup is retried this often (the workflow's retry policy); the last attempt notes a failure.
CLEANUP_ATTEMPTS = 10


@dataclass
class Loaded(Backup):
    drill: RestoreDrill


def scratch_database(drill_id: object) -> str:
    return f"{SCRATCH_PREFIX}{uuid.UUID(str(drill_id)).hex[:12]}"


def drills_folder(settings: Settings) -> Path:
    """Where scratch folders go: cairn's data folder, else the system's temporary folder."""
    base = settings.data_dir if settings.data_dir else Path(tempfile.gettempdir()) / "cairn"
    return base / "drills"


def scratch_folder(settings: Settings, drill_id: object) -> Path:
    """The drill's own folder; refused when it would lie among application volumes."""
    folder = drills_folder(settings) / str(uuid.UUID(str(drill_id)))
    real = Path(os.path.realpath(folder))
    for root in volume_roots(settings):
        if real.is_relative_to(Path(os.path.realpath(root))):
            raise fatal(
                f"the drill's scratch folder {folder} lies inside the volume root {root};"
                " set CAIRN_DATA_DIR on the worker to a folder outside every volume root",
                "TargetRefused",
            )
    return folder


def evaluate(rows: list[tuple[Any, ...]]) -> tuple[str, str]:
    """A check passes when its query returned exactly one value, and that value is true."""
    if len(rows) != 1 or len(rows[0]) != 1:
        shape = f"{len(rows)} rows" if len(rows) != 1 else f"{len(rows[0])} columns"
        return "failed", f"returned {shape}; a check must return a single true value"
    value = rows[0][0]
    if value is True:
        return "passed", "returned true"
    if value is False or value is None:
        return "failed", f"returned {'false' if value is False else 'NULL'}"
    return "failed", f"returned {str(value)[:100]!r}, not a boolean"


def run_read_only_checks(
    target: pg_dump.PgTarget, checks: list[dict[str, str]], timeout_seconds: int
) -> list[CheckOutcome]:
    """Each check in its own READ ONLY transaction with a statement timeout, rolled back.

    The query goes through the extended protocol (``binary=True``), which accepts exactly
    one statement: a check cannot end its transaction and write in a second one.
    """
    try:
        conn = psycopg.connect(
            pg_dump.conninfo(target), password=target.password or "", autocommit=True,
            connect_timeout=15,
        )  # fmt: skip
    except psycopg.OperationalError as exc:
        raise ApplicationError(f"cannot reach the scratch database: {exc}") from None
    outcomes: list[CheckOutcome] = []
    timeout = sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{timeout_seconds}s"))
    with conn:
        for check in checks:
            try:
                conn.execute("BEGIN TRANSACTION READ ONLY")
                conn.execute(timeout)
                # bytes: the query text comes from the check, exactly as stored
                rows = conn.execute(check["sql"].encode(), binary=True).fetchall()
            except psycopg.Error as exc:
                message = shorten(str(exc).strip() or type(exc).__name__, 500)
                outcomes.append(CheckOutcome(check["name"], "error", message))
            else:
                outcomes.append(CheckOutcome(check["name"], *evaluate(rows)))
            finally:
                conn.execute("ROLLBACK")
    return outcomes


class DrillActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, restic: Restic
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.restic = restic

    async def _load(self, session: AsyncSession, drill_id: str) -> Loaded:
        drill = await session.get(RestoreDrill, uuid.UUID(drill_id))
        if drill is None:
            raise fatal(f"restore drill {drill_id} does not exist", "NotFound")
        backup = await backup_to_read(
            session, self.settings, drill.backup_execution_id, drill.application_id, "drill"
        )
        return Loaded(backup.execution, backup.application, backup.repo, drill)

    def _scratch(self, loaded: Loaded) -> pg_dump.PgTarget:
        """The scratch database on the application's server; never the application's own."""
        own = own_database(loaded.application, self.settings)
        scratch = scratch_database(loaded.drill.id)
        if scratch == own.dbname:
            raise fatal(f"the application's own database is named {scratch}", "TargetRefused")
        return replace(own, dbname=scratch)

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
                status="pending",
            )
            .on_conflict_do_nothing(index_elements=["workflow_id"])
        )
        await session.commit()
        drill = await session.scalar(
            select(RestoreDrill).where(RestoreDrill.workflow_id == begin.workflow_id)
        )
        assert drill is not None
        return drill

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
            if drill.status not in RUNNING_DRILL:
                raise fatal(f"this drill had already ended ({drill.status})", "AlreadyEnded")
            if drill.backup_execution_id is None:
                newest = await newest_success(session, drill.application_id)
                if newest is None:
                    raise fatal(
                        "the application has no successful backup to drill; take a backup first",
                        "NoBackup",
                    )
                drill.backup_execution_id = newest.id
            execution = await session.get(BackupExecution, drill.backup_execution_id)
            if execution is None or execution.status != "succeeded":
                raise fatal("the backup to drill no longer exists or was pruned", "MissingBackup")
            if drill.status == "pending":
                checks = await session.scalar(
                    select(RestoreDrillPolicy.checks)
                    .join(BackupPolicy, BackupPolicy.id == RestoreDrillPolicy.policy_id)
                    .where(BackupPolicy.application_id == drill.application_id)
                )
                drill.status, drill.started_at = "running", datetime.now(UTC)
                drill.run_id = begin.run_id
                drill.details = {
                    **(drill.details or {}),
                    "checks": checks or [],
                    "scratch_database": scratch_database(drill.id),
                    "scratch_folder": str(drills_folder(self.settings) / str(drill.id)),
                }
                audit.record(
                    session, ACTOR, "drill.start", "restore_drill", drill.id,
                    workspace_id=uuid.UUID(req.workspace_id),
                    details={"backup_id": str(execution.id), "workflow_id": begin.workflow_id},
                )  # fmt: skip
            await session.commit()
            parts = [p["part"] for p in (execution.metadata_ or {}).get("parts", [])]
            return DrillPlan(
                str(drill.id), str(execution.id), "database" in parts,
                sorted(p.removeprefix("volume:") for p in parts if p.startswith("volume:")),
            )  # fmt: skip

    @activity.defn
    async def verify_drill_backup(self, drill_id: str) -> str:
        """The backup's snapshots are in the repository (a shared lock: backups go on)."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, drill_id))
        try:
            count = await snapshots_present(
                self.restic, loaded.repo, loaded.execution.id, loaded.manifest
            )
        except ResticError as exc:
            raise read_failure(exc) from None
        return f"{count} snapshots present"

    @activity.defn
    async def restore_drill_database(self, drill_id: str) -> int:
        """Restores the dump into the scratch database; the dump's bytes, which it read back."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, drill_id))
        scratch = self._scratch(loaded)
        part = loaded.part("database")
        try:
            await restore_copy(
                self.restic, loaded.repo, str(part["snapshot_id"]), scratch,
                self.settings.pg_bin_dir,
            )  # fmt: skip
        except pg_dump.DumpError as exc:
            raise database_failure(exc) from None  # the cleanup step drops the scratch copy
        return int(part.get("bytes_processed") or 0)

    @activity.defn
    async def restore_drill_volume(self, job: DrillVolume) -> str:
        """Restores one volume's snapshot into the drill's scratch folder."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, job.drill_id))
        scratch = scratch_folder(self.settings, job.drill_id)
        # the application's files: readable by the worker's user only
        scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        scratch.chmod(0o700)
        folder = scratch / job.volume
        snapshot = loaded.snapshot(f"volume:{job.volume}")
        try:
            # to its end: the cleanup must not race a restic still writing into the folder
            await to_completion(lambda: restore_folder(self.restic, loaded.repo, snapshot, folder))
        except ResticError as exc:
            raise read_failure(exc) from None
        return f"volume {job.volume} restored into {folder}"

    @activity.defn
    async def verify_drill(self, plan: DrillPlan) -> Verified:
        """Row counts and file counts and sizes of the scratch copies equal the manifest's."""
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, plan.drill_id))
        folder = scratch_folder(self.settings, plan.drill_id)
        figures = await verify_against_manifest(
            loaded.manifest,
            self._scratch(loaded) if plan.database else None,
            {volume: folder / volume for volume in plan.volumes},
            self.settings.pg_bin_dir,
        )
        volumes = {k.removeprefix("volume:"): v for k, v in figures.items() if k != "tables"}
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
        loaded = await read_metadata(self.sessions, lambda s: self._load(s, plan.drill_id))
        checks: list[dict[str, str]] = (loaded.drill.details or {}).get("checks", [])
        if not checks:
            return []
        if not plan.database:
            return [
                CheckOutcome(c["name"], "error", "the backup holds no database to check")
                for c in checks
            ]
        scratch = self._scratch(loaded)
        return await heartbeating(
            asyncio.to_thread(run_read_only_checks, scratch, checks, CHECK_TIMEOUT_SECONDS)
        )

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
            if finish.status != "succeeded":
                settled = await settle(session, drill, finish.status, finish.message, ACTOR)
                await session.commit()
                if settled is not None:
                    metrics.count_unsuccessful("drill", settled.trigger, settled.started_at)
                return DrillRecorded(str(drill.id), settled is not None)
            if drill.status != "running":
                return DrillRecorded(str(drill.id), settled=False)
            now = datetime.now(UTC)
            drill.status, drill.completed_at = "succeeded", now
            drill.recovery_seconds = finish.recovery_seconds
            audit.record(
                session, ACTOR, "drill.succeeded", "restore_drill", drill.id,
                workspace_id=uuid.UUID(begin.request.workspace_id),
                details={"recovery_seconds": finish.recovery_seconds,
                         "backup_id": str(drill.backup_execution_id)},
            )  # fmt: skip
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
            earlier = [] if application is None else list(
                await session.scalars(
                    select(RestoreDrill.id).where(
                        RestoreDrill.application_id == application.id,
                        RestoreDrill.id != uuid.UUID(drill_id),
                        RestoreDrill.status.in_(FINISHED),
                        RestoreDrill.details["cleanup"].astext.is_(None),
                    ).limit(20)
                )
            )  # fmt: skip
        removed = [uuid.UUID(drill_id), *earlier]
        try:
            server = None
            if application is not None and application.platform_settings.get("database"):
                server = own_database(application, self.settings)
            for each in removed:
                if server is not None:
                    await heartbeating(
                        asyncio.to_thread(pg_databases.drop, server, scratch_database(each))
                    )
                folder = drills_folder(self.settings) / str(each)
                await heartbeating(asyncio.to_thread(_remove_folder, folder))
        except (ApplicationError, pg_dump.DumpError, crypto.CryptoError, OSError) as exc:
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
            self.verify_drill,
            self.run_drill_checks,
            self.clean_up_drill,
        ]


def _remove_folder(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
