"""``cairn restores``: bring an application's data back from one of its backups, or another
application's backup into it (``--from-app``, docs/restore-into-another-app.md), or its
database from a dump file (``--from-file``, docs/restore-from-upload.md).

A restore that overwrites live data (the database in place, or any volume folder) asks for
the application's name to be typed, as the web UI does; scripts pass ``--confirm <name>``.
Into another application, the name asked is the target's (``--app``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.client import Api, app_option, connection_options, with_api
from cli.output import (
    Field,
    Output,
    limit_options,
    note,
    output_options,
    typed_confirmation,
    when,
)
from cli.runs import RunKind
from cli.upload import upload_dump
from repository import names

# Where a restore or a drill reads the backup (the API's ``source``).
source_option = click.option(
    "--from",
    "source",
    default="primary",
    show_default=True,
    metavar="primary|offsite|TARGET_ID",
    help="read the backup from its primary storage, its latest offsite copy, or the copy at"
    " this offsite target (docs/offsite.md)",
)

COLUMNS: list[Field] = [
    ("id", "id"),
    ("backup", "backup_id"),
    ("from", lambda r: (r.get("source") or {}).get("application_name")),
    ("type", "restore_type"),
    ("status", "status"),
    ("started", lambda r: when(r["started_at"])),
    ("completed", lambda r: when(r["completed_at"])),
    ("error", "error_message"),
]
FIELDS: list[Field] = [
    *COLUMNS,
    ("database", "database"),
    ("named databases", "databases"),
    ("volumes", "volumes"),
    ("target", "target"),
    ("from application", lambda r: _origin(r.get("source"))),
    ("from upload", lambda r: _uploaded(r.get("upload"))),
    ("to the moment", "target_time"),
    ("notes", "notes"),
    ("workflow", "workflow_id"),
    ("Temporal UI", "temporal_ui_url"),
]
RESTORES = RunKind("restore", FIELDS)


def _origin(source: dict[str, Any] | None) -> str | None:
    """Where a restore into another application took its data from, in one line."""
    if not source:
        return None
    moved = {**source["volume_map"], **source["database_map"]}
    renamed = ", ".join(f"{a} -> {b}" for a, b in moved.items() if a != b)
    where = f"{source['application_name']} ({source['application_id']})"
    return f"{where}, backup {source['backup_id']}" + (f"; {renamed}" if renamed else "")


def _uploaded(upload: dict[str, Any] | None) -> str | None:
    """The dump a restore from an upload read, in one line."""
    if not upload:
        return None
    return f"{upload['format']} dump, {upload['bytes']} bytes, sha256 {upload['sha256']}"


def _pairs(values: tuple[str, ...], option: str) -> tuple[list[str], dict[str, str]]:
    """``SRC[=DST]`` values: the source's names, and those that go into another name."""
    names, renamed = [], {}
    for value in values:
        source, sep, into = value.partition("=")
        if not source or (sep and not into):
            raise click.UsageError(f"{option} takes SRC or SRC=DST, not {value!r}")
        names.append(source)
        if sep:
            renamed[source] = into
    return names, renamed


@click.group()
@connection_options
def restores() -> None:
    """Restore from a backup; follow, list, inspect, cancel restores.

    Exit status: 0 succeeded, 1 failed, 2 cancelled or bad usage (also a confirmation
    that does not match), 3 API problem.
    """


@restores.command("list")
@app_option
@limit_options
@output_options
@with_api
def list_restores(api: Api, app_id: str, limit: int, cursor: str | None, out: Output) -> None:
    """The application's restores, newest first."""
    out.page(api.get(RESTORES.path(app_id), limit=limit, cursor=cursor), COLUMNS, "restores")


