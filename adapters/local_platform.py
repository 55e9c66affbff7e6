"""Applications of kind ``local``: a PostgreSQL database and folders on the worker host, and
named MariaDB/MySQL and Redis databases reached by URL (``adapters/engines/``).

restic and pg_dump run in the worker itself. The database is restored into a fresh
database beside the live one and swapped in by rename; each volume into a staging folder
beside it and swapped in by rename. A drill's scratch copies are a database named
``cairn_drill_<id>`` on the application's server and folders under cairn's own data folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from adapters import pg_databases, pg_dump, uploaded_dump, volume_root
from adapters.engines.contract import BackedUp, Engine, NamedDump
from adapters.engines.schemes import engine_for
from adapters.local_folders import count_files, remove_folder, restore_folder, swap_in_folder
from adapters.pg_checks import run_read_only_checks
from adapters.pg_identity import DatabaseIdentity, protected
from adapters.platform import (
    CheckResult,
    DatabaseDump,
    Measured,
    OtherDatabase,
    PlatformError,
    PointInTime,
    ProgressFn,
    Scratch,
    SqlCheck,
    VolumeFigures,
    VolumeUpload,
)
from adapters.restic import Repository, Restic, ResticError
from adapters.storage_backend import folder_usage
from core.boundaries import (
    BoundaryError,
    check_application_database,
    check_restore_target,
    check_volume_path,
    volume_roots,
)
from core.database_url import split_database_url
from core.settings import Settings

SCRATCH_PREFIX = "cairn_drill_"
HOOK_TIMEOUT_SECONDS = 300


def scratch_database(drill_id: str) -> str:
    """The drill's scratch database, on the application's own server."""
    return f"{SCRATCH_PREFIX}{uuid.UUID(drill_id).hex[:12]}"


def drills_folder(settings: Settings) -> Path:
    """Where scratch folders go: cairn's data folder, else the system's temporary folder."""
    base = settings.data_dir if settings.data_dir else Path(tempfile.gettempdir()) / "cairn"
    return base / "drills"


def _short(run_id: str) -> str:
    """The suffix of a run's staging folders (its database's: ``pg_databases.staging_names``)."""
    return uuid.UUID(run_id).hex[:12]


class LocalPlatform:
    def __init__(
        self, settings: dict[str, Any], secrets: dict[str, Any], *, cairn: Settings, restic: Restic
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        self.cairn = cairn
        self.restic = restic

    # -- the application's database and folders, checked --------------------------------

    def _database(self) -> pg_dump.PgTarget:
        """How to reach the application's database (its server, role and password)."""
        db = self.settings.get("database")
        if not db:
            raise PlatformError("the application has no database configured", retryable=False)
        return pg_dump.PgTarget(
            host=db["host"],
            port=int(db["port"]),
            user=db.get("user"),
            dbname=db["dbname"],
            password=self.secrets.get("database_password"),
            protect=protected(self.cairn),
        )

    def _own_database(self) -> pg_dump.PgTarget:
        """The application's database, its registration checked again where the data moves."""
        database = self._database()
        try:  # the API's checks may predate a boundary rule
            check_application_database(self.settings["database"], self.cairn)
        except BoundaryError as exc:
            raise PlatformError(f"restore target refused: {exc.message}", retryable=False) from None
        return database

    def _other_database(self, into: OtherDatabase) -> pg_dump.PgTarget:
        """A platform administrator's other target, checked against the boundary rules."""
        original = self._database()
        stored = {"database_name": into.name} if into.name else {"database_url": into.url}
        try:  # checked again where the data moves: the API's checks may predate a setting
            check_restore_target(
                stored, self.settings["database"], self.cairn, by_platform_admin=True
            )
        except BoundaryError as exc:
            raise PlatformError(f"restore target refused: {exc.message}", retryable=False) from None
        # other applications' databases, and the original whatever its address: by identity
        protect = (*original.protect, *into.protect)
        if into.name:
            return replace(original, dbname=into.name, protect=protect)
        parts, _ = split_database_url(str(into.url))
        return pg_dump.PgTarget(
            parts["host"],
            int(parts["port"]),
            parts.get("user"),
            parts["dbname"],
            into.password,
            protect=(*protect, *self._identity_of(original)),
        )

    def _identity_of(self, original: pg_dump.PgTarget) -> tuple[DatabaseIdentity, ...]:
        """The original, whatever address a URL target gives its server."""
        found = pg_databases.identity(original, "the original, the application's own database")
        return (found,) if found is not None else ()

    def _target(self, into: OtherDatabase | Scratch | None) -> pg_dump.PgTarget:
        if into is None:
            return self._own_database()
        if isinstance(into, Scratch):
            return self._scratch_database(into.drill_id)
        return self._other_database(into)

    def _folders(self) -> dict[str, str]:
        return dict(self.settings.get("volumes") or {})

    def _folder(self, volume: str) -> Path:
        """The volume's folder, its path checked again against the boundary rules."""
        folders = self._folders()
        if volume not in folders:
            raise PlatformError(f"the application has no volume {volume} any more", retryable=False)
        try:  # a registration older than a boundary rule cannot be read from or written to
            return check_volume_path(folders[volume], self.cairn)
        except BoundaryError as exc:
            raise PlatformError(
                f"volume {volume} refused: {exc.message}", retryable=False
            ) from None

    def _named(self, name: str) -> tuple[Engine, str, str | None]:
        """A named database's engine, password-free URL and password."""
        stored = (self.settings.get("databases") or {}).get(name)
        if stored is None:
            raise PlatformError(f"the application has no database {name} any more", retryable=False)
        password = (self.secrets.get("database_passwords") or {}).get(name)
        return engine_for(stored["url"]), stored["url"], password

    def _recorded_identity(self, name: str) -> str:
        """The identity recorded when the named database was registered or last confirmed:
        what its server must answer before any write (``contract.check_identity``)."""
        identity = ((self.settings.get("databases") or {}).get(name) or {}).get("identity")
        if not identity:
            raise PlatformError(
                f"database {name} has no identity recorded (registered before cairn recorded"
                " one): a platform administrator confirms it before anything is written to it",
                retryable=False,
            )
        return str(identity)

    def _psql(self) -> str:
        return pg_dump.tool("psql", self.cairn.pg_bin_dir)

    # -- inventory ------------------------------------------------------------------------

    def has_database(self) -> bool:
        return bool(self.settings.get("database"))

    def volume_names(self) -> list[str]:
        return sorted(self._folders())

    def database_names(self) -> list[str]:
        return sorted(self.settings.get("databases") or {})

    def check_targets(self, database: bool, volumes: list[str]) -> None:
        if database:
            self._own_database()
        for volume in volumes:
            self._folder(volume)

    def estimate_bytes(self, database: bool, volumes: list[str]) -> int:
        total = 0
        if database:
            try:
                _, total = pg_dump.server_info(self._database(), self._psql())
            except pg_dump.DumpError as exc:
                raise PlatformError(
                    f"database unreachable: {exc.message}", retryable=exc.retryable
                ) from None
        folders = self._folders()
        return total + sum(folder_usage(Path(folders[name])) for name in volumes)

    # -- consistency ----------------------------------------------------------------------

    def quiesce(self) -> str:
        """Stops the application's writes with its configured stop command, if it has one."""
        return self._hook("stop")

    def resume(self) -> str:
        return self._hook("start")

    def _hook(self, name: str) -> str:
        argv = (self.settings.get("hooks") or {}).get(name)
        if not argv:
            past = {"stop": "stopped", "start": "started"}[name]
            return f"no {name} command configured; the application was not {past}"
        # A stop that failed is not tried again (the restore stops instead); a start is,
        # since the application must come back.
        retryable = name == "start"
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=HOOK_TIMEOUT_SECONDS, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PlatformError(str(exc), retryable=retryable) from None
        if done.returncode != 0:
            raise PlatformError(
                f"{name} command {argv[0]} exited with {done.returncode}: {done.stderr[-500:]}",
                retryable=retryable,
            )
        return f"ran the {name} command {argv[0]}"

    def snapshot(self, run_id: str, volumes: list[str]) -> PointInTime:
        """Plain folders have no point-in-time copy: the upload reads them live, and says so."""
        folders = {name: Path(self._folders()[name]) for name in volumes}
        missing = [name for name, folder in folders.items() if not folder.is_dir()]
        if missing:
            raise PlatformError(
                "volume folder(s) missing on the worker host: "
                + ", ".join(f"{name} ({folders[name]})" for name in missing),
                retryable=False,
            )
        return PointInTime(
            consistent=False,
            note="the local platform has no point-in-time snapshot for folders; files were read"
            " live, so a file changed during the upload may be captured mid-write",
            volumes={name: str(folder) for name, folder in folders.items()},
        )

    def release(self, run_id: str) -> None:
        """Nothing to release: no snapshot was made."""

    # -- moving data (backup) -------------------------------------------------------------

    def dump_database(
        self, run_id: str, repo: Repository, tags: list[str], progress: ProgressFn
    ) -> DatabaseDump:
        """pg_dump streamed into ``restic backup --stdin``: no temporary copy, bounded memory."""
        result = pg_dump.dump_into_restic(
            self._database(),
            self.restic,
            repo,
            tags,
            bin_dir=self.cairn.pg_bin_dir,
            progress=progress,
        )
        return DatabaseDump(
            result.snapshot_id,
            result.total_bytes_processed,
            result.data_added,
            result.database_size_bytes,
            result.row_counts,
            result.server_major,
        )

    def upload_volume(
        self,
        run_id: str,
        volume: str,
        handle: str,
        repo: Repository,
        tags: list[str],
        *,
        parent: str | None,
        force: bool,
        progress: ProgressFn,
    ) -> VolumeUpload:
        folder = Path(handle)
        tags = [*tags, volume_root.of(folder).tag()]  # restic keeps no node for the root
        result = self.restic.backup_paths(
            repo, folder, tags, parent=parent, force=force, progress=progress
        )
        files = result.files_new + result.files_changed + result.files_unmodified
        return VolumeUpload(
            result.snapshot_id, result.total_bytes_processed, result.data_added, files
        )

    def estimate_named(self, name: str) -> int:
        engine, url, password = self._named(name)
        return engine.size_bytes(url, password)

    def dump_named(
        self, run_id: str, name: str, repo: Repository, tags: list[str], progress: ProgressFn
    ) -> NamedDump:
        engine, url, password = self._named(name)
        return engine.dump(url, password, self.restic, repo, tags, progress)

    def export_config(self, run_id: str, repo: Repository, tags: list[str]) -> VolumeUpload | None:
        """Folders and a database URL: there are no configuration objects to keep."""
        return None

    # -- moving data (restore) ------------------------------------------------------------

    def restore_database(
        self,
        run_id: str,
        repo: Repository,
        snapshot: str,
        progress: ProgressFn,
        *,
        into: OtherDatabase | Scratch | None = None,
        protect: tuple[DatabaseIdentity, ...] = (),
        plain_sql: bool = False,
    ) -> str:
        """Restores into a fresh database, then swaps it in by rename (a drill's scratch
        database is filled afresh in place: nothing live to keep)."""
        target = self._target(into)
        target = replace(target, protect=(*target.protect, *protect))
        if isinstance(into, Scratch):
            self._fill(target, repo, snapshot, plain_sql)
            return f"database restored into {target.dbname}"
        staging, old = pg_databases.staging_names(run_id)
        pg_databases.check_writable(target, [target.dbname, staging, old])
        try:
            swapped = pg_databases.exists(target, old) and not pg_databases.exists(target, staging)
            if not swapped:  # a retry restores again: a half-done pg_restore left nothing usable
                self._fill(replace(target, dbname=staging), repo, snapshot, plain_sql)
            pg_databases.swap(target, staging, old)
        except pg_dump.DumpError:
            pg_databases.drop(target, staging)
            raise
        return f"database {target.dbname} replaced by the backup's copy"

    def _fill(
        self, copy: pg_dump.PgTarget, repo: Repository, snapshot: str, plain_sql: bool = False
    ) -> None:
        """Creates the database ``copy`` afresh and fills it from the backup's dump (or an
        uploaded plain-format script)."""
        pg_databases.create(copy, copy.dbname)
        if plain_sql:
            uploaded_dump.restore_plain(
                copy, self.restic, repo, snapshot, bin_dir=self.cairn.pg_bin_dir
            )
            return
        pg_dump.restore_from_restic(
            copy,
            self.restic,
            repo,
            snapshot,
            bin_dir=self.cairn.pg_bin_dir,
            jobs=self.cairn.restore_jobs,
        )

    def restore_volume(
        self,
        run_id: str,
        volume: str,
        repo: Repository,
        snapshot: str,
        progress: ProgressFn,
        *,
        into: Scratch | None = None,
    ) -> str:
        """Restores into a staging folder beside the volume, then swaps the folders; a
        drill's copy goes into its own folder under cairn's data folder."""
        if into is not None:
            scratch = self._scratch_folder(into.drill_id)
            # the application's files: readable by the worker's user only
            scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
            scratch.chmod(0o700)
            restore_folder(self.restic, repo, snapshot, scratch / volume)
            return f"volume {volume} restored into {scratch / volume}"
        live = self._folder(volume)
        short = _short(run_id)
        staging = live.with_name(f".{live.name}.cairn-restore-{short}")
        old = live.with_name(f".{live.name}.cairn-old-{short}")
        try:
            swap_in_folder(self.restic, repo, snapshot, live, staging, old)
        except ResticError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return f"volume {volume} replaced by the backup's copy"

    def restore_named(
        self, run_id: str, name: str, repo: Repository, snapshot: str, backed_up: BackedUp
    ) -> str:
        engine, url, password = self._named(name)
        identity = self._recorded_identity(name)
        return engine.restore(
            url, password, self.restic, repo, snapshot, backed_up, run_id, identity
        )

    def measure_named(self, name: str, backed_up: BackedUp) -> list[str]:
        engine, url, password = self._named(name)
        return engine.differences(engine.measure(url, password), backed_up.figures)

    def drill_named(
        self, drill_id: str, name: str, repo: Repository, snapshot: str, backed_up: BackedUp
    ) -> list[str]:
        engine, url, password = self._named(name)
        identity = self._recorded_identity(name)
        found = engine.drill(
            url, password, self.restic, repo, snapshot, backed_up, drill_id, identity
        )
        return engine.differences(found, backed_up.figures)

    def restore_config(self, run_id: str, repo: Repository, snapshot: str) -> str:
        raise PlatformError(
            "the local platform has no configuration objects to restore", retryable=False
        )

    def measure(
        self,
        database: bool,
        volumes: list[str],
        *,
        into: OtherDatabase | Scratch | None = None,
    ) -> Measured:
        if isinstance(into, Scratch):
            scratch = self._scratch_folder(into.drill_id)
            folders = {volume: scratch / volume for volume in volumes}
        else:
            folders = {volume: Path(self._folders()[volume]) for volume in volumes}
        rows = pg_dump.table_row_counts(self._target(into), self._psql()) if database else None
        return Measured(
            rows, {name: VolumeFigures(*count_files(folder)) for name, folder in folders.items()}
        )

    # -- drills -----------------------------------------------------------------------------

    def _scratch_database(self, drill_id: str) -> pg_dump.PgTarget:
        """The scratch database on the application's server; never the application's own."""
        own = self._own_database()
        scratch = scratch_database(drill_id)
        if scratch == own.dbname:
            raise PlatformError(
                f"the application's own database is named {scratch}", retryable=False
            )
        return replace(own, dbname=scratch)

    def _scratch_folder(self, drill_id: str) -> Path:
        """The drill's own folder; refused when it would lie among application volumes."""
        folder = drills_folder(self.cairn) / str(uuid.UUID(drill_id))
        real = Path(os.path.realpath(folder))
        for root in volume_roots(self.cairn):
            if real.is_relative_to(Path(os.path.realpath(root))):
                raise PlatformError(
                    f"the drill's scratch folder {folder} lies inside the volume root {root};"
                    " set CAIRN_DATA_DIR on the worker to a folder outside every volume root",
                    retryable=False,
                )
        return folder

    def describe_scratch(self, drill_id: str) -> dict[str, str]:
        return {
            "scratch_database": scratch_database(drill_id),
            "scratch_folder": str(drills_folder(self.cairn) / drill_id),
        }

    def run_checks(
        self, drill_id: str, checks: list[SqlCheck], timeout_seconds: int
    ) -> list[CheckResult]:
        return run_read_only_checks(self._scratch_database(drill_id), checks, timeout_seconds)

    def remove_scratch(self, drill_id: str) -> None:
        if self.has_database():
            pg_databases.drop(self._own_database(), scratch_database(drill_id))
        for name, stored in (self.settings.get("databases") or {}).items():
            if stored.get("identity"):  # without one, no drill could make a scratch copy
                engine, url, password = self._named(name)
                engine.remove_drill(url, password, drill_id, stored["identity"])
        remove_folder(drills_folder(self.cairn) / str(uuid.UUID(drill_id)))
