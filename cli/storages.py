"""``cairn storages``: a workspace's backup storages (Proxmox storages or local folders)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

import click

from cli.client import Api, ApiError, Exit, connection_options, with_api
from cli.output import (
    Field,
    Output,
    limit_options,
    note,
    output_options,
    size,
    typed_confirmation,
    when,
)

F = TypeVar("F", bound=Callable[..., Any])
COLUMNS: list[Field] = [
    ("id", "id"),
    ("name", "name"),
    ("type", "type"),
    ("status", "status"),
    ("capacity GB", "capacity_gb"),
    ("used", lambda s: size(s["used_bytes"])),
    ("file system free", lambda s: size(s["available_bytes"])),
]
FIELDS: list[Field] = [
    *COLUMNS,
    ("status message", "status_message"),
    ("workspace", "workspace_id"),
    ("Proxmox id", "proxmox_storage_id"),
    ("connection", "connection"),
    ("secrets set", "secrets_set"),
    ("usage read", lambda s: when(s["usage_read_at"])),
    ("created", lambda s: when(s["created_at"])),
]
SETTLING = ("pending", "deleting")
POLL_SECONDS = 1.0


def _workspace(api: Api, given: str | None) -> str:
    """The given workspace, else the caller's only one."""
    if given:
        return given
    memberships = api.get("/me")["memberships"]
    if len(memberships) == 1:
        return str(memberships[0]["workspace_id"])
    raise click.UsageError(
        f"you are a member of {len(memberships)} workspaces; pass --workspace (env CAIRN_WORKSPACE)"
    )


def workspace_option(command: F) -> F:
    return click.option(
        "--workspace",
        "workspace_id",
        envvar="CAIRN_WORKSPACE",
        metavar="WORKSPACE_ID",
        help="the workspace [env CAIRN_WORKSPACE; default: your only workspace]",
    )(command)


def connection_settings(command: F) -> F:
    """Where an nfs or ceph storage is; a local one needs none of these."""
    for decorator in reversed(
        [
            click.option("--server", help="nfs: server IP address or DNS name"),
            click.option("--export", help="nfs: exported path, e.g. /srv/backups"),
            click.option("--mount-options", help="nfs: mount options, e.g. vers=4.2"),
            click.option("--monhost", multiple=True, help="ceph: monitor address (repeatable)"),
            click.option("--username", help="ceph: client name, e.g. admin"),
            click.option("--fs-name", help="ceph: the CephFS file system name"),
            click.option("--subdir", help="ceph: subdirectory to mount, e.g. /cairn"),
            click.option(
                "--keyring-file",
                type=click.File("r"),
                help="ceph: file with the CephX key ('-': stdin), kept off the command line",
            ),
        ]
    ):
        command = decorator(command)
    return command


def _connection(options: dict[str, Any]) -> dict[str, Any]:
    """The API's connection object from the options that were given."""
    keyring: IO[str] | None = options.pop("keyring_file")
    names = {"mount_options": "options"}
    connection = {names.get(k, k): v for k, v in options.items() if v not in (None, ())}
    if "monhost" in connection:
        connection["monhost"] = list(connection["monhost"])
    if keyring is not None:
        connection["keyring"] = keyring.read().strip()
    return connection


def _path(workspace_id: str, storage_id: str | None = None) -> str:
    return f"/workspaces/{workspace_id}/backup-storages" + (f"/{storage_id}" if storage_id else "")


def _settle(api: Api, path: str, gone_is_done: bool) -> tuple[dict[str, Any] | None, int]:
    """Polls a storage until its workflow has settled it: (last answer, exit status)."""
    last = None
    while True:
        try:
            storage = api.poll(path, on_wait=lambda m: note(f"waiting: {m}"))
        except ApiError as exc:
            if gone_is_done and exc.status == 404:
                note("storage deleted")
                return None, Exit.OK
            raise
        if storage["status"] != last:
            last = storage["status"]
            note(f"storage {storage['name']} is {last}")
        if last not in SETTLING:
            ok = last == "active" and not gone_is_done
            if not ok:
                note(f"storage {storage['name']}: {storage.get('status_message') or last}")
            return storage, Exit.OK if ok else Exit.FAILED
        time.sleep(POLL_SECONDS)


def _finish(out: Output, api: Api, path: str, accepted: dict[str, Any], wait: bool) -> None:
    if not wait or accepted.get("workflow_id") is None:
        out.record(accepted, FIELDS)
        return
    storage, code = _settle(api, path, gone_is_done=False)
    out.record(storage or accepted, FIELDS)
    click.get_current_context().exit(code)


