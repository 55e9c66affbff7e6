"""How a run reads in the Temporal UI: a one-line summary and details in words.

Workflow ids are UUIDs; an operator scanning the UI needs the application, workspace,
storage and what started the run. Every starter (API runs, storage jobs, policy schedules)
takes its wording from here, as Temporal's static summary and details (user metadata: not
part of the workflow's input, never read by the workflow, so replay is unaffected). Names
only: no URL, user name or secret ever goes into them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.restore_details import RestoreDetails
from db.models import (
    Application,
    BackupExecution,
    BackupRestore,
    BackupStorage,
    RestoreDrill,
    Workspace,
)

SUMMARY_LIMIT = 200  # one line in the UI's list; names can be long
TRIGGERS = {
    "manual": "started by hand (API or CLI)",
    "schedule": "started by the backup policy's schedule",
}


@dataclass(frozen=True)
class Names:
    """The names a run is about; ids stand in for a name that could not be read."""

    workspace: str
    application: str | None = None
    storage: str | None = None


@dataclass(frozen=True)
class RunText:
    """Temporal's ``static_summary`` (one line) and ``static_details`` (markdown)."""

    summary: str
    details: str


def _text(summary: str, lines: list[str]) -> RunText:
    if len(summary) > SUMMARY_LIMIT:
        summary = summary[: SUMMARY_LIMIT - 1] + "…"
    return RunText(summary, "\n\n".join(lines))


def backup(names: Names, trigger: str) -> RunText:
    return _text(
        f"Backup of {names.application} ({names.workspace}) to {names.storage}, {trigger}",
        [
            f"**Backup** of application **{names.application}**",
            f"Workspace: **{names.workspace}**",
            f"Storage: **{names.storage}**",
            f"Trigger: {TRIGGERS.get(trigger, trigger)}",
        ],
    )


def restore(
    names: Names, restore_type: str, parts: list[str], into: str | None, backup_taken: str
) -> RunText:
    """``parts``: what is restored (``database``, ``volume uploads``); ``into``: another
    database's name, or None for the application's own."""
    what = ", ".join(parts) or "nothing"
    where = f"into database {into}" if into else "in place"
    return _text(
        f"{restore_type.capitalize()} restore of {names.application} ({names.workspace}), {where}",
        [
            f"**{restore_type.capitalize()} restore** of application **{names.application}**",
            f"Workspace: **{names.workspace}**",
            f"From the backup taken {backup_taken} in storage **{names.storage}**",
            f"Restores: {what}, {where}",
            f"Trigger: {TRIGGERS['manual']}",
        ],
    )


def drill(names: Names, trigger: str, backup_taken: str) -> RunText:
    return _text(
        f"Restore drill of {names.application} ({names.workspace}), {trigger}",
        [
            f"**Restore drill** of application **{names.application}**: the backup restored"
            " into scratch copies, checked, then removed",
            f"Workspace: **{names.workspace}**",
            f"From the backup taken {backup_taken} in storage **{names.storage}**",
            f"Trigger: {TRIGGERS.get(trigger, trigger)}",
        ],
    )


STORAGE_ACTIONS = {  # action: (verb, what else it does)
    "create": ("Provision", ""),
    "update": ("Reprovision", ""),
    "delete": ("Delete", ""),
    "delete-force": ("Force-delete", ", with every backup in it"),
}


def storage(names: Names, action: str) -> RunText:
    verb, also = STORAGE_ACTIONS[action]
    return _text(
        f"{verb} storage {names.storage} ({names.workspace})",
        [
            f"**{verb}** backup storage **{names.storage}**{also}",
            f"Workspace: **{names.workspace}**",
            f"Trigger: {TRIGGERS['manual']}",
        ],
    )


async def lookup(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    application_id: uuid.UUID | None = None,
    storage_id: uuid.UUID | None = None,
) -> Names:
    """The names of a run's workspace, application and storage (ids for rows not found)."""
    workspace = await session.scalar(select(Workspace.name).where(Workspace.id == workspace_id))
    application = storage = None
    if application_id is not None:
        application = await session.scalar(
            select(Application.name).where(Application.id == application_id)
        )
    if storage_id is not None:
        storage = await session.scalar(
            select(BackupStorage.name).where(BackupStorage.id == storage_id)
        )
    return Names(
        workspace=workspace or str(workspace_id),
        application=application or (str(application_id) if application_id else None),
        storage=storage or (str(storage_id) if storage_id else None),
    )


def _taken(backup: BackupExecution | None) -> str:
    started: datetime | None = backup.started_at if backup else None
    return started.strftime("%Y-%m-%d %H:%M UTC") if started else "(unknown)"


def _restored(details: RestoreDetails) -> tuple[list[str], str | None]:
    """What a restore row says it restores, and the other database's name if any."""
    parts = ["database"] if details.database else []
    parts += [f"volume {v}" for v in details.volumes]
    target = details.target
    into = None
    if target is not None:
        url = target.database_url
        into = target.database_name or (urlsplit(url).path.lstrip("/") if url else None)
    return parts, into


async def for_run(session: AsyncSession, application: Application, workflow_id: str) -> RunText:
    """The text of the backup, restore or drill whose row (already flushed) has
    ``workflow_id``."""
    execution = await session.scalar(
        select(BackupExecution).where(BackupExecution.workflow_id == workflow_id)
    )
    if execution is not None:
        names = await lookup(
            session, application.workspace_id, application.id, execution.storage_id
        )
        return backup(names, execution.trigger)
    restore_row = await session.scalar(
        select(BackupRestore).where(BackupRestore.workflow_id == workflow_id)
    )
    if restore_row is not None:
        source = await session.get(BackupExecution, restore_row.backup_execution_id)
        names = await lookup(
            session, application.workspace_id, application.id, source.storage_id if source else None
        )
        parts, into = _restored(RestoreDetails.from_dict(restore_row.details))
        return restore(names, restore_row.restore_type, parts, into, _taken(source))
    drill_row = await session.scalar(
        select(RestoreDrill).where(RestoreDrill.workflow_id == workflow_id)
    )
    if drill_row is None:
        raise LookupError(f"no backup, restore or drill row has workflow id {workflow_id}")
    source = (
        await session.get(BackupExecution, drill_row.backup_execution_id)
        if drill_row.backup_execution_id
        else None
    )
    names = await lookup(
        session, application.workspace_id, application.id, source.storage_id if source else None
    )
    return drill(names, drill_row.trigger, _taken(source))
