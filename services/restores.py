"""Requesting a restore: what a backup can give back, where its database may go, and the
row, audit event and workflow of the run, recorded together or not at all.

The API decides who may ask and how refusals are answered; the rules are here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from adapters.errors import AdapterError
from core import crypto, secret_contexts
from core.boundaries import (
    BoundaryError,
    check_application_database,
    check_restore_target,
    check_volume_path,
)
from core.database_url import database_url, split_database_url
from core.restore_details import RestoreDetails, StoredTarget
from core.settings import Settings
from core.states import RunStatus
from db import audit
from db.models import Application, BackupExecution, BackupRestore
from repository import names
from repository.offsite import SOURCE_KEY
from services import applications, backups, database_identity, offsite_targets
from services.errors import Conflict, Invalid, NotFound, Unsupported
from services.runs import claim_application, start_run
from workflows.restore import RestoreWorkflow


def _invalid(field: str, message: str) -> Invalid:
    """A field of the request this backup cannot satisfy (``field`` within the body)."""
    return Invalid([{"loc": (field,), "msg": message, "type": "invalid_restore"}])


async def other_databases(
    session: AsyncSession, application: Application, dbname: str
) -> list[dict[str, Any]]:
    """Databases of other applications with that name, on any server (same_server decides)."""
    rows = await session.scalars(
        select(Application.platform_settings).where(
            Application.id != application.id,
            Application.platform_settings["database"]["dbname"].astext == dbname,
        )
    )
    return [row["database"] for row in rows]


async def check_target(
    session: AsyncSession,
    application: Application,
    requested: Mapping[str, str],
    settings: Settings,
    by_platform_admin: bool,
) -> None:
    """The target stays on the application's side (BoundaryError; AdminOnly for a URL from
    someone who is not a platform administrator). ``requested``: ``database_name`` or
    ``database_url``, as asked."""
    own = application.platform_settings.get("database")
    if requested.get("database_name"):
        dbname = requested["database_name"]
    else:
        dbname = split_database_url(requested["database_url"])[0]["dbname"]
    check_restore_target(
        requested,
        own,
        settings,
        by_platform_admin=by_platform_admin,
        other_applications=await other_databases(session, application, dbname),
        field="body.target",
    )
    if application.platform_kind != "local" or own is None:
        return  # a cluster's database is reached from the cluster: its mover asks
    if requested.get("database_name"):
        field = "body.target.database_name"
        database, password = (
            {**own, "dbname": dbname},
            database_identity.database_password(application, settings),
        )
    else:
        field = "body.target.database_url"
        database, password = split_database_url(requested["database_url"])
    try:
        others = await database_identity.other_applications(session, application, dbname, settings)
    except AdapterError:
        others = ()  # a server the API cannot reach: the worker asks before it writes
    await database_identity.refuse_protected(database, password, settings, field, others)


CONFIRMATION = "type the application's name exactly to confirm"


def _registration_refused(what: str, why: str) -> Conflict:
    """A registration made before a boundary existed that breaks it now: no restore writes
    through it until a platform administrator corrects it."""
    return Conflict(
        f"the application's registered {what} is refused ({why}); a platform administrator"
        " must correct the registration before it can be restored"
    )


def check_confirmed(application: Application, given: str | None, what: str) -> None:
    """A restore that overwrites live data needs the application's name typed (``confirm``),
    as the web UI and the CLI ask it; ``what`` says what would be overwritten."""
    if given != application.name:
        raise Unsupported(
            f"{what}; {CONFIRMATION}",
            "confirmation-required",
            "Confirmation required",
            {"confirm": CONFIRMATION},
        )


async def check_own_database(application: Application, settings: Settings) -> None:
    """A restore over the application's own database: its server must not say it is cairn's
    (a registration under an address no rule recognised, made before identity was asked)."""
    own = application.platform_settings.get("database")
    if application.platform_kind != "local" or own is None:
        return
    password = database_identity.database_password(application, settings)
    try:
        await database_identity.refuse_protected(own, password, settings, "database_url")
    except BoundaryError as exc:
        raise _registration_refused("database", exc.message) from None


def check_registration(
    application: Application, database: bool, volumes: list[str], settings: Settings
) -> None:
    """An application registered before the boundaries existed may still point outside them.

    Only a local application's volumes are folders on the worker host; a Kubernetes
    application's are claims in its own namespace, checked by their names at registration."""
    platform = application.platform_settings
    folders = volumes if application.platform_kind == "local" else []
    try:
        if database and platform.get("database"):
            check_application_database(platform["database"], settings, field="database_url")
        for name in folders:
            path = (platform.get("volumes") or {}).get(name)
            if path is not None:
                check_volume_path(path, settings, field=f"volumes.{name}")
    except BoundaryError as exc:
        raise _registration_refused(exc.field, exc.message) from None