def _overwritten(
    application: dict[str, Any],
    backup: dict[str, Any],
    database: bool,
    volumes: list[str],
    config: bool,
    target: bool,
    named: list[str],
    renamed: dict[str, str] | None = None,
) -> list[str]:
    """The live data this restore replaces, in words (empty: it replaces nothing);
    ``renamed``: the backup's volumes and named databases that go into other names."""
    parts = names.parts_of(backup.get("metadata"))
    if not database and not volumes and not config and not named:  # full: all it holds
        database, config = names.DATABASE in parts, names.CONFIG in parts
        volumes, named = names.volumes_in(parts), names.databases_in(parts)
    renamed = renamed or {}
    volumes = [renamed.get(names.volume_part(v), v) for v in volumes]
    named = [renamed.get(names.database_part(n), n) for n in named]
    platform = application.get("platform") or {}
    out = []
    if database and not target:
        out.append(f"the database {platform.get('database_url') or ''}".strip())
    databases = platform.get("databases") or {}
    out += [f"the database {(databases.get(n) or {}).get('url', n)} ({n})" for n in named]
    out += [f"the folder {(platform.get('volumes') or {}).get(v, v)} (volume {v})" for v in volumes]
    if config:
        out.append("its configuration objects (ConfigMaps and Secrets)")
    return out


