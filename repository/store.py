"""One restic repository per application and storage, created on first use.

The password is random, sealed under the master key in ``backup_repositories``,
and opened only inside the worker process that runs restic. A second copy, sealed under
the same master key, lives in the storage beside the repository's own files (the key
file): with the master key and the storage alone, ``cairn catalog import`` finds every
repository again when the metadata database is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.restic import Repository
from adapters.storage_backend import folder_usage
from core import crypto, secret_contexts
from core.settings import Settings
from db.models import Application, BackupPolicy, BackupRepository, BackupStorage, Workspace
from repository.names import KEY_FILE

log = logging.getLogger(__name__)
KEY_FORMAT = 1


def repositories_root(mount_root: Path, storage_id: str) -> Path:
    """The folder of a storage holding every repository cairn keeps there, and nothing else.

    The storage's own folder may hold other data; this one is what its usage counts and what
    a forced delete removes.
    """
    return mount_root / storage_id / "workspaces"


def repository_path(settings: Settings, storage: BackupStorage, application: Application) -> Path:
    """``{storage}/workspaces/{workspace id}/applications/{application id}``."""
    return (
        repositories_root(settings.storage_mount_root, storage.proxmox_storage_id)
        / str(application.workspace_id)
        / "applications"
        / str(application.id)
    )


def relative_path(path: Path) -> str:
    """A repository's place inside its storage: workspaces/{id}/applications/{id}.

    Part of the sealing context of the key file's password, so it never changes.
    """
    return "/".join(path.parts[-4:])


def key_files(storage_root: Path) -> list[Path]:
    """The key file of every repository in a storage's folder: what a catalog import reads."""
    return sorted(storage_root.glob(f"workspaces/*/applications/*/{KEY_FILE}"))


def repository_bytes(mount_root: Path, storage_id: str) -> int:
    """cairn's own consumption of a storage: the bytes of its repositories, nothing else."""
    return folder_usage(repositories_root(mount_root, storage_id))


async def open_repository(
    session: AsyncSession, settings: Settings, application: Application, storage: BackupStorage
) -> Repository:
    """The application's repository in ``storage``; the first caller creates its password."""
    path = repository_path(settings, storage, application)
    await session.execute(
        insert(BackupRepository)
        .values(
            application_id=application.id,
            storage_id=storage.id,
            path=str(path),
            password_sealed=seal_password(
                settings, secrets.token_urlsafe(32), application.id, storage.id
            ),
        )
        .on_conflict_do_nothing(index_elements=["application_id", "storage_id"])
    )
    await session.commit()
    row = await session.scalar(
        select(BackupRepository).where(
            BackupRepository.application_id == application.id,
            BackupRepository.storage_id == storage.id,
        )
    )
    assert row is not None
    repo = Repository(path=Path(row.path), password=read_password(settings, row))
    if (repo.path / "config").exists() and not (repo.path / KEY_FILE).exists():
        workspace = await session.get(Workspace, application.workspace_id)
        assert workspace is not None
        try:
            await asyncio.to_thread(
                write_key_file, settings, repo, key_document(storage, workspace, application)
            )
        except OSError as exc:  # the backup still works; the next opening tries again
            log.warning("key file of %s not written: %s", repo.path, exc)
    return repo


def key_document(
    storage: BackupStorage, workspace: Workspace, application: Application
) -> dict[str, Any]:
    """What an import needs besides the password: whose repository this is, in which storage."""
    return {
        "format": KEY_FORMAT,
        "storage": {
            "id": str(storage.id),
            "name": storage.name,
            "type": storage.type,
            "proxmox_storage_id": storage.proxmox_storage_id,
            "capacity_gb": storage.capacity_gb,
            "connection_config": storage.connection_config,
        },
        "workspace": {"id": str(workspace.id), "name": workspace.name},
        "application": {"id": str(application.id), "name": application.name},
    }


def write_key_file(settings: Settings, repo: Repository, document: dict[str, Any]) -> None:
    """Writes the key file once the repository exists (never creates folders: a host without
    the storage mounted must not grow a look-alike); replaced atomically."""
    sealed = crypto.seal(
        repo.password.encode(),
        master_key=settings.master_key_text,
        context=secret_contexts.key_file_password(relative_path(repo.path)),
    )
    target = repo.path / KEY_FILE
    partial = target.with_name(f".{KEY_FILE}.{os.getpid()}")
    partial.write_text(json.dumps({**document, "password_sealed": sealed}, indent=2))
    partial.replace(target)


def seal_password(
    settings: Settings, password: str, application_id: uuid.UUID, storage_id: uuid.UUID
) -> str:
    """The password as ``backup_repositories.password_sealed`` holds it."""
    return crypto.seal(
        password.encode(),
        master_key=settings.master_key_text,
        context=secret_contexts.repository_password(application_id, storage_id),
    )


async def archive_repository(
    session: AsyncSession, settings: Settings, application_id: uuid.UUID | str
) -> Repository | None:
    """The repository an application's WAL archive is read from (the window, a restore or
    drill to a moment): the one in its policy's storage; without a policy, the one it was
    given last, since a catalog import brings repositories back but never policies
    (docs/recovery.md). None when there is none yet (a read never creates one)."""
    row = await current_repository(session, application_id)
    if row is None:
        return None
    return Repository(path=Path(row.path), password=read_password(settings, row))


async def current_repository(
    session: AsyncSession, application_id: uuid.UUID | str
) -> BackupRepository | None:
    """The application's repository in its policy's storage, else the one it was given last
    (``archive_repository``; an uploaded dump is stored there too); None when there is none
    yet, or it was never written."""
    storage_id = await session.scalar(
        select(BackupPolicy.storage_id).where(BackupPolicy.application_id == application_id)
    )
    query = select(BackupRepository).where(BackupRepository.application_id == application_id)
    if storage_id is not None:
        query = query.where(BackupRepository.storage_id == storage_id)
    row = await session.scalar(query.order_by(BackupRepository.created_at.desc()).limit(1))
    if row is None or not (Path(row.path) / "config").exists():
        return None
    return row


def read_password(settings: Settings, row: BackupRepository) -> str:
    return crypto.open_sealed(
        row.password_sealed,
        master_key=settings.master_key_text,
        context=secret_contexts.repository_password(row.application_id, row.storage_id),
    ).decode()
