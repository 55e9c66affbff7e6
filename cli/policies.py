"""``cairn policies``: an application's backup policy (its schedule in Temporal)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from cli.client import Api, ApiError, app_option, connection_options, with_api
from cli.output import Field, Output, output_options, when

F = TypeVar("F", bound=Callable[..., Any])
KEEP = {
    "last": "the newest N successful backups",
    "daily": "the newest backup of each of the last N days (policy's time zone)",
    "weekly": "the newest backup of each of the last N ISO weeks",
    "monthly": "the newest backup of each of the last N months",
    "yearly": "the newest backup of each of the last N years",
}
FIELDS: list[Field] = [
    ("id", "id"),
    ("application", "application_id"),
    ("storage", "storage_id"),
    ("enabled", "enabled"),
    ("schedule", "schedule"),
    ("time zone", "timezone"),
    ("retention days", "retention_days"),
    *((f"keep {period}", f"keep_{period}") for period in KEEP),
    ("backup type", "backup_type"),
    ("database", "include_database"),
    ("volumes", "include_volumes"),
    ("continuous archiving", "continuous_archiving"),
    ("archive window days", "archive_window_days"),
    ("paused", lambda p: (p.get("schedule_state") or {}).get("paused")),
    ("note", lambda p: (p.get("schedule_state") or {}).get("note")),
    (
        "next runs",
        lambda p: [when(t) for t in (p.get("schedule_state") or {}).get("next_runs", [])[:3]],
    ),
    ("schedule error", "schedule_error"),
    ("overdue", "overdue"),
    ("overdue since", lambda p: when(p.get("overdue_since"))),
    ("offsite target", "offsite_target_id"),
]
# The application's offsite lag (GET /applications/{id}: offsite), shown by ``get``.
OFFSITE: list[Field] = [
    ("offsite lag seconds", lambda p: (p.get("offsite") or {}).get("lag_seconds")),
    ("last copied", lambda p: when((p.get("offsite") or {}).get("last_copied_at"))),
    ("copies pending", lambda p: (p.get("offsite") or {}).get("copies_pending")),
    ("copies failed", lambda p: (p.get("offsite") or {}).get("copies_failed")),
    ("offsite overdue since", lambda p: when((p.get("offsite") or {}).get("overdue_since"))),
]


def keep_options(command: F) -> F:
    """``--keep-last`` … ``--keep-yearly``: the retention counts (grandfather-father-son)."""
    for period, meaning in reversed(KEEP.items()):
        command = click.option(
            f"--keep-{period}",
            type=click.IntRange(min=0),
            metavar="N",
            help=f"also keep {meaning}; 0: off [create: 0]",
        )(command)
    return command


def _path(app_id: str) -> str:
    return f"/applications/{app_id}/backup-policy"


def _save(api: Api, app_id: str, changes: dict[str, Any], may_create: bool = False) -> Any:
    """Creates or updates the policy; the API keeps what an update leaves out, except the
    storage and schedule it always needs, which are taken from the stored policy."""
    try:
        current = api.get(_path(app_id))
    except ApiError as exc:
        if exc.status != 404 or not may_create:
            raise
        current = {}
    body = {k: current[k] for k in ("storage_id", "schedule") if k in current} | changes
    return api.post(_path(app_id), body)


@click.group()
@connection_options
def policies() -> None:
    """An application's backup policy: schedule, storage, retention."""


@policies.command("get")
@app_option
@output_options
@with_api
def get_policy(api: Api, app_id: str, out: Output) -> None:
    """The policy with its schedule's live state: paused or not, next runs; with an offsite
    target, how far the copies trail the backups (docs/offsite.md)."""
    policy = api.get(_path(app_id))
    if policy.get("offsite_target_id"):
        policy["offsite"] = api.get(f"/applications/{app_id}").get("offsite")
        out.record(policy, [*FIELDS, *OFFSITE])
        return
    out.record(policy, FIELDS)


@policies.command("set")
@app_option
@click.option(
    "--storage",
    "storage_id",
    metavar="STORAGE_ID",
    help="the backup storage (of the application's workspace); needed on create",
)
@click.option(
    "--schedule",
    metavar="CRON",
    help="cron 'minute hour day month weekday' or @daily/@weekly/...; needed on create",
)
@click.option("--timezone", metavar="ZONE", help="IANA time zone of the schedule [create: UTC]")
@click.option(
    "--retention-days",
    type=click.IntRange(min=1),
    help="keep every backup started within this many days [create: 30 unless a --keep-* count"
    " is given]",
)
@click.option(
    "--no-age-rule",
    is_flag=True,
    help="no age rule: only the --keep-* counts decide (clears --retention-days)",
)
@keep_options
@click.option(
    "--backup-type",
    type=click.Choice(["full", "incremental"]),
    help="full re-reads every file; incremental uses the previous backup [create: full]",
)
@click.option(
    "--include-database/--no-include-database",
    default=None,
    help="back up the database [create: when the application has one]",
)
@click.option(
    "--include-volumes/--no-include-volumes",
    default=None,
    help="back up the volumes [create: when the application has some]",
)
@click.option(
    "--continuous-archiving/--no-continuous-archiving",
    default=None,
    help="stream the database's WAL for restores to a moment (docs/pitr.md) [create: off]",
)
@click.option(
    "--archive-window-days",
    type=click.IntRange(min=1, max=35),
    help="how many days back a restore to a moment reaches [create: 7]",
)
@click.option(
    "--offsite-target",
    "offsite_target_id",
    metavar="TARGET_ID",
    help="copy every successful backup to this offsite target of the workspace (docs/offsite.md)",
)
@click.option(
    "--no-offsite-target", is_flag=True, help="stop copying backups offsite (clears the target)"
)
@output_options
@with_api
def set_policy(api: Api, app_id: str, out: Output, **options: Any) -> None:
    """Create the policy, or change the given settings of the existing one."""
    flags = ("no_age_rule", "no_offsite_target")
    changes = {k: v for k, v in options.items() if v is not None and k not in flags}
    if options["no_age_rule"]:
        if "retention_days" in changes:
            raise click.UsageError("give --retention-days or --no-age-rule, not both")
        changes["retention_days"] = None
    if options["no_offsite_target"]:
        if "offsite_target_id" in changes:
            raise click.UsageError("give --offsite-target or --no-offsite-target, not both")
        changes["offsite_target_id"] = None
    out.record(_save(api, app_id, changes, may_create=True), FIELDS)


@policies.command("pause")
@app_option
@output_options
@with_api
def pause_policy(api: Api, app_id: str, out: Output) -> None:
    """Pause the schedule (no scheduled backups; manual ones still run)."""
    out.record(_save(api, app_id, {"enabled": False}), FIELDS)


@policies.command("resume")
@app_option
@output_options
@with_api
def resume_policy(api: Api, app_id: str, out: Output) -> None:
    """Resume a paused schedule."""
    out.record(_save(api, app_id, {"enabled": True}), FIELDS)


@policies.command("delete")
@app_option
@with_api
def delete_policy(api: Api, app_id: str) -> None:
    """Delete the policy and its schedule; existing backups stay listed and restorable."""
    api.request("DELETE", _path(app_id))
    click.echo(f"backup policy of application {app_id} deleted", err=True)
