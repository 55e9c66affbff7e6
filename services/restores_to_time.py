"""Requesting a restore to a moment (docs/pitr.md): the moment must be inside the window, the
database goes into a new database on the application's server (checked by identity as any
restore target), and the row, audit event and workflow are recorded together.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from adapters.pg_archive.window import stamp
from contracts.archive import LATEST, TARGET_TIME
from core.restore_details import RestoreDetails, StoredTarget
from core.settings import Settings
from db import audit
from db.models import Application, BackupRestore
from services import recovery_window
from services.errors import Invalid
from services.restores import (
    check_confirmed,
    check_own_database,
    check_registration,
    check_target,
    start_restore,
)
from services.runs import claim_application
from workflows.restore_to_time import RestoreToTimeWorkflow


def _refused(field: str, message: str) -> Invalid:
    return Invalid([{"loc": (field,), "msg": message, "type": "invalid_restore"}])


def default_name(own: str, moment: datetime) -> str:
    """``<database>_at_<UTC moment>``, within PostgreSQL's 63 characters."""
    return f"{own[:40]}_at_{moment.astimezone(UTC).strftime('%Y%m%d%H%M%S')}"


async def request(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    application: Application,
    actor: audit.Actor,
    *,
    moment: datetime | None,
    database_name: str | None,
    by_platform_admin: bool,
    in_place: bool = False,
    confirm: str | None = None,
) -> BackupRestore:
    """Checks the moment and the target, claims the application and starts the run;
    committed. ``moment`` None: the latest the archive holds. ``in_place``: over the live
    database, with the application's name typed in ``confirm`` (the moment is recovered
    beside it, then swapped in while the application is stopped)."""
    own = application.platform_settings.get("database")
    if application.platform_kind != "local" or not own:
        raise _refused("target_time", "restores to a moment need a database on a local platform")
    if in_place:
        check_confirmed(
            application,
            confirm,
            f"a restore to a moment in place replaces the live database {own['dbname']}",
        )
    recovery = await recovery_window.plan_to(session, settings, application.id, moment)
    if database_name == own["dbname"]:
        raise _refused(
            "target.database_name",
            "that is the live database: to restore over it, ask for target.in_place with the"
            " application's name in confirm",
        )
    if in_place:
        check_registration(application, True, [], settings)
        await check_own_database(application, settings)
        target = None
    else:
        name = database_name or default_name(own["dbname"], recovery.reaches)
        await check_target(
            session, application, {"database_name": name}, settings, by_platform_admin
        )
        target = StoredTarget(database_name=name)
    await claim_application(session, temporal, application.id)
    asked = stamp(moment) if moment else LATEST
    return await start_restore(
        session,
        temporal,
        RestoreToTimeWorkflow.run,
        application,
        actor,
        restore_id=uuid.uuid4(),
        execution_id=None,
        restore_type="selective",
        details={**RestoreDetails(True, [], target).to_dict(), TARGET_TIME: asked},
        audited={
            TARGET_TIME: asked,
            "target": target.shown() if target else {},
            "in_place": in_place,
        },
        in_place=in_place,
    )