async def check_volumes_apart(
    session: AsyncSession, application: Application, volumes: list[str]
) -> None:
    """The volumes a restore writes into are still apart from every other
    (services.applications.check_volumes_apart); a registration that no longer is refuses
    the restore."""
    try:
        await applications.check_volumes_apart(session, application, volumes)
    except BoundaryError as exc:
        raise _registration_refused(exc.field, exc.message) from None


@dataclass(frozen=True)
class Parts:
    """Parts of a backup: the database, volumes by name, the configuration objects, named
    databases (MariaDB, Redis) by name."""

    database: bool
    volumes: list[str]
    config: bool = False
    databases: list[str] = field(default_factory=list)


def of_application(application: Application) -> Select[Any]:
    """The application's restores, for a page of them (the API's list and the UI's pages)."""
    return select(BackupRestore).where(BackupRestore.application_id == application.id)


async def restore_of(
    session: AsyncSession, application: Application, restore_id: uuid.UUID
) -> BackupRestore:
    """One of the application's restores (NotFound otherwise)."""
    restore = await session.get(BackupRestore, restore_id)
    if restore is None or restore.application_id != application.id:
        raise NotFound("restore", restore_id)
    return restore


def parts_held(manifest: Mapping[str, Any] | None) -> Parts:
    """What a backup holds, from its manifest."""
    parts = names.parts_of(manifest)
    return Parts(
        names.DATABASE in parts,
        names.volumes_in(parts),
        names.CONFIG in parts,
        names.databases_in(parts),
    )


def parts_to_restore(execution: BackupExecution, restore_type: str, asked: Parts) -> Parts:
    """What comes back: all the backup holds for a full restore, the parts asked for (and
    held) for a selective one."""
    if execution.status not in (RunStatus.SUCCEEDED, RunStatus.PRUNED):
        # a pruned backup is read from its offsite copy alone: copy_to_read decides
        raise Conflict(
            f"the backup is {execution.status}; only completed backups can be restored",
            backup_status=execution.status,
        )
    held = parts_held(execution.metadata_)
    if restore_type == "full":
        return held
    if asked.database and not held.database:
        raise _invalid("database", "this backup holds no database")
    if asked.config and not held.config:
        raise _invalid("config", "this backup holds no configuration objects")
    unknown = sorted(set(asked.volumes) - set(held.volumes))
    if unknown:
        raise _invalid(
            "volumes", f"not in this backup: {', '.join(unknown)} (it holds {held.volumes})"
        )
    unknown = sorted(set(asked.databases) - set(held.databases))
    if unknown:
        raise _invalid(
            "databases",
            f"not in this backup: {', '.join(unknown)} (it holds {held.databases})",
        )
    return asked


def sealed_target(
    requested: Mapping[str, str], restore_id: uuid.UUID, settings: Settings
) -> StoredTarget:
    """The stored target: a URL loses its password, which is kept sealed to this restore."""
    if requested.get("database_name"):
        return StoredTarget(database_name=requested["database_name"])
    parts, password = split_database_url(requested["database_url"])
    sealed = None
    if password:
        sealed = crypto.seal(
            password.encode(),
            master_key=settings.master_key_text,
            context=secret_contexts.restore_target_password(restore_id),
        )
    return StoredTarget(database_url=database_url(parts), password_sealed=sealed)


