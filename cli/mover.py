"""``cairn mover``: what a Kubernetes mover Job runs, next to the application's data.

The Kubernetes platform (adapters/kubernetes/) starts these commands in a pod of cairn's own
namespace, with the backup storage and a claim (a copy of an application's volume, or a new
volume being restored) mounted. They do what the
local platform does in the worker (the same code: ``LocalPlatform``), on the pod's folders
and on the database as the cluster reaches it. Output is JSON lines: progress as restic
reports it, then one result; anything else on the log is what a failure left. The result
is also written to the file ``CAIRN_TERMINATION_LOG`` names (the container's
terminationMessagePath) when it fits the kubelet's 4096 bytes: the pod's status then holds
it even when its log cannot be read.

Passwords come only from the environment, filled from Secrets by the Job:
``RESTIC_PASSWORD`` (the run Secret), ``PGPASSWORD`` (the application's own Secret) and
``CAIRN_TARGET_PASSWORD`` (the run Secret, for a restore into another server). A command
that reads a backup from its offsite copy (``--offsite``, no storage mounted) finds the
copy's place and everyday credentials there too (``CAIRN_OFFSITE_*``,
``adapters/restic_remote.py``'s ``Remote.handed``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from adapters import volume_root
from adapters.errors import AdapterError
from adapters.kubernetes.volume_swap import swap_in_place
from adapters.local_folders import count_files
from adapters.local_platform import LocalPlatform
from adapters.platform import OtherDatabase, Scratch, SqlCheck
from adapters.restic import Progress, Repository, Restic
from adapters.restic_remote import Remote, RemoteReader
from core.settings import get_settings

PROGRESS: Final = "cairn_progress"
RESULT: Final = "cairn_result"
F = TypeVar("F", bound=Callable[..., Any])
REPO_HELP: Final = "the repository, as mounted in the pod (password: RESTIC_PASSWORD)"
OFFSITE_HELP: Final = "read the offsite copy the run Secret names (CAIRN_OFFSITE_*), not --repo"
RUN_HELP: Final = "the backup, restore or drill the mover works for (names its staging copies)"
# What the kubelet keeps of a termination message.
TERMINATION_MESSAGE_BYTES: Final = 4096


def _emit(kind: str, payload: dict[str, Any]) -> None:
    line = json.dumps({"message_type": kind, **payload})
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    termination_log = os.environ.get("CAIRN_TERMINATION_LOG")
    if kind == RESULT and termination_log and len(line.encode()) <= TERMINATION_MESSAGE_BYTES:
        Path(termination_log).write_text(line)


def _progress(progress: Progress) -> None:
    _emit(PROGRESS, asdict(progress))


def _reported(command: F) -> F:
    """An adapter's failure ends the command with its message (the mover's last log line)."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AdapterError as exc:
            raise click.ClickException(exc.message) from None

    return run  # type: ignore[return-value]


def _repository(path: str) -> Repository:
    return Repository(Path(path), os.environ.get("RESTIC_PASSWORD", ""))


def _reading(repo: str | None, offsite: bool) -> tuple[Restic, Repository]:
    """The restic and repository a command reads the backup from: the mounted ``repo``, or
    the offsite copy handed over in the environment."""
    restic = Restic(get_settings().restic_bin)
    if offsite:
        try:
            reader = RemoteReader(restic, Remote.received(os.environ))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        return reader, reader.repository()
    if repo is None:
        raise click.UsageError("give --repo or --offsite")
    return restic, _repository(repo)


def _platform(
    db_host: str | None,
    db_port: int,
    db_name: str | None,
    db_user: str | None,
    volumes: tuple[str, ...] = (),
    restic: Restic | None = None,
) -> LocalPlatform:
    """The local platform over the pod's view: the database as reached from here, folders."""
    database = (
        {"host": db_host, "port": db_port, "dbname": db_name, "user": db_user}
        if db_host and db_name
        else None
    )
    folders = dict(volume.split("=", 1) for volume in volumes)
    settings = get_settings()
    return LocalPlatform(
        {"database": database, "volumes": folders},
        {"database_password": os.environ.get("PGPASSWORD")},
        cairn=settings,
        restic=restic or Restic(settings.restic_bin),
    )


