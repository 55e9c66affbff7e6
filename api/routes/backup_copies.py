"""Where a backup lives: its primary storage and each offsite copy with its state."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from api.deps import DedicatedAppReader, SessionDep
from api.problems import refusals
from api.schemas.offsite_targets import BackupCopyOut
from services import backups, offsite_targets

router = APIRouter(prefix="/api/v1/applications/{app_id}/backups", tags=["backups"])


@router.get("/{backup_id}/copies", response_model=list[BackupCopyOut])
async def list_backup_copies(
    backup_id: uuid.UUID, access: DedicatedAppReader, session: SessionDep
) -> list[dict[str, Any]]:
    """``primary``, then ``offsite`` per target: ``pending``, ``copied`` (at ``copied_at``)
    or ``failed`` (``error_message`` says why)."""
    with refusals():
        execution = await backups.backup_of(session, access.application, backup_id)
        places = await offsite_targets.copies_of(session, execution)
    return [BackupCopyOut.model_validate(place).model_dump() for place in places]
