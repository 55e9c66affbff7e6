"""``cairn catalog import``: rebuilds backup records from a storage, for a lost metadata DB.

Every repository in a storage carries a key file (``repository.names.KEY_FILE``) with its
password sealed under the master key, and every completed backup a manifest snapshot. With
the same ``CAIRN_MASTER_KEY`` and the storage, the import recreates what restores need: the
storage row (same id, when it is gone), each repository's row (its password sealed again for
this database) and one succeeded backup per manifest (same id, metadata from the manifest).

Workspaces and applications are not recreated: the PaaS registers them again. A workspace
is found by its id or else its name, an application by its id or else its name in that
workspace; a repository whose application is not registered is reported and skipped (run the
import again once it is). Everything is read and every password opened first, then written
in one transaction: a wrong master key or an unreadable repository changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.restic import Repository, Restic, ResticError
from core import crypto, secret_contexts
from core.settings import Settings, get_settings
from core.states import RunStatus, StorageStatus, Trigger
from db import audit
from db.models import Application, BackupExecution, BackupRepository, BackupStorage, Workspace
from db.quota import allocated_gb
from db.session import make_engine, make_sessionmaker
from repository import names, store
from repository.store import KEY_FORMAT, relative_path, seal_password

ACTOR = audit.Actor(label="system:catalog-import")


class ImportRefused(Exception):
    """Nothing was imported, for the reason given."""


@dataclass
class Found:
    """One repository as the storage describes it, its password opened and manifests read."""

    document: dict[str, Any]
    repo: Repository
    manifests: list[tuple[str, str, dict[str, Any]]]  # snapshot id, snapshot time, manifest


@dataclass
class Report:
    storage_id: str = ""
    storage_created: bool = False
    repositories: int = 0
    backups_imported: list[str] = field(default_factory=list)
    backups_present: int = 0
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _read_manifest(restic: Restic, repo: Repository, snapshot_id: str) -> dict[str, Any]:
    proc = restic.dump(repo, snapshot_id, names.MANIFEST_FILE)
    assert proc.stdout is not None
    data = proc.stdout.read()
    restic.finish_dump(repo, proc)
    manifest: dict[str, Any] = json.loads(data)
    return manifest


def read_storage(settings: Settings, restic: Restic, root: Path) -> list[Found]:
    """Every repository under ``root`` with its manifests; raises before anything is written."""
    key_files = store.key_files(root)
    if not key_files:
        raise ImportRefused(
            f"no cairn repository key files under {root}: not a cairn storage, or its"
            " repositories have not been opened since key files exist (run one backup each)"
        )
    found = []
    for key_file in key_files:
        document = json.loads(key_file.read_text())
        if document.get("format") != KEY_FORMAT:
            raise ImportRefused(f"{key_file}: unknown key file format {document.get('format')}")
        relative = relative_path(key_file.parent)
        try:
            password = crypto.open_sealed(
                document["password_sealed"],
                master_key=settings.master_key_text,
                context=secret_contexts.key_file_password(relative),
            ).decode()
        except crypto.CryptoError as exc:
            raise ImportRefused(
                f"the master key does not open the repository password of {relative}"
                f" ({exc}); CAIRN_MASTER_KEY must be the key of the installation that made"
                " these backups. Nothing was imported"
            ) from None
        repo = Repository(path=key_file.parent, password=password)
        try:
            snapshots = restic.snapshots(repo, [names.part_tag(names.MANIFEST)])
            manifests = [(s.id, s.time, _read_manifest(restic, repo, s.id)) for s in snapshots]
        except ResticError as exc:
            raise ImportRefused(f"repository {relative} unreadable: {exc.message}") from None
        found.append(Found(document, repo, manifests))
    return found


async def _workspace(session: AsyncSession, described: dict[str, Any]) -> Workspace | None:
    workspace = await session.get(Workspace, uuid.UUID(described["id"]))
    if workspace is None:
        workspace = await session.scalar(
            select(Workspace).where(Workspace.name == described["name"])
        )
    return workspace


async def _application(session: AsyncSession, document: dict[str, Any]) -> Application | None:
    application = await session.get(Application, uuid.UUID(document["application"]["id"]))
    if application is not None:
        return application
    workspace = await _workspace(session, document["workspace"])
    if workspace is None:
        return None
    found: Application | None = await session.scalar(
        select(Application).where(
            Application.workspace_id == workspace.id,
            Application.name == document["application"]["name"],
        )
    )
    return found


async def _storage(
    session: AsyncSession, given: BackupStorage | None, document: dict[str, Any], report: Report
) -> BackupStorage:
    """The given storage row, else the described one (by id, then PVE id), else recreated.

    A recreated storage counts against its workspace's quota again; the data exists either
    way, so going over the quota is reported, not refused.
    """
    described = document["storage"]
    storage = given or await session.get(BackupStorage, uuid.UUID(described["id"]))
    if storage is None:
        storage = await session.scalar(
            select(BackupStorage).where(
                BackupStorage.proxmox_storage_id == described["proxmox_storage_id"]
            )
        )
    if storage is not None:
        return storage
    workspace = await _workspace(session, document["workspace"])
    if workspace is None:
        raise ImportRefused(
            f"the storage's workspace {document['workspace']['name']}"
            f" ({document['workspace']['id']}) is not registered; register it first."
            " Nothing was imported"
        )
    storage = BackupStorage(
        id=uuid.UUID(described["id"]),
        workspace_id=workspace.id,
        name=described["name"],
        type=described["type"],
        proxmox_storage_id=described["proxmox_storage_id"],
        capacity_gb=described["capacity_gb"],
        connection_config=described["connection_config"],
        status=StorageStatus.ACTIVE,
        status_message="recreated by catalog import",
    )
    session.add(storage)
    await session.flush()
    report.storage_created = True
    allocated = await allocated_gb(session, workspace.id)
    if allocated > workspace.backup_quota_gb:
        report.warnings.append(
            f"workspace {workspace.name} now allocates {allocated} GB of its"
            f" {workspace.backup_quota_gb} GB backup quota; raise the quota, or new storages"
            " are refused"
        )
    return storage


def _execution(
    found: tuple[str, str, dict[str, Any]], application: Application, storage: BackupStorage
) -> BackupExecution:
    """A succeeded backup as its manifest describes it; no policy, no Temporal run any more."""
    snapshot_id, snapshot_time, manifest = found
    return BackupExecution(
        id=uuid.UUID(manifest["execution_id"]),
        application_id=application.id,
        storage_id=storage.id,
        trigger=manifest.get("trigger") or Trigger.MANUAL,
        status=RunStatus.SUCCEEDED,
        size_bytes=sum(p.get("bytes_processed", 0) for p in manifest.get("parts", [])),
        backup_path=manifest.get("repository"),
        started_at=datetime.fromisoformat(manifest["started_at"]),
        completed_at=datetime.fromisoformat(snapshot_time),
        metadata_={
            **manifest,
            "manifest_snapshot_id": snapshot_id,
            "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )


async def write_catalog(
    session: AsyncSession, settings: Settings, found: list[Found], given: BackupStorage | None
) -> Report:
    """Writes what ``read_storage`` found; the caller commits (or rolls back on a refusal)."""
    report = Report()
    storage = await _storage(session, given, found[0].document, report)
    report.storage_id = str(storage.id)
    for item in found:
        relative = relative_path(item.repo.path)
        application = await _application(session, item.document)
        if application is None:
            described = item.document["application"]
            report.skipped.append(
                f"{relative}: application {described['name']} ({described['id']}) is not"
                " registered; register it and import again"
            )
            continue
        existing = await session.scalar(
            select(BackupRepository).where(
                BackupRepository.application_id == application.id,
                BackupRepository.storage_id == storage.id,
            )
        )
        if existing is not None and Path(existing.path) != item.repo.path:
            report.skipped.append(
                f"{relative}: application {application.id} already has a repository in this"
                f" storage at {existing.path}"
            )
            continue
        if existing is None:
            sealed = seal_password(settings, item.repo.password, application.id, storage.id)
            session.add(
                BackupRepository(
                    application_id=application.id,
                    storage_id=storage.id,
                    path=str(item.repo.path),
                    password_sealed=sealed,
                )
            )
        report.repositories += 1
        imported = []
        for manifest in item.manifests:
            if await session.get(BackupExecution, uuid.UUID(manifest[2]["execution_id"])):
                report.backups_present += 1
                continue
            session.add(_execution(manifest, application, storage))
            imported.append(manifest[2]["execution_id"])
        report.backups_imported += imported
        audit.record(
            session,
            ACTOR,
            "catalog.import",
            "application",
            application.id,
            workspace_id=application.workspace_id,
            details={
                "repository": str(item.repo.path),
                "storage_id": str(storage.id),
                "backups": imported,
            },
        )
    return report


async def run_import(settings: Settings, storage_ref: str) -> Report:
    engine = make_engine(settings.database_url)
    try:
        sessions = make_sessionmaker(engine)
        given = None
        async with sessions() as session:
            try:
                storage_id = uuid.UUID(storage_ref)
            except ValueError:
                root = Path(storage_ref)
            else:
                given = await session.get(BackupStorage, storage_id)
                if given is None:
                    raise ImportRefused(f"no storage {storage_id} in this database")
                root = settings.storage_mount_root / given.proxmox_storage_id
        if not root.is_dir():
            raise ImportRefused(f"{root} is not a folder (is the storage mounted?)")
        found = await asyncio.to_thread(read_storage, settings, Restic(settings.restic_bin), root)
        async with sessions() as session, session.begin():
            if given is not None:
                given = await session.get(BackupStorage, given.id)
            return await write_catalog(session, settings, found, given)
    finally:
        await engine.dispose()


@click.group()
def catalog() -> None:
    """cairn's own records of backups, rebuilt from a storage after a disaster."""


@catalog.command("import")
@click.option(
    "--storage",
    "storage_ref",
    required=True,
    help="a storage id of this database, or the folder the storage is mounted at",
)
def import_storage(storage_ref: str) -> None:
    """Recreate the backup records (and repositories, and the storage) from a storage.

    Needs CAIRN_DATABASE_URL (migrated) and the CAIRN_MASTER_KEY that made the backups.
    Prints a JSON report; safe to run again (present records are left as they are).
    """
    try:
        report = asyncio.run(run_import(get_settings(), storage_ref))
    except ImportRefused as exc:
        raise click.ClickException(str(exc)) from None
    except OperationalError as exc:
        raise click.ClickException(f"cannot reach cairn's database: {exc.orig}") from None
    except ProgrammingError as exc:
        raise click.ClickException(
            f"cairn's database is not ready ({str(exc.orig).splitlines()[0]});"
            " run `cairn migrate` first"
        ) from None
    click.echo(json.dumps(asdict(report), indent=2))