async def request_restore(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    application: Application,
    backup_id: uuid.UUID,
    actor: audit.Actor,
    *,
    restore_type: str,
    asked: Parts,
    target: Mapping[str, str] | None,
    by_platform_admin: bool,
    source: uuid.UUID | str = "primary",
) -> BackupRestore:
    """Checks the request, claims the application and starts the restore of one of its
    backups; committed.

    ``target``: ``{"database_name": …}`` or ``{"database_url": …}`` when the database goes
    elsewhere than over the original; ``source``: where the backup is read
    (``services.offsite_targets.copy_to_read``). Refusals: services.errors' NotFound, Conflict
    and Invalid, core.boundaries' BoundaryError, and services.runs' RunInProgress, LivenessUnknown,
    RunNotStarted.
    """
    execution = await backups.backup_of(session, application, backup_id)
    parts = parts_to_restore(execution, restore_type, asked)
    database, volumes = parts.database, parts.volumes
    offsite = await offsite_targets.copy_to_read(session, application, execution, source)
    restore_id = uuid.uuid4()
    stored_target = None
    if target is not None:
        if not database:
            raise _invalid("target", "a target applies only when the database is restored")
        await check_target(session, application, target, settings, by_platform_admin)
        stored_target = sealed_target(target, restore_id, settings)
    check_registration(application, database and stored_target is None, volumes, settings)
    if database and stored_target is None:
        await check_own_database(application, settings)
    await check_volumes_apart(session, application, volumes)
    await claim_application(session, temporal, application.id)
    details = RestoreDetails(
        database, volumes, stored_target, config=parts.config, databases=parts.databases
    ).to_dict()
    if offsite is not None:
        details[SOURCE_KEY] = str(offsite)
    return await start_restore(
        session,
        temporal,
        RestoreWorkflow.run,
        application,
        actor,
        restore_id=restore_id,
        execution_id=execution.id,
        restore_type=restore_type,
        details=details,
        audited={
            "backup_id": str(execution.id),
            "restore_type": restore_type,
            "database": database,
            "volumes": volumes,
            "config": parts.config,
            "databases": parts.databases,
            "target": stored_target.shown() if stored_target else {},
            "offsite_target_id": str(offsite) if offsite else None,
        },
    )


async def start_restore(
    session: AsyncSession,
    temporal: Client,
    workflow: Any,
    application: Application,
    actor: audit.Actor,
    *,
    restore_id: uuid.UUID,
    execution_id: uuid.UUID | None,
    restore_type: str,
    details: dict[str, Any],
    audited: dict[str, Any],
    in_place: bool | None = None,
) -> BackupRestore:
    """Records the restore's row (pending, ``details`` stored) and its audit event
    restore.request (``audited``), starts its workflow, then commits: a Temporal outage
    leaves nothing stored. ``execution_id``: the backup restored (None for a restore to a
    moment); ``in_place``: a restore to a moment's fourth argument (RestoreToTimeWorkflow)."""
    workflow_id = f"restore-{restore_id}"
    restore = BackupRestore(
        id=restore_id,
        backup_execution_id=execution_id,
        application_id=application.id,
        workflow_id=workflow_id,
        status=RunStatus.PENDING,
        restore_type=restore_type,
        details=details,
    )
    session.add(restore)
    audit.record(
        session,
        actor,
        "restore.request",
        "backup_restore",
        restore_id,
        workspace_id=application.workspace_id,
        details=audited,
    )
    await session.flush()
    args: list[object] = [str(restore.id), str(application.id), str(application.workspace_id)]
    if in_place is not None:
        args.append(in_place)
    handle = await start_run(temporal, workflow, args, workflow_id, application)
    restore.run_id = handle.first_execution_run_id
    await session.commit()
    return restore
