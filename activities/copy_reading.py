"""Reading a backup back from its offsite copy instead of the primary storage.

A restore may name the target whose copy it reads (``offsite_target_id`` in its row's
details, set by ``services/restores.py``); its steps then open that copy with the target's
everyday credentials (reading is all an append-only server needs) and never the primary
storage, which may be gone. ``restic copy`` gives the copied snapshots new ids, so each part
of the backup is found there by its tags.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from activities.errors import fatal, to_application_error
from adapters.restic import Repository, Restic, ResticError
from adapters.restic_remote import RemoteReader
from core import crypto
from core.settings import Settings
from core.states import CopyStatus, RunStatus
from db.models import Application, BackupCopy, BackupExecution, OffsiteTarget
from repository import names
from repository.offsite import everyday_remote


@dataclass(frozen=True)
class Copy:
    """An opened offsite copy: the restic reading it, its repository, each part's snapshot."""

    restic: Restic
    repo: Repository
    snapshots: dict[str, str]

    def manifest(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """The backup's manifest with each part's snapshot id as the copy names it."""
        parts = [
            {**part, "snapshot_id": self.snapshots[part["part"]]}
            for part in manifest.get("parts", [])
        ]
        return {**manifest, "parts": parts}


async def backup_with_copy(
    session: AsyncSession,
    execution_id: uuid.UUID | None,
    application_id: uuid.UUID,
    purpose: str,
) -> tuple[BackupExecution, Application]:
    """A backup read from its offsite copy and its application: a successful one, or one the
    primary's retention pruned since (its copy outlives it); MissingBackup otherwise."""
    execution = await session.get(BackupExecution, execution_id) if execution_id else None
    application = await session.get(Application, application_id)
    before = (execution.metadata_ or {}).get("status_before_prune") if execution else None
    readable = execution is not None and (
        execution.status == RunStatus.SUCCEEDED
        or (execution.status == RunStatus.PRUNED and before in (None, RunStatus.SUCCEEDED))
    )
    if execution is None or not readable or application is None:
        raise fatal(f"the backup to {purpose} no longer exists", "MissingBackup")
    return execution, application


async def open_copy(
    session: AsyncSession,
    settings: Settings,
    restic: Restic,
    execution: BackupExecution,
    application: Application,
    target_id: uuid.UUID,
) -> Copy:
    """The backup's copy at ``target_id``; MissingBackup unless it is there, copied, whole."""
    target = await session.get(OffsiteTarget, target_id)
    row = await session.get(BackupCopy, (execution.id, target_id))
    if target is None or row is None or row.status != CopyStatus.COPIED:
        raise fatal("the backup's offsite copy is gone or was never completed", "MissingBackup")
    try:
        remote = await everyday_remote(session, settings, application, target)
    except crypto.CryptoError as exc:
        raise fatal(str(exc), "SecretsUnavailable") from None
    reader = RemoteReader(restic, remote)
    repo = reader.repository()
    try:
        found = await asyncio.to_thread(reader.snapshots, repo, [names.execution_tag(execution.id)])
    except ResticError as exc:
        raise to_application_error(exc) from None
    snapshots = {
        part: snapshot.id
        for snapshot in found
        if (part := names.read_tags(snapshot.tags).get("part")) is not None
    }
    missing = sorted(names.parts_of(execution.metadata_) - set(snapshots))
    if missing:
        raise fatal(
            f"parts {', '.join(missing)} of the backup are missing from the offsite copy",
            "MissingBackup",
        )
    return Copy(reader, repo, snapshots)
