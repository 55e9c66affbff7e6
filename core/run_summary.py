"""How a run reads in the Temporal UI: a one-line summary and details in words.

Workflow ids are UUIDs; an operator scanning the UI needs the application, workspace,
storage and what started the run. Every starter (API runs, storage jobs, policy schedules)
takes its wording from here, as Temporal's static summary and details (user metadata: not
part of the workflow's input, never read by the workflow, so replay is unaffected). Names
only: no URL, user name or secret ever goes into them. The names are read by
``db/run_names.py``: this module only words them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from core.restore_details import RestoreDetails

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


def taken(started: datetime | None) -> str:
    """When the backup a restore or drill reads was taken, in the UI's words."""
    return started.strftime("%Y-%m-%d %H:%M UTC") if started else "(unknown)"


def restored(details: RestoreDetails) -> tuple[list[str], str | None]:
    """What a restore row says it restores, and the other database's name if any."""
    parts = ["database"] if details.database else []
    parts += [f"volume {v}" for v in details.volumes]
    target = details.target
    into = None
    if target is not None:
        url = target.database_url
        into = target.database_name or (urlsplit(url).path.lstrip("/") if url else None)
    return parts, into
