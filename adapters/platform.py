"""The platform contract: the only road from a backup, restore or drill to an application's data.

An application lives on a platform (its ``kind``): the local platform is a PostgreSQL URL
and folders on the worker host; the Kubernetes platform is PVCs, CSI VolumeSnapshots,
mover Jobs and ConfigMaps/Secrets. Activities keep the bookkeeping (metadata rows,
repository opening, tags, the manifest, reuse of a snapshot on retry, forget on retry,
heartbeats); everything that reads or writes the application's data is a method here.
Workflows never see a platform, so a new platform needs no workflow change.

What a new platform must implement
----------------------------------
A class with the methods of ``Platform`` below, constructed as
``Implementation(settings, secrets, *, cairn=Settings, restic=Restic)`` (``settings`` and
``secrets`` are the application's stored ``platform_settings`` and opened
``platform_secrets``), registered by kind in ``IMPLEMENTATIONS``. The methods are
synchronous: activities run them in a thread while they heartbeat, and pass ``progress``
to the long ones (call it with restic's ``Progress`` as often as there is news; it raises
when the activity was cancelled, which must stop the work). restic runs where the data is:
in the worker for local, in a mover Job for Kubernetes; ``repo`` carries the repository
and its password. Every method is safe to repeat after a crash part-way (a retry calls
it again with the same ``run_id``). Failures are ``AdapterError`` subclasses: the
platform's own are ``PlatformError``; ``ResticError`` and ``DumpError`` may pass through.
Something a platform cannot do raises ``PlatformError(..., retryable=False)`` saying so.
``tests/conformance/`` runs the same tests against every platform; a new one joins there by
one fixture (docs/architecture.md, *The platform contract*).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from adapters.engines.contract import BackedUp, NamedDump
from adapters.errors import AdapterError
from adapters.pg_identity import DatabaseIdentity

if TYPE_CHECKING:
    from adapters.restic import Progress, Repository, Restic
    from core.settings import Settings

ProgressFn = Callable[["Progress"], None]


class PlatformError(AdapterError):
    """The platform refused a target, lacks a capability, or failed to reach the data."""


@dataclass(frozen=True)
class PointInTime:
    """What the snapshot step produced: where to read each volume, and how consistent it is.

    ``volumes`` maps a volume name to a handle only this platform understands (a folder
    path for local, a VolumeSnapshot name for Kubernetes); it travels through the workflow
    as a string and comes back to ``upload_volume``.
    """

    consistent: bool
    note: str
    volumes: dict[str, str]


@dataclass(frozen=True)
class DatabaseDump:
    """A database dump stored as one snapshot, with the figures taken inside the dump's snapshot."""

    snapshot_id: str
    bytes_processed: int
    data_added: int
    database_size_bytes: int
    row_counts: dict[str, int]
    server_major: int


@dataclass(frozen=True)
class VolumeUpload:
    """One volume (or the configuration objects) stored as one snapshot."""

    snapshot_id: str
    bytes_processed: int
    data_added: int
    files: int


@dataclass(frozen=True)
class VolumeFigures:
    """What verification compares with the manifest: regular files and their bytes."""

    files: int
    bytes: int


@dataclass(frozen=True)
class Measured:
    """Row counts per table (None when the database was not asked for) and figures per volume."""

    row_counts: dict[str, int] | None
    volumes: dict[str, VolumeFigures] = field(default_factory=dict)


@dataclass(frozen=True)
class OtherDatabase:
    """A platform administrator's restore into a database other than the application's own.

    Exactly one of ``name`` (a database on the application's own server) and ``url`` (a
    password-free PostgreSQL URL of any server, with ``password`` beside it) is set. The
    platform checks it against the boundary rules before writing.
    """

    name: str | None = None
    url: str | None = None
    password: str | None = None
    # other applications' databases, found by the caller, that the target must not be
    protect: tuple[DatabaseIdentity, ...] = ()


@dataclass(frozen=True)
class Scratch:
    """A drill's scratch copies: where a drill restores instead of over the application's data.

    A restore into a target like ``OtherDatabase``, but the platform names it from
    ``drill_id`` (a database ``cairn_drill_<id>`` on the application's server, volume copies
    of its own) so that a retry, the checks and ``remove_scratch`` find it; no boundary rule
    refuses cairn's own scratch names, and nothing live is replaced, so nothing is staged.
    """

    drill_id: str


@dataclass(frozen=True)
class SqlCheck:
    """A drill's check: one read-only query that must return a single true value."""

    name: str
    sql: str


@dataclass(frozen=True)
class CheckResult:
    name: str
    outcome: str  # passed | failed | error
    message: str


