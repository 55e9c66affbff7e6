"""Requesting a restore into another application of the same workspace (issue 26, part 2;
docs/restore-into-another-app.md): production's backup into staging.

The target's data is replaced, the target is stopped and started; the source is only read
(its backup, from its repository). Its volumes and named databases go into the target's by
name (the same names unless mapped), and the target's database must not be the source's,
by the server's identity whatever address either gives it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from adapters.errors import AdapterError
from core.engine_url import engine_of
from core.restore_details import RestoreDetails, RestoreSource
from core.settings import Settings
from core.states import RunStatus
from db import audit
from db.models import Application, BackupRestore
from services import backups, database_identity
from services.errors import Conflict, Invalid, NotFound
from services.restores import (
    Parts,
    check_confirmed,
    check_own_database,
    check_registration,
    check_volumes_apart,
    parts_to_restore,
    start_restore,
)
from services.runs import claim_application
from workflows.restore import RestoreWorkflow

SOURCE_FIELD = "source.application_id"


def _invalid(loc: tuple[str, ...], message: str) -> Invalid:
    return Invalid([{"loc": loc, "msg": message, "type": "invalid_restore"}])


def mapped(
    restored: list[str], asked: Mapping[str, str], targets: list[str], field: str, what: str
) -> dict[str, str]:
    """``{source name: target name}`` for every ``restored`` part: the name ``asked`` gives
    it, else its own. Invalid on ``field``: a mapping of a part not restored, a name the
    target lacks (``targets``: the names it has), two parts into one."""
    unknown = sorted(set(asked) - set(restored))
    if unknown:
        raise _invalid(
            (field, unknown[0]),
            f"{what} {unknown[0]} is not restored (this restore brings back {restored})",
        )
    names = {name: asked.get(name, name) for name in restored}
    for name, into in names.items():
        if into not in targets:
            raise _invalid(
                (field, name),
                f"the target application has no {what} {into} (it has {sorted(targets)});"
                f" map {name} to one of them in {field}",
            )
    seen: dict[str, str] = {}
    for name, into in names.items():
        if into in seen:
            raise _invalid(
                (field, name), f"{seen[into]} and {name} would both go into {what} {into}"
            )
        seen[into] = name
    return names


def check_engines(source: Application, target: Application, databases: Mapping[str, str]) -> None:
    """Each named database goes into one of the same engine (a MariaDB dump loads into
    MariaDB only)."""
    theirs = source.platform_settings.get("databases") or {}
    ours = target.platform_settings.get("databases") or {}
    for name, into in databases.items():
        if name not in theirs:
            continue  # no longer registered on the source: its manifest still says what it is
        source_engine, target_engine = engine_of(theirs[name]["url"]), engine_of(ours[into]["url"])
        if source_engine != target_engine:
            raise _invalid(
                ("database_map", name),
                f"database {name} is {source_engine}; the target's {into} is {target_engine}",
            )


async def check_not_the_source(
    source: Application, target: Application, settings: Settings
) -> None:
    """The target's database is not the source's, by the servers' identities (BoundaryError
    on ``source.application_id``); servers the API cannot reach: the worker asks again."""
    own = target.platform_settings.get("database")
    if own is None:
        return
    try:
        identity = await database_identity.identity_of(
            source, settings, database_identity.SOURCE_DATABASE
        )
    except AdapterError:
        return  # the worker asks on the connection that writes
    if identity is None:
        return
    await database_identity.refuse_protected(
        own,
        database_identity.database_password(target, settings),
        settings,
        f"body.{SOURCE_FIELD}",
        (identity,),
    )


async def request(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    target: Application,
    source: Application,
    backup_id: uuid.UUID,
    actor: audit.Actor,
    *,
    restore_type: str,
    asked: Parts,
    volume_map: Mapping[str, str],
    database_map: Mapping[str, str],
    confirm: str | None,
) -> BackupRestore:
    """Checks the request, claims the target (never the source) and starts the restore of
    the source's backup into it; committed. The caller has checked who may restore each.

    Refusals: NotFound (a source of another workspace, an unknown backup), Invalid (parts,
    names, engines, a Kubernetes application), Unsupported (the confirmation), Conflict,
    BoundaryError (the target's database is the source's) and services.runs' refusals.
    """
    if source.workspace_id != target.workspace_id:
        raise NotFound("application", source.id)
    if source.id == target.id:
        raise _invalid(
            (SOURCE_FIELD,),
            "that is this application: restore its own backup with POST"
            " …/backups/{backup_id}/restore",
        )
    for which, application in (("source", source), ("target", target)):
        if application.platform_kind != "local":
            raise _invalid(
                (SOURCE_FIELD,),
                f"the {which} application is on {application.platform_kind}: restores into"
                " another application are built for local applications only",
            )
    execution = await backups.backup_of(session, source, backup_id)
    if execution.status != RunStatus.SUCCEEDED:
        raise Conflict(
            f"the backup is {execution.status}; only completed backups on the primary storage"
            " can be restored into another application",
            backup_status=execution.status,
        )
    parts = parts_to_restore(execution, restore_type, asked)
    settings_of = target.platform_settings
    if parts.database and not settings_of.get("database"):
        raise _invalid(("database",), "the target application has no database")
    volumes = mapped(
        parts.volumes, volume_map, sorted(settings_of.get("volumes") or {}), "volume_map", "volume"
    )
    databases = mapped(
        parts.databases,
        database_map,
        sorted(settings_of.get("databases") or {}),
        "database_map",
        "database",
    )
    check_engines(source, target, databases)
    check_confirmed(
        target,
        confirm,
        f"restoring {source.name}'s backup replaces the live data of {target.name}",
    )
    into_volumes = list(volumes.values())
    check_registration(target, parts.database, into_volumes, settings)
    if parts.database:
        await check_own_database(target, settings)
        await check_not_the_source(source, target, settings)
    await check_volumes_apart(session, target, into_volumes)
    await claim_application(session, temporal, target.id)
    origin = RestoreSource(str(source.id), source.name, str(execution.id), volumes, databases)
    details = RestoreDetails(
        parts.database, into_volumes, databases=list(databases.values()), source=origin
    )
    return await start_restore(
        session,
        temporal,
        RestoreWorkflow.run,
        target,
        actor,
        restore_id=uuid.uuid4(),
        execution_id=execution.id,
        restore_type=restore_type,
        details=details.to_dict(),
        audited={
            "backup_id": str(execution.id),
            "restore_type": restore_type,
            "database": parts.database,
            "volumes": into_volumes,
            "databases": list(databases.values()),
            "source": origin.to_dict(),
        },
    )
