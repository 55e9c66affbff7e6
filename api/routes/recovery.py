"""The window an application can be restored to a moment within, and the restore to one
(docs/pitr.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api import presenters
from api.deps import (
    DedicatedAppReader,
    DedicatedAppWriter,
    OptionalTemporalDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
)
from api.problems import refusals
from api.schemas.recovery import (
    ArchiverOut,
    GapOut,
    RecoveryWindowOut,
    RestoreToTimeRequest,
    moment,
)
from api.schemas.restores import RestoreOut
from services import recovery_window, restores_to_time

router = APIRouter(prefix="/api/v1/applications/{app_id}", tags=["restores"])


@router.get("/recovery-window", response_model=RecoveryWindowOut)
async def get_recovery_window(
    access: DedicatedAppReader,
    session: SessionDep,
    settings: SettingsDep,
    temporal: OptionalTemporalDep,
) -> dict[str, Any]:
    with refusals():
        found = await recovery_window.read(session, settings, temporal, access.application)
    return RecoveryWindowOut(
        continuous_archiving=found.archiving,
        earliest=found.earliest,
        latest=found.latest,
        gaps=[GapOut.model_validate({"from": gap.start, "to": gap.end}) for gap in found.gaps],
        archiver=ArchiverOut(
            streaming=found.archiver_running,
            last_shipment_at=found.last_shipment_at,
            lag_seconds=found.lag_seconds,
        ),
    ).model_dump(by_alias=True)


@router.post("/restores", status_code=202, response_model=RestoreOut)
async def restore_to_time(
    body: RestoreToTimeRequest,
    access: DedicatedAppWriter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    """Restores the database to a moment of the window into a new database, or over the
    live one (``target.in_place`` with the application's name in ``confirm``)."""
    principal = access.workspace.principal
    with refusals(starting="restore"):
        restore = await restores_to_time.request(
            session,
            temporal,
            settings,
            access.application,
            principal.actor,
            moment=moment(body.target_time),
            database_name=body.target.database_name if body.target else None,
            by_platform_admin=principal.user.is_platform_admin,
            in_place=bool(body.target and body.target.in_place),
            confirm=body.confirm,
        )
    await session.refresh(restore)
    return presenters.restore(restore, settings)
