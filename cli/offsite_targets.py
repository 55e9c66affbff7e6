"""``cairn offsite-targets``: a workspace's offsite targets (docs/offsite.md).

Passwords and secret keys never go on the command line (the process list shows it): they
come from the environment or a file.
"""

from __future__ import annotations

import os
from typing import IO, Any

import click

from cli.client import Api, connection_options, with_api
from cli.output import Field, Output, limit_options, note, output_options, when
from cli.storages import _workspace, workspace_option

COLUMNS: list[Field] = [
    ("id", "id"),
    ("name", "name"),
    ("kind", "kind"),
    ("url", "url"),
    ("protection days", "protection_days"),
]
FIELDS: list[Field] = [
    *COLUMNS,
    ("region", "region"),
    ("maintenance url", "maintenance_url"),
    ("credentials set", "credentials_set"),
    ("maintenance credentials set", "maintenance_credentials_set"),
    ("upload limit KiB/s", "upload_limit_kib"),
    ("workspace", "workspace_id"),
    ("created", lambda t: when(t["created_at"])),
]


def _path(workspace_id: str, target_id: str | None = None) -> str:
    return f"/workspaces/{workspace_id}/offsite-targets" + (f"/{target_id}" if target_id else "")


def _secret(given: IO[str] | None, variable: str) -> str:
    """A password from its file (``-``: stdin), else from its environment variable."""
    secret = given.read().strip() if given is not None else os.environ.get(variable, "")
    if not secret:
        raise click.UsageError(f"give the password in a file or in {variable}")
    return secret


@click.group("offsite-targets")
@connection_options
def offsite_targets() -> None:
    """A workspace's offsite targets: append-only places backups are copied to.

    Exit status: 0 done, 2 bad usage, 3 API problem (a target that failed its check
    is 422, nothing saved).
    """


@offsite_targets.command("list")
@workspace_option
@limit_options
@output_options
@with_api
def list_targets(
    api: Api, workspace_id: str | None, limit: int, cursor: str | None, out: Output
) -> None:
    """The workspace's offsite targets."""
    page = api.get(_path(_workspace(api, workspace_id)), limit=limit, cursor=cursor)
    out.page(page, COLUMNS, "offsite targets")


@offsite_targets.command("get")
@workspace_option
@click.argument("target_id")
@output_options
@with_api
def get_target(api: Api, workspace_id: str | None, target_id: str, out: Output) -> None:
    """One offsite target (its credentials never show)."""
    out.record(api.get(_path(_workspace(api, workspace_id), target_id)), FIELDS)


@offsite_targets.command("create")
@workspace_option
@click.option("--name", required=True, help="the target's name in the workspace")
@click.option(
    "--kind",
    type=click.Choice(["rest", "s3"]),
    required=True,
    help="rest: a restic REST server (append-only); s3: an S3-compatible bucket",
)
@click.option(
    "--url",
    required=True,
    help="rest: the REST server's https:// URL; s3: https://host/bucket[/prefix]",
)
@click.option("--region", help="s3: the bucket's region (default us-east-1)")
@click.option("--username", required=True, help="basic-auth user; s3: the access key id")
@click.option(
    "--password-file",
    type=click.File("r"),
    help="file with the password or secret access key ('-': stdin)"
    " [default: env CAIRN_OFFSITE_PASSWORD]",
)
@click.option("--maintenance-url", help="the endpoint that allows deletes (offsite retention)")
@click.option("--maintenance-username", help="the maintenance user (offsite retention only)")
@click.option(
    "--maintenance-password-file",
    type=click.File("r"),
    help="[default: env CAIRN_OFFSITE_MAINTENANCE_PASSWORD]",
)
@click.option(
    "--protection-days",
    type=click.IntRange(1),
    default=14,
    show_default=True,
    help="no copy younger than this is ever removed",
)
@click.option("--upload-limit-kib", type=click.IntRange(1), help="KiB/s for copies")
@output_options
@with_api
def create_target(
    api: Api,
    workspace_id: str | None,
    name: str,
    kind: str,
    url: str,
    region: str | None,
    username: str,
    password_file: IO[str] | None,
    maintenance_url: str | None,
    maintenance_username: str | None,
    maintenance_password_file: IO[str] | None,
    protection_days: int,
    upload_limit_kib: int | None,
    out: Output,
) -> None:
    """Add a target; the API checks it first (a delete must be refused)."""
    password = _secret(password_file, "CAIRN_OFFSITE_PASSWORD")
    body: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "url": url,
        "credentials": {"username": username, "password": password},
        "protection_days": protection_days,
        "upload_limit_kib": upload_limit_kib,
    }
    if region:
        body["region"] = region
    if maintenance_username:
        secret = _secret(maintenance_password_file, "CAIRN_OFFSITE_MAINTENANCE_PASSWORD")
        body["maintenance_credentials"] = {"username": maintenance_username, "password": secret}
        body["maintenance_url"] = maintenance_url or url
    note("checking the target (a probe repository is written, a delete must be refused)")
    out.record(api.post(_path(_workspace(api, workspace_id)), body), FIELDS)


