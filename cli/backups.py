"""``cairn backups``: an application's backups: start, follow, list, inspect, cancel."""

from __future__ import annotations

import click

from cli.client import Api, app_option, connection_options, with_api
from cli.download import download
from cli.output import Field, Output, limit_options, output_options, size, when
from cli.runs import RunKind
from core.states import RunStatus

COLUMNS: list[Field] = [
    ("id", "id"),
    ("status", "status"),
    ("trigger", "trigger"),
    ("started", lambda b: when(b["started_at"])),
    ("completed", lambda b: when(b["completed_at"])),
    ("size", lambda b: size(b["size_bytes"])),
    ("error", "error_message"),
]
FIELDS: list[Field] = [
    *COLUMNS,
    ("application", "application_id"),
    ("policy", "policy_id"),
    ("workflow", "workflow_id"),
    ("Temporal UI", "temporal_ui_url"),
]
BACKUPS = RunKind("backup", FIELDS)


@click.group()
@connection_options
def backups() -> None:
    """Start, follow, list, inspect and cancel backups.

    Exit status: 0 succeeded, 1 failed, 2 cancelled or bad usage, 3 API problem.
    """


@backups.command("list")
@app_option
@click.option(
    "--status",
    type=click.Choice([s.value for s in RunStatus if s is not RunStatus.PENDING]),  # never pending
    help="only backups in this state",
)
@limit_options
@output_options
@with_api
def list_backups(
    api: Api, app_id: str, status: str | None, limit: int, cursor: str | None, out: Output
) -> None:
    """The application's backups, newest first."""
    page = api.get(BACKUPS.path(app_id), status=status, limit=limit, cursor=cursor)
    out.page(page, COLUMNS, "backups")


@backups.command("create")
@app_option
@click.option(
    "--wait",
    is_flag=True,
    help="follow the backup until it ends (progress on stderr) and exit 0 succeeded,"
    " 1 failed, 2 cancelled",
)
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="a retried command with the same key returns the same backup instead of a second one",
)
@output_options
@with_api
def create_backup(
    api: Api, app_id: str, wait: bool, idempotency_key: str | None, out: Output
) -> None:
    """Start a backup now, with the settings of the application's backup policy."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    accepted = api.request("POST", BACKUPS.path(app_id), headers=headers)
    BACKUPS.started(api, out, app_id, accepted, wait)


BACKUPS.add_commands(
    backups,
    cancel_help="Ask a running backup to stop; its partial data is removed.\n\n"
    "The backup ends cancelled shortly after; follow it with 'cairn backups watch'.",
)
backups.add_command(download)
