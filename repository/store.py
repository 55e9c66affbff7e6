"""One restic repository per application and storage, created on first use.

The password is random, sealed under the master key in ``backup_repositories``,
and opened only inside the worker process that runs restic.
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.restic import Repository
from core import crypto
from core.settings import Settings
from db.models import Application, BackupRepository, BackupStorage


def repository_path(settings: Settings, storage: BackupStorage, application: Application) -> Path:
    return (
        settings.storage_mount_root
        / storage.proxmox_storage_id
        / "workspaces"
        / str(application.workspace_id)
        / "applications"
        / str(application.id)
    )


def _context(application_id: uuid.UUID, storage_id: uuid.UUID) -> str:
    return f"backup_repositories/{application_id}/{storage_id}/password"


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
            password_sealed=crypto.seal(
                secrets.token_urlsafe(32).encode(),
                master_key=settings.master_key_text,
                context=_context(application.id, storage.id),
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
    return Repository(path=Path(row.path), password=read_password(settings, row))


def read_password(settings: Settings, row: BackupRepository) -> str:
    return crypto.open_sealed(
        row.password_sealed,
        master_key=settings.master_key_text,
        context=_context(row.application_id, row.storage_id),
    ).decode()