def _options(command: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        command = option(command)
    return command


def run_options(command: F) -> F:
    """The repository a command reads or writes, and the run it works for."""
    return _options(
        command,
        [
            click.option("--repo", required=True, help=REPO_HELP),
            click.option("--run", "run_id", required=True, help=RUN_HELP),
        ],
    )


def reading_options(command: F) -> F:
    """Where a command reads the backup (the mounted repository or the offsite copy), and
    the run it works for."""
    return _options(
        command,
        [
            click.option("--repo", help=REPO_HELP),
            click.option("--offsite", is_flag=True, help=OFFSITE_HELP),
            click.option("--run", "run_id", required=True, help=RUN_HELP),
        ],
    )


def database_options(command: F) -> F:
    return _options(
        command,
        [
            click.option("--db-host", help="the database server, as the pod reaches it"),
            click.option("--db-port", type=int, default=5432, show_default=True, help="its port"),
            click.option("--db-name", help="the application's database"),
            click.option("--db-user", help="the role to connect as (password: PGPASSWORD)"),
        ],
    )


@click.group(hidden=True)
def mover() -> None:
    """Commands of the Kubernetes mover Jobs (run in the cluster, not by hand)."""


@mover.command()
@run_options
@click.option("--tag", "tags", multiple=True, help="a tag of the new snapshot, repeated")
@database_options
@_reported
def dump(
    repo: str,
    run_id: str,
    tags: tuple[str, ...],
    db_host: str,
    db_port: int,
    db_name: str,
    db_user: str | None,
) -> None:
    """pg_dump streamed into restic backup --stdin."""
    platform = _platform(db_host, db_port, db_name, db_user)
    result = platform.dump_database(run_id, _repository(repo), list(tags), _progress)
    _emit(RESULT, asdict(result))


@mover.command()
@click.argument("source")
@run_options
@click.option("--tag", "tags", multiple=True, help="a tag of the new snapshot, repeated")
@click.option("--parent", help="the previous snapshot of the volume (incremental)")
@click.option("--force", is_flag=True, help="re-read every file (full)")
@_reported
def upload(
    source: str, repo: str, run_id: str, tags: tuple[str, ...], parent: str | None, force: bool
) -> None:
    """restic backup of a mounted folder (a claim restored from a snapshot)."""
    platform = _platform(None, 0, None, None)
    result = platform.upload_volume(
        run_id,
        source,
        source,
        _repository(repo),
        list(tags),
        parent=parent,
        force=force,
        progress=_progress,
    )
    _emit(RESULT, asdict(result))


@mover.command("restore-database")
@reading_options
@click.option("--snapshot", required=True, help="the snapshot to restore from")
@click.option("--into-name", help="another database on the same server")
@click.option("--into-url", help="another server (password: CAIRN_TARGET_PASSWORD)")
@database_options
@_reported
def restore_database(
    repo: str | None,
    offsite: bool,
    run_id: str,
    snapshot: str,
    into_name: str | None,
    into_url: str | None,
    db_host: str,
    db_port: int,
    db_name: str,
    db_user: str | None,
) -> None:
    """Restore into a staging database, then swap it in by rename (safe to repeat)."""
    restic, repository = _reading(repo, offsite)
    platform = _platform(db_host, db_port, db_name, db_user, restic=restic)
    into = None
    if into_name or into_url:
        into = OtherDatabase(into_name, into_url, os.environ.get("CAIRN_TARGET_PASSWORD"))
    note = platform.restore_database(run_id, repository, snapshot, _progress, into=into)
    _emit(RESULT, {"note": note})


@mover.command("restore-volume")
@click.argument("target")
@reading_options
@click.option("--snapshot", required=True, help="the snapshot to restore from")
@_reported
def restore_volume(
    target: str, repo: str | None, offsite: bool, run_id: str, snapshot: str
) -> None:
    """Restore into a staging folder inside the (new) claim, swap it in, count the files
    (what the restore's verification compares: the claim is re-bound to this volume).

    The volume's root gets the owner and mode recorded at backup when this mover is root;
    otherwise (it cannot give the root away) the result names them as ``root``, for a root
    mover of its own to set."""
    restic, repository = _reading(repo, offsite)
    swap_in_place(
        Path(target),
        run_id.replace("-", "")[:12],
        lambda staging: restic.restore(repository, snapshot, staging),
    )
    result: dict[str, Any] = {"note": "restored"}
    root = volume_root.recorded(restic.snapshot(repository, snapshot).tags)
    if root is not None and os.geteuid() == 0:
        volume_root.give_back(Path(target), root)
    elif root is not None and volume_root.of(Path(target)) != root:
        result["root"] = root.text()
    files, size = count_files(Path(target))
    _emit(RESULT, {**result, "files": files, "bytes": size})


@mover.command("own-root")
@click.argument("target")
@click.option("--root", "recorded", required=True, help="uid:gid:mode, as the backup recorded it")
@_reported
def own_root(target: str, recorded: str) -> None:
    """Give a restored volume's root the owner and mode it had (run as root)."""
    root = volume_root.parse(recorded)
    volume_root.give_back(Path(target), root)
    _emit(RESULT, {"note": f"root {root}"})


@mover.command()
@click.option("--volume", "volumes", multiple=True, help="NAME=FOLDER, repeated")
@click.option("--database/--no-database", default=False, help="count the rows per table")
@click.option("--into-name", help="count another database on the same server")
@database_options
@_reported
def measure(
    volumes: tuple[str, ...],
    database: bool,
    into_name: str | None,
    db_host: str | None,
    db_port: int,
    db_name: str | None,
    db_user: str | None,
) -> None:
    """Row counts per table and file figures per volume (what verification compares)."""
    platform = _platform(db_host, db_port, db_name, db_user, volumes)
    into = OtherDatabase(into_name) if into_name else None
    names = [volume.split("=", 1)[0] for volume in volumes]
    measured = platform.measure(database, names, into=into)
    _emit(RESULT, asdict(measured))


@mover.command()
@database_options
@_reported
def size(db_host: str, db_port: int, db_name: str, db_user: str | None) -> None:
    """The database's size, for the first backup's quota estimate."""
    platform = _platform(db_host, db_port, db_name, db_user)
    _emit(RESULT, {"bytes": platform.estimate_bytes(True, [])})


@mover.command("scratch-database")
@reading_options
@click.option("--snapshot", required=True, help="the snapshot to restore from")
@database_options
@_reported
def scratch_database(
    repo: str | None,
    offsite: bool,
    run_id: str,
    snapshot: str,
    db_host: str,
    db_port: int,
    db_name: str,
    db_user: str | None,
) -> None:
    """A drill's scratch database on the application's server, filled from the backup
    (``--run``: the drill's id)."""
    restic, repository = _reading(repo, offsite)
    platform = _platform(db_host, db_port, db_name, db_user, restic=restic)
    platform.restore_database(run_id, repository, snapshot, _progress, into=Scratch(run_id))
    _emit(RESULT, {"database": platform.describe_scratch(run_id)["scratch_database"]})


@mover.command("scratch-measure")
@click.option("--run", "drill_id", required=True, help="the drill's id")
@database_options
@_reported
def scratch_measure(
    drill_id: str, db_host: str, db_port: int, db_name: str, db_user: str | None
) -> None:
    """Row counts per table of a drill's scratch database."""
    platform = _platform(db_host, db_port, db_name, db_user)
    _emit(RESULT, asdict(platform.measure(True, [], into=Scratch(drill_id))))


@mover.command()
@click.option("--run", "drill_id", required=True, help="the drill's id")
@click.option("--checks", "listed", required=True, help="JSON list of {name, sql}")
@click.option("--timeout", type=int, required=True, help="seconds per check")
@database_options
@_reported
def checks(
    drill_id: str,
    listed: str,
    timeout: int,
    db_host: str,
    db_port: int,
    db_name: str,
    db_user: str | None,
) -> None:
    """A drill's read-only SQL checks against its scratch database."""
    platform = _platform(db_host, db_port, db_name, db_user)
    results = platform.run_checks(
        drill_id, [SqlCheck(**check) for check in json.loads(listed)], timeout
    )
    _emit(RESULT, {"results": [asdict(result) for result in results]})


@mover.command("drop-scratch")
@click.option("--run", "drill_id", required=True, help="the drill's id")
@database_options
@_reported
def drop_scratch(
    drill_id: str, db_host: str, db_port: int, db_name: str, db_user: str | None
) -> None:
    """Drops a drill's scratch database (safe to repeat)."""
    _platform(db_host, db_port, db_name, db_user).remove_scratch(drill_id)
    _emit(RESULT, {})