wait_option = click.option(
    "--wait",
    is_flag=True,
    help="wait until the storage's workflow has finished; exit 0 active, 1 otherwise",
)


@click.group()
@connection_options
def storages() -> None:
    """A workspace's backup storages.

    Workspace admins create, change and delete them; the workspace needs the Dedicated plan.
    """


@storages.command("list")
@workspace_option
@limit_options
@output_options
@with_api
def list_storages(
    api: Api, workspace_id: str | None, limit: int, cursor: str | None, out: Output
) -> None:
    """The workspace's storages, newest first, with cairn's usage of each."""
    page = api.get(_path(_workspace(api, workspace_id)), limit=limit, cursor=cursor)
    out.page(page, COLUMNS, "storages")


@storages.command("get")
@workspace_option
@click.argument("storage_id")
@output_options
@with_api
def get_storage(api: Api, workspace_id: str | None, storage_id: str, out: Output) -> None:
    """One storage: status, usage, connection settings (secrets are never shown)."""
    out.record(api.get(_path(_workspace(api, workspace_id), storage_id)), FIELDS)


@storages.command("create")
@workspace_option
@click.option("--name", required=True, help="a DNS-label name, unique in the workspace")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["local", "nfs", "ceph"]),
    default="local",
    show_default=True,
    help="local folder, NFS export or CephFS",
)
@click.option(
    "--capacity-gb",
    type=int,
    required=True,
    help="size granted to this storage (counts against the workspace quota)",
)
@connection_settings
@wait_option
@output_options
@with_api
def create_storage(
    api: Api,
    workspace_id: str | None,
    name: str,
    kind: str,
    capacity_gb: int,
    wait: bool,
    out: Output,
    **connection: Any,
) -> None:
    """Provision a storage (through Proxmox VE when configured, else a local folder)."""
    path = _path(_workspace(api, workspace_id))
    body = {
        "name": name,
        "type": kind,
        "capacity_gb": capacity_gb,
        "connection": _connection(connection),
    }
    accepted = api.post(path, body)
    _finish(out, api, f"{path}/{accepted['id']}", accepted, wait)


@storages.command("update")
@workspace_option
@click.argument("storage_id")
@click.option("--name", help="new name")
@click.option("--capacity-gb", type=int, help="new capacity (not below what it holds)")
@connection_settings
@wait_option
@output_options
@with_api
def update_storage(
    api: Api,
    workspace_id: str | None,
    storage_id: str,
    name: str | None,
    capacity_gb: int | None,
    wait: bool,
    out: Output,
    **connection: Any,
) -> None:
    """Rename, resize, or change connection settings (given ones replace the stored ones)."""
    path = _path(_workspace(api, workspace_id), storage_id)
    body: dict[str, Any] = {"name": name, "capacity_gb": capacity_gb}
    changed = _connection(connection)
    if changed:
        body["connection"] = api.get(path)["connection"] | changed
    accepted = api.request("PUT", path, body={k: v for k, v in body.items() if v is not None})
    _finish(out, api, path, accepted, wait)


@storages.command("delete")
@workspace_option
@click.argument("storage_id")
@click.option(
    "--force",
    is_flag=True,
    help="also delete every backup the storage holds (asks for its name first)",
)
@click.option(
    "--confirm",
    metavar="STORAGE_NAME",
    help="the storage's name, confirming --force (instead of the prompt)",
)
@click.option("--wait", is_flag=True, help="wait until the storage is gone; exit 0, 1 on error")
@output_options
@with_api
def delete_storage(
    api: Api,
    workspace_id: str | None,
    storage_id: str,
    force: bool,
    confirm: str | None,
    wait: bool,
    out: Output,
) -> None:
    """Delete a storage no policy uses; --force when it still holds backups."""
    path = _path(_workspace(api, workspace_id), storage_id)
    if force:
        storage = api.get(path)
        note(
            f"--force deletes EVERY backup in storage {storage['name']}"
            f" ({size(storage['used_bytes'])}) with it."
        )
        typed_confirmation(storage["name"], confirm, "delete it with its backups")
    accepted = api.request("DELETE", path, params={"force": "true" if force else None})
    if not wait:
        out.record(accepted, FIELDS)
        return
    storage, code = _settle(api, path, gone_is_done=True)
    if storage is not None:
        out.record(storage, FIELDS)
    click.get_current_context().exit(code)