@restores.command("create")
@app_option
@click.option(
    "--backup",
    "backup_id",
    metavar="BACKUP_ID",
    help="the succeeded backup to restore from (or --to)",
)
@click.option(
    "--to",
    "moment",
    metavar="RFC3339|latest",
    help="restore the database to this moment of the archive (docs/pitr.md) into a new"
    " database (--target-database, or one named after the moment), or over the live one"
    " (--in-place); see 'cairn restores window'",
)
@click.option(
    "--in-place",
    is_flag=True,
    help="with --to: REPLACE the live database with the moment (recovered beside it and"
    " verified, then swapped in while the application is stopped); asks for the"
    " application's name, or --confirm",
)
@click.option(
    "--database",
    is_flag=True,
    help="selective: bring the database back (without --database and --volume: everything"
    " the backup holds, a full restore)",
)
@click.option(
    "--volume",
    "volumes",
    multiple=True,
    metavar="NAME",
    help="selective: bring this volume back (repeatable)",
)
@click.option(
    "--config",
    is_flag=True,
    help="selective: bring the configuration objects back (Kubernetes: ConfigMaps and Secrets)",
)
@click.option(
    "--named-database",
    "named",
    multiple=True,
    metavar="NAME",
    help="selective: bring this named database (MariaDB, Redis) back (repeatable)",
)
@click.option(
    "--target-database",
    metavar="NAME",
    help="restore the database into this new database on the application's server, leaving"
    " the original untouched",
)
@click.option(
    "--target-url",
    metavar="URL",
    envvar="CAIRN_RESTORE_TARGET_URL",
    help="restore the database into this postgresql:// URL instead (platform admins only;"
    " env CAIRN_RESTORE_TARGET_URL keeps a password out of the process list)",
)
@click.option(
    "--confirm",
    metavar="APP_NAME",
    help="the application's name, confirming that live data is overwritten (instead of the prompt)",
)
@source_option
@click.option(
    "--from-app",
    "from_app",
    metavar="SOURCE_APP_ID",
    help="restore this other application's --backup into --app (same workspace; local"
    " applications); --volume and --named-database then take SRC[=DST] to map a name",
)
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="REPLACE the application's database with this dump file (see --format),"
    " uploaded with progress, read whole by the worker before the application is stopped",
)
@click.option(
    "--format",
    "dump_format",
    type=click.Choice(["custom", "plain"]),
    default="custom",
    show_default=True,
    help="with --from-file: the dump's format (pg_dump --format=custom, or plain SQL made"
    " with --no-owner; psql's backslash commands are refused)",
)
@click.option(
    "--wait",
    is_flag=True,
    help="follow the restore until it ends (progress on stderr) and exit 0 succeeded,"
    " 1 failed, 2 cancelled",
)
@output_options
@with_api
def create_restore(
    api: Api,
    app_id: str,
    backup_id: str | None,
    moment: str | None,
    in_place: bool,
    database: bool,
    volumes: tuple[str, ...],
    config: bool,
    named: tuple[str, ...],
    target_database: str | None,
    target_url: str | None,
    confirm: str | None,
    source: str,
    from_app: str | None,
    from_file: Path | None,
    dump_format: str,
    wait: bool,
    out: Output,
) -> None:
    """Restore the application from a backup: everything (full), or any of --database,
    --named-database NAME, --volume NAME and --config, optionally the database into another
    database.

    A full restore stops the application, REPLACES its live database and volume folders
    with the backup's, and starts it again: changes made since the backup are lost.

    With --from-app SOURCE: the source's backup goes into --app (the target), whose data is
    replaced; the source is only read. --volume uploads=files puts the source's uploads
    into the target's files.

    With --from-file DUMP: the application's database is replaced by the dump's contents.
    """
    if from_file is not None:
        others = (backup_id, moment, in_place, database, volumes, config, named, target_database)
        if any(others) or target_url or from_app or source != "primary":
            raise click.UsageError(
                "--from-file replaces the application's database with the file: only"
                " --format, --confirm and --wait apply"
            )
        application = api.get(f"/applications/{app_id}")
        live = (application.get("platform") or {}).get("database_url") or ""
        note(f"This restore OVERWRITES live data of application {application['name']}:")
        note(f"  - the database {live}".rstrip())
        note(
            "The file is read whole first; then the application is stopped, its database"
            " replaced by the dump's contents, and it is started again."
        )
        typed_confirmation(application["name"], confirm, "overwrite its live data")
        accepted = upload_dump(api, app_id, from_file, dump_format, application["name"])
        RESTORES.started(api, out, app_id, accepted, wait)
        return
    if from_app is not None:
        if moment or in_place or config or target_database or target_url or source != "primary":
            raise click.UsageError(
                "--from-app restores the source's backup from its primary storage into --app:"
                " --to, --in-place, --config, --target-* and --from do not apply"
            )
        if backup_id is None:
            raise click.UsageError("--from-app needs --backup BACKUP_ID (the source's backup)")
        _from_application(
            api, out, app_id, from_app, backup_id, database, volumes, named, confirm, wait
        )
        return
    if target_database and target_url:
        raise click.UsageError("give --target-database or --target-url, not both")
    if in_place and moment is None:
        raise click.UsageError(
            "--in-place goes with --to (a backup's restore is in place unless it has a target)"
        )
    if moment is not None:
        if backup_id or database or volumes or config or named or target_url or source != "primary":
            raise click.UsageError(
                "--to restores the database only: add only --target-database or --in-place"
            )
        if in_place and target_database:
            raise click.UsageError("give --target-database or --in-place, not both")
        if confirm is not None and not in_place:
            raise click.UsageError(
                "--confirm goes with --in-place: --to alone makes a new database"
            )
        to_time: dict[str, Any] = {"target_time": moment}
        if target_database:
            to_time["target"] = {"database_name": target_database}
        if in_place:
            application = api.get(f"/applications/{app_id}")
            live = (application.get("platform") or {}).get("database_url") or ""
            note(f"This restore OVERWRITES live data of application {application['name']}:")
            note(f"  - the database {live}".rstrip())
            note(
                "The moment is recovered beside it; then the application is stopped, the copy"
                " swapped in and the application started again."
            )
            typed_confirmation(application["name"], confirm, "overwrite its live data")
            to_time["target"] = {"in_place": True}
            to_time["confirm"] = application["name"]
        accepted = api.post(f"/applications/{app_id}/restores", to_time)
        RESTORES.started(api, out, app_id, accepted, wait)
        return
    if backup_id is None:
        raise click.UsageError("give --backup BACKUP_ID, or --to MOMENT")
    selective = database or volumes or config or named
    body: dict[str, Any] = {"restore_type": "selective" if selective else "full", "source": source}
    if selective:
        body |= {
            "database": database,
            "volumes": list(volumes),
            "config": config,
            "databases": list(named),
        }
    if target_database:
        body["target"] = {"database_name": target_database}
    elif target_url:
        body["target"] = {"database_url": target_url}
    application = api.get(f"/applications/{app_id}")
    backup = api.get(f"/applications/{app_id}/backups/{backup_id}")
    overwritten = _overwritten(
        application, backup, database, list(volumes), config, "target" in body, list(named)
    )
    if overwritten:
        note(f"This restore OVERWRITES live data of application {application['name']}:")
        for what in overwritten:
            note(f"  - {what}")
        note("It is stopped, its data replaced by the backup's, and it is started again.")
        typed_confirmation(application["name"], confirm, "overwrite its live data")
    accepted = api.post(f"/applications/{app_id}/backups/{backup_id}/restore", body)
    RESTORES.started(api, out, app_id, accepted, wait)


