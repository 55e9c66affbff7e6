"""``cairn drills``: restore drills started now, from the primary storage or an offsite copy."""

from __future__ import annotations

from typing import NoReturn

import click

from cli.client import Api, app_option, connection_options, with_api
from cli.output import Field, Output, output_options, when
from cli.restores import source_option
from cli.runs import RunKind

FIELDS: list[Field] = [
    ("id", "id"),
    ("backup", "backup_id"),
    ("moment", "target_time"),
    ("status", "status"),
    ("offsite target", "offsite_target_id"),
    ("started", lambda d: when(d["started_at"])),
    ("completed", lambda d: when(d["completed_at"])),
    ("recovery seconds", "recovery_seconds"),
    ("error", "error_message"),
    ("Temporal UI", "temporal_ui_url"),
]
DRILLS = RunKind("drill", FIELDS)


@click.group()
@connection_options
def drills() -> None:
    """Start and follow restore drills.

    Exit status: 0 succeeded, 1 failed, 2 cancelled or bad usage, 3 API problem.
    """


@drills.command("create")
@app_option
@source_option
@click.option(
    "--backup",
    "backup_id",
    help="the backup to drill [default: the newest successful one]; a backup the primary's"
    " retention pruned is drilled --from offsite",
)
@click.option(
    "--to",
    "target_time",
    metavar="latest|random|TIME",
    help="drill a moment of the WAL archive instead of a backup (continuous archiving on):"
    " the latest, one drawn from the window, or an RFC 3339 time",
)
@click.option(
    "--wait",
    is_flag=True,
    help="follow the drill until it ends (progress on stderr) and exit 0 succeeded,"
    " 1 failed, 2 cancelled",
)
@output_options
@with_api
def create_drill(
    api: Api,
    app_id: str,
    source: str,
    backup_id: str | None,
    target_time: str | None,
    wait: bool,
    out: Output,
) -> None:
    """Drill the newest successful backup (or --backup) now: restore it into scratch copies,
    check them, remove them. ``--from offsite`` reads the offsite copy, never the primary
    storage. ``--to`` recovers a moment of the WAL archive into the scratch database
    instead."""
    if target_time is not None:
        if backup_id or source != "primary":
            raise click.UsageError("--to drills the WAL archive: leave out --backup and --from")
        body: dict[str, str] = {"target_time": target_time}
    else:
        body = {"source": source} | ({"backup_id": backup_id} if backup_id else {})
    accepted = api.post(DRILLS.path(app_id), body)
    DRILLS.started(api, out, app_id, accepted, wait)


POLICY_FIELDS: list[Field] = [
    ("schedule", "schedule"),
    ("time zone", "timezone"),
    ("enabled", "enabled"),
    ("drills", lambda p: p["target_time"] or "the newest backup"),
    ("reads", "source"),
    ("checks", lambda p: ", ".join(c["name"] for c in p["checks"])),
]


@drills.command("policy")
@app_option
@click.option(
    "--to",
    "target_time",
    type=click.Choice(["latest", "random", "backup"]),
    help="what scheduled drills restore: a moment of the WAL archive (the latest, or one"
    " drawn from the window at each drill; continuous archiving on), or the newest backup",
)
@click.option(
    "--from",
    "source",
    metavar="primary|offsite|TARGET_ID",
    help="where scheduled drills read the backup: the primary storage, the newest backup with"
    " a finished offsite copy, or the newest copied to this offsite target (docs/offsite.md)",
)
@output_options
@with_api
def drill_policy(
    api: Api, app_id: str, target_time: str | None, source: str | None, out: Output
) -> None:
    """Show the application's drill policy; --to changes what its scheduled drills restore,
    --from where they read it (schedule, checks and the other are kept)."""
    path = f"/applications/{app_id}/drill-policy"
    policy = api.get(path)
    if target_time is not None or source is not None:
        body = {key: policy[key] for key in ("schedule", "enabled", "checks", "target_time")}
        if target_time is not None:
            body["target_time"] = None if target_time == "backup" else target_time
        policy = api.request("PUT", path, body={**body, "source": source or policy["source"]})
    out.record(policy, POLICY_FIELDS)


@drills.command("watch")
@app_option
@click.argument("drill_id")
@output_options
@with_api
def watch_drill(api: Api, app_id: str, drill_id: str, out: Output) -> NoReturn:
    """Follow a drill until it ends; exit 0 succeeded, 1 failed, 2 cancelled."""
    DRILLS.follow_to_end(api, out, app_id, drill_id)
