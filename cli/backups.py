"""``cairn backups``: an application's backups: start, follow, list, inspect, cancel."""

from __future__ import annotations

import click

from cli.client import Api, app_option, connection_options, with_api
from cli.output import Field, Output, limit_options, note, output_options, size, when
from cli.runs import show_run, wait_for_outcome

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


def _path(app_id: str, backup_id: str | None = None) -> str:
    return f"/applications/{app_id}/backups" + (f"/{backup_id}" if backup_id else "")


def _watch_command(app_id: str, backup_id: str) -> str:
    return f"cairn backups watch --app {app_id} {backup_id}"


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
    type=click.Choice(["running", "succeeded", "failed", "cancelled", "pruned"]),
    help="only backups in this state",
)
@limit_options
@output_options
@with_api
def list_backups(
    api: Api, app_id: str, status: str | None, limit: int, cursor: str | None, out: Output
) -> None:
    """The application's backups, newest first."""
    page = api.get(_path(app_id), status=status, limit=limit, cursor=cursor)
    out.page(page, COLUMNS, "backups")


@backups.command("get")
@app_option
@click.argument("backup_id")
@output_options
@with_api
def get_backup(api: Api, app_id: str, backup_id: str, out: Output) -> None:
    """One backup with its steps and live progress."""
    show_run(out, api.get(_path(app_id, backup_id)), FIELDS)


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
    accepted = api.request("POST", _path(app_id), headers=headers)
    if not wait:
        out.record(accepted, FIELDS)
        return
    note(f"backup {accepted['id']} started; Temporal UI: {accepted['temporal_ui_url']}")
    wait_for_outcome(
        api,
        out,
        _path(app_id, accepted["id"]),
        "backup",
        FIELDS,
        _watch_command(app_id, accepted["id"]),
    )


@backups.command("watch")
@app_option
@click.argument("backup_id")
@output_options
@with_api
def watch_backup(api: Api, app_id: str, backup_id: str, out: Output) -> None:
    """Follow a backup until it ends; exit 0 succeeded, 1 failed, 2 cancelled.

    Ctrl-C stops following, not the backup.
    """
    wait_for_outcome(
        api, out, _path(app_id, backup_id), "backup", FIELDS, _watch_command(app_id, backup_id)
    )


@backups.command("cancel")
@app_option
@click.argument("backup_id")
@output_options
@with_api
def cancel_backup(api: Api, app_id: str, backup_id: str, out: Output) -> None:
    """Ask a running backup to stop; its partial data is removed.

    The backup ends cancelled shortly after; follow it with 'cairn backups watch'.
    """
    out.record(api.post(f"{_path(app_id, backup_id)}/cancel"), FIELDS)