class Platform(Protocol):
    """Everything a backup, restore or drill does to an application's data."""

    # -- inventory ------------------------------------------------------------------------

    def has_database(self) -> bool:
        """Whether the application has a database to back up."""
        ...

    def volume_names(self) -> list[str]:
        """The application's volumes, sorted."""
        ...

    def check_targets(self, database: bool, volumes: list[str]) -> None:
        """Re-checks the registration of the named parts against ``core/boundaries.py``.

        The API checked them when they were stored; a rule added since, or a folder swapped
        for a symlink, is caught here. Raises ``PlatformError`` (not retryable). Methods that
        write check their own targets as well.
        """
        ...

    def estimate_bytes(self, database: bool, volumes: list[str]) -> int:
        """About how many bytes a first backup of these parts reads (the quota check)."""
        ...

    # -- consistency ----------------------------------------------------------------------

    def quiesce(self) -> str:
        """Stops the application's writes (hook, scale to zero); a note of what was done."""
        ...

    def resume(self) -> str:
        """Undoes ``quiesce``; safe to call when nothing was stopped."""
        ...

    def snapshot(self, run_id: str, volumes: list[str]) -> PointInTime:
        """A point in time of ``volumes`` to upload from; says whether it is consistent.

        Reads only: the backup calls ``check_targets`` for the volumes first.
        """
        ...

    def release(self, run_id: str) -> None:
        """Frees what ``snapshot`` (and the movers) of ``run_id`` hold; safe to repeat."""
        ...

    # -- moving data (backup) -------------------------------------------------------------

    def dump_database(
        self, run_id: str, repo: Repository, tags: list[str], progress: ProgressFn
    ) -> DatabaseDump:
        """Dumps the database into one snapshot tagged ``tags``, with its row counts."""
        ...

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
        """Uploads the volume from ``handle`` (from ``snapshot``) as one snapshot.

        ``parent`` is the previous snapshot of the volume (incremental); ``force`` re-reads
        every file (full).
        """
        ...

    def export_config(self, run_id: str, repo: Repository, tags: list[str]) -> VolumeUpload | None:
        """Stores the application's configuration objects; None when the platform has none."""
        ...

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
        """Restores the dump into a staged copy, then swaps it in by rename; a note.

        Into the application's own database, ``into`` another one, or a drill's scratch
        database (made afresh). Nothing live is overwritten until the copy is complete;
        repeating after a crash finishes the swap. ``protect``: databases the one written
        must not be, asked on the connection that writes (a restore from another
        application: the source's database). ``plain_sql``: the snapshot is an uploaded
        plain-format script, not a custom-format archive (``adapters/uploaded_dump.py``;
        a platform that cannot run one refuses, not retryable).
        """
        ...

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
        """Restores the volume into a staged copy beside it, then swaps it in; a note.

        ``into`` a drill's scratch copy instead, which leaves the application's volume alone;
        the note says where the copy is.
        """
        ...

    def restore_config(self, run_id: str, repo: Repository, snapshot: str) -> str:
        """Puts back the configuration objects ``export_config`` stored; a note."""
        ...

    def measure(
        self,
        database: bool,
        volumes: list[str],
        *,
        into: OtherDatabase | Scratch | None = None,
    ) -> Measured:
        """Row counts of the database (or ``into``) and file figures of the volumes (or of
        their copies in the drill's ``Scratch``)."""
        ...

    # -- drills: restores ``into=Scratch(drill_id)``, checked, then removed ---------------

    def describe_scratch(self, drill_id: str) -> dict[str, str]:
        """Where the drill's scratch copies will live (recorded on the drill for operators)."""
        ...

    def run_checks(
        self, drill_id: str, checks: list[SqlCheck], timeout_seconds: int
    ) -> list[CheckResult]:
        """Each check in its own read-only transaction against the scratch database."""
        ...

    def remove_scratch(self, drill_id: str) -> None:
        """Removes the drill's scratch copies; safe to repeat, also for an old drill."""
        ...


@runtime_checkable
class NamedDatabases(Protocol):
    """The application's named databases beside its main one (MariaDB/MySQL, Redis:
    docs/engines.md), an optional capability: a platform without it has none (Kubernetes
    today). Each goes through the engine of its URL's scheme (``adapters/engines/``)."""

    def database_names(self) -> list[str]:
        """The named databases, sorted."""
        ...

    def estimate_named(self, name: str) -> int:
        """About how many bytes a first dump of the named database reads."""
        ...

    def dump_named(
        self, run_id: str, name: str, repo: Repository, tags: list[str], progress: ProgressFn
    ) -> NamedDump:
        """The named database into one snapshot tagged ``tags``, with its figures."""
        ...

    def restore_named(
        self,
        run_id: str,
        name: str,
        repo: Repository,
        snapshot: str,
        backed_up: BackedUp,
    ) -> str:
        """Replaces the named database with the backup's, proven beside it first; a note."""
        ...

    def measure_named(self, name: str, backed_up: BackedUp) -> list[str]:
        """How the live named database differs from ``backed_up`` (empty: it matches)."""
        ...

    def drill_named(
        self, drill_id: str, name: str, repo: Repository, snapshot: str, backed_up: BackedUp
    ) -> list[str]:
        """The named database's backup loaded into drill ``drill_id``'s scratch copy (never
        the live one), measured, the scratch removed; how it differs from ``backed_up``."""
        ...


def named_databases(platform: Platform) -> NamedDatabases | None:
    """The platform's named databases, when it has the capability."""
    return platform if isinstance(platform, NamedDatabases) else None


# kind -> (module, class); imported on first use, so a platform's dependencies load only
# where an application of that kind is backed up.
IMPLEMENTATIONS: dict[str, tuple[str, str]] = {
    "local": ("adapters.local_platform", "LocalPlatform"),
    "kubernetes": ("adapters.kubernetes.platform", "KubernetesPlatform"),
}


def open_platform(
    kind: str,
    settings: dict[str, Any],
    secrets: dict[str, Any],
    *,
    cairn: Settings,
    restic: Restic,
) -> Platform:
    """The platform of an application of ``kind``, given its settings and opened secrets."""
    if kind not in IMPLEMENTATIONS:
        raise PlatformError(f"unknown platform kind {kind!r}", retryable=False)
    module_name, class_name = IMPLEMENTATIONS[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not f"{module_name}.".startswith(f"{exc.name}."):
            raise  # the platform's module is there; something it imports is missing
        raise PlatformError(
            f"the {kind} platform is not available in this cairn build", retryable=False
        ) from None
    implementation: Callable[..., Platform] = getattr(module, class_name)
    return implementation(settings, secrets, cairn=cairn, restic=restic)