def _from_application(
    api: Api,
    out: Output,
    app_id: str,
    from_app: str,
    backup_id: str,
    database: bool,
    volumes: tuple[str, ...],
    named: tuple[str, ...],
    confirm: str | None,
    wait: bool,
) -> None:
    """The source's backup into the target (``app_id``), after the target's name is typed."""
    volume_names, volume_map = _pairs(volumes, "--volume")
    database_names, database_map = _pairs(named, "--named-database")
    selective = database or volume_names or database_names
    body: dict[str, Any] = {
        "source": {"application_id": from_app, "backup_id": backup_id},
        "restore_type": "selective" if selective else "full",
        "volume_map": volume_map,
        "database_map": database_map,
    }
    if selective:
        body |= {"database": database, "volumes": volume_names, "databases": database_names}
    target = api.get(f"/applications/{app_id}")
    origin = api.get(f"/applications/{from_app}")
    backup = api.get(f"/applications/{from_app}/backups/{backup_id}")
    renamed = {names.volume_part(a): b for a, b in volume_map.items()} | {
        names.database_part(a): b for a, b in database_map.items()
    }
    overwritten = _overwritten(
        target, backup, database, volume_names, False, False, database_names, renamed
    )
    note(
        f"This restore OVERWRITES live data of application {target['name']} with the backup"
        f" of {origin['name']} ({origin['name']} is only read):"
    )
    for what in overwritten:
        note(f"  - {what}")
    note(f"{target['name']} is stopped, its data replaced, and it is started again.")
    typed_confirmation(target["name"], confirm, "overwrite its live data")
    body["confirm"] = target["name"]
    accepted = api.post(f"/applications/{app_id}/restores/from-application", body)
    RESTORES.started(api, out, app_id, accepted, wait)


WINDOW: list[Field] = [
    ("archiving", "continuous_archiving"),
    ("earliest", lambda w: when(w["earliest"])),
    ("latest", lambda w: when(w["latest"])),
    ("gaps", lambda w: ", ".join(f"{g['from']} to {g['to']}" for g in w["gaps"]) or "none"),
    ("archiver streaming", lambda w: w["archiver"]["streaming"]),
    ("last shipment", lambda w: when(w["archiver"]["last_shipment_at"])),
    ("lag (s)", lambda w: w["archiver"]["lag_seconds"]),
]


@restores.command("window")
@app_option
@output_options
@with_api
def recovery_window(api: Api, app_id: str, out: Output) -> None:
    """The moments the database can be restored to (continuous archiving, docs/pitr.md)."""
    out.record(api.get(f"/applications/{app_id}/recovery-window"), WINDOW)


RESTORES.add_commands(
    restores,
    cancel_help="Ask a pending or running restore to stop; the application is started again.\n\n"
    "A step that swaps data finishes first, so the application is never left half swapped."
    " The step in progress hears of the cancel at its next heartbeat; one that ends before"
    " lets the restore go on. Follow it with 'cairn restores watch'.",
)