@offsite_targets.command("update")
@workspace_option
@click.argument("target_id")
@click.option("--name", help="a new name in the workspace")
@click.option("--upload-limit-kib", type=click.IntRange(1), help="KiB/s for copies")
@click.option("--no-upload-limit", is_flag=True, help="copies without a bandwidth limit")
@click.option(
    "--protection-days", type=click.IntRange(1), help="raise the protection (never lowered)"
)
@click.option(
    "--username",
    help="rotate the everyday credentials: this user, the password from --password-file or"
    " env CAIRN_OFFSITE_PASSWORD",
)
@click.option("--password-file", type=click.File("r"), help="('-': stdin)")
@click.option(
    "--maintenance-username",
    help="rotate the maintenance credentials: this user, the password from"
    " --maintenance-password-file or env CAIRN_OFFSITE_MAINTENANCE_PASSWORD",
)
@click.option("--maintenance-password-file", type=click.File("r"), help="('-': stdin)")
@click.option("--maintenance-url", help="with --maintenance-username: a new maintenance endpoint")
@output_options
@with_api
def update_target(
    api: Api,
    workspace_id: str | None,
    target_id: str,
    name: str | None,
    upload_limit_kib: int | None,
    no_upload_limit: bool,
    protection_days: int | None,
    username: str | None,
    password_file: IO[str] | None,
    maintenance_username: str | None,
    maintenance_password_file: IO[str] | None,
    maintenance_url: str | None,
    out: Output,
) -> None:
    """Rename a target, set its bandwidth limit, raise its protection or rotate its
    credentials; new credentials are checked first (422, nothing saved, when they fail)."""
    if upload_limit_kib is not None and no_upload_limit:
        raise click.UsageError("give --upload-limit-kib or --no-upload-limit, not both")
    if maintenance_url and not maintenance_username:
        raise click.UsageError("--maintenance-url comes with --maintenance-username")
    body: dict[str, Any] = {}
    if name:
        body["name"] = name
    if upload_limit_kib is not None or no_upload_limit:
        body["upload_limit_kib"] = upload_limit_kib
    if protection_days is not None:
        body["protection_days"] = protection_days
    if username:
        password = _secret(password_file, "CAIRN_OFFSITE_PASSWORD")
        body["credentials"] = {"username": username, "password": password}
    if maintenance_username:
        secret = _secret(maintenance_password_file, "CAIRN_OFFSITE_MAINTENANCE_PASSWORD")
        body["maintenance_credentials"] = {"username": maintenance_username, "password": secret}
        if maintenance_url:
            body["maintenance_url"] = maintenance_url
    if not body:
        raise click.UsageError("nothing to change: give at least one option")
    if "credentials" in body or "maintenance_credentials" in body:
        note("checking the new credentials against the target")
    path = _path(_workspace(api, workspace_id), target_id)
    out.record(api.request("PATCH", path, body=body), FIELDS)


@offsite_targets.command("delete")
@workspace_option
@click.argument("target_id")
@with_api
def delete_target(api: Api, workspace_id: str | None, target_id: str) -> None:
    """Forget a target no policy names; its copies stay on the server."""
    api.request("DELETE", _path(_workspace(api, workspace_id), target_id))
    note("offsite target deleted (its copies stay on the server)")
