"""``cairn admin``: the registry API from a terminal (a thin HTTP client).

``bootstrap`` and ``repo-password`` alone read the database (the first admin has no token yet;
a repository password must not cross the API).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import click
import httpx

from cli.bootstrap import bootstrap
from cli.output import ids
from core.states import Plan


class Api:
    """The API as the platform admin's token reaches it; the token is looked for only when a
    command calls, so ``--help`` of any subcommand works without one."""

    def __init__(self, url: str, token: Callable[[], str], quiet: bool = False) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.quiet = quiet

    @cached_property
    def token(self) -> str:
        return self._token()

    @cached_property
    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        try:
            response = self.client.request(method, f"/api/v1{path}", json=body)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach the API: {exc}") from exc
        payload = response.json() if response.content else None
        if response.is_error:
            detail = payload.get("detail") if isinstance(payload, dict) else response.text
            raise click.ClickException(f"{response.status_code}: {detail}")
        if payload is not None:
            click.echo("\n".join(ids(payload)) if self.quiet else json.dumps(payload, indent=2))


def _token(token: str | None, token_file: Path) -> str:
    if token:
        return token
    if token_file.exists():
        return token_file.read_text().strip()
    raise click.ClickException(f"no token: pass --token, set CAIRN_TOKEN or create {token_file}")


@click.group()
@click.option(
    "--api-url",
    envvar="CAIRN_API_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="cairn's API [env CAIRN_API_URL, also read from .cairn/cairn.env]",
)
@click.option(
    "--token", envvar="CAIRN_TOKEN", default=None, help="platform admin token [env CAIRN_TOKEN]"
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path),
    default=Path(os.environ.get("CAIRN_DATA_DIR", ".cairn")) / "admin-token",
    show_default=True,
    help="file holding the token when --token is not given ('cairn dev' writes it)",
)
@click.option("-q", "--quiet", is_flag=True, help="print only the ids in the answer, one per line")
@click.pass_context
def admin(
    ctx: click.Context, api_url: str, token: str | None, token_file: Path, quiet: bool
) -> None:
    """Manage users, tokens, workspaces, members and applications."""
    if ctx.invoked_subcommand == "bootstrap":  # makes the first admin: there is no token yet
        return
    ctx.obj = Api(api_url, lambda: _token(token, token_file), quiet)


pass_api = click.make_pass_decorator(Api)


@admin.command()
@pass_api
def me(api: Api) -> None:
    """Who the token belongs to."""
    api.call("GET", "/me")


@admin.group()
def users() -> None:
    """Users and their tokens."""


@users.command("create")
@click.option("--email", required=True, help="the user's e-mail address")
@click.option("--name", required=True, help="display name")
@click.option("--platform-admin", is_flag=True, help="may manage every workspace and user")
@pass_api
def users_create(api: Api, email: str, name: str, platform_admin: bool) -> None:
    """Create a user (then: users token USER_ID, members add)."""
    api.call(
        "POST", "/admin/users", {"email": email, "name": name, "is_platform_admin": platform_admin}
    )


@users.command("list")
@pass_api
def users_list(api: Api) -> None:
    """Every user (first 200)."""
    api.call("GET", "/admin/users?limit=200")


@users.command("token")
@click.argument("user_id")
@click.option("--name", default="default", show_default=True, help="what the token is for")
@pass_api
def users_token(api: Api, user_id: str, name: str) -> None:
    """Issue a token (printed once)."""
    api.call("POST", f"/admin/users/{user_id}/tokens", {"name": name})


@admin.command("revoke-token")
@click.argument("token_id")
@pass_api
def revoke_token(api: Api, token_id: str) -> None:
    """Revoke a token: it stops working at once."""
    api.call("DELETE", f"/admin/tokens/{token_id}")
    click.echo(f"token {token_id} revoked")


@admin.group()
def workspaces() -> None:
    """Workspaces, their plan and backup quota."""


@workspaces.command("create")
@click.argument("name")
@click.option(
    "--plan",
    type=click.Choice([plan.value for plan in Plan]),
    default=Plan.FREE.value,
    show_default=True,
    help="backups need the dedicated plan",
)
@click.option(
    "--quota-gb",
    type=int,
    default=0,
    show_default=True,
    help="backup storage the workspace may allocate, in GB",
)
@pass_api
def workspaces_create(api: Api, name: str, plan: str, quota_gb: int) -> None:
    """Create a workspace."""
    api.call("POST", "/admin/workspaces", {"name": name, "plan": plan, "backup_quota_gb": quota_gb})


@workspaces.command("list")
@pass_api
def workspaces_list(api: Api) -> None:
    """Every workspace (first 200)."""
    api.call("GET", "/admin/workspaces?limit=200")


@workspaces.command("get")
@click.argument("workspace_id")
@pass_api
def workspaces_get(api: Api, workspace_id: str) -> None:
    """One workspace, with its plan and quota."""
    api.call("GET", f"/admin/workspaces/{workspace_id}")


@workspaces.command("update")
@click.argument("workspace_id")
@click.option("--plan", type=click.Choice([plan.value for plan in Plan]), help="the new plan")
@click.option("--quota-gb", type=int, help="the new backup quota, in GB")
@pass_api
def workspaces_update(api: Api, workspace_id: str, plan: str | None, quota_gb: int | None) -> None:
    """Change a workspace's plan or backup quota."""
    body: dict[str, Any] = {}
    if plan:
        body["plan"] = plan
    if quota_gb is not None:
        body["backup_quota_gb"] = quota_gb
    api.call("PATCH", f"/admin/workspaces/{workspace_id}", body)


@admin.group()
def members() -> None:
    """Workspace members."""


@members.command("add")
@click.argument("workspace_id")
@click.argument("user_id")
@click.option(
    "--role",
    type=click.Choice(["admin", "member"]),
    default="member",
    show_default=True,
    help="admins manage storages and policies",
)
@pass_api
def members_add(api: Api, workspace_id: str, user_id: str, role: str) -> None:
    """Add a user to a workspace."""
    api.call("POST", f"/workspaces/{workspace_id}/members", {"user_id": user_id, "role": role})


@members.command("list")
@click.argument("workspace_id")
@pass_api
def members_list(api: Api, workspace_id: str) -> None:
    """A workspace's members and their roles."""
    api.call("GET", f"/workspaces/{workspace_id}/members?limit=200")


@admin.group()
def apps() -> None:
    """Applications."""


@apps.command("create")
@click.argument("workspace_id")
@click.option("--name", required=True, help="unique in the workspace")
@click.option("--owner", "owner_id", required=True, help="user id of the owner")
@click.option("--database-url", help="postgresql://user:password@host:port/dbname")
@click.option("--volume", multiple=True, help="name=/absolute/folder (repeatable)")
@click.option(
    "--database",
    "named",
    multiple=True,
    metavar="NAME=URL",
    help="a database beside the main one: name=mysql://…, mariadb://… or redis://…"
    " (repeatable; docs/engines.md)",
)
@pass_api
def apps_create(
    api: Api,
    workspace_id: str,
    name: str,
    owner_id: str,
    database_url: str | None,
    volume: tuple[str, ...],
    named: tuple[str, ...],
) -> None:
    """Register an application: its databases and volume folders are what backups take."""
    volumes = _pairs(volume, "=", "name=/path", "--volume")
    databases = _pairs(named, "=", "name=url", "--database")
    platform = {
        "kind": "local",
        "database_url": database_url,
        "volumes": volumes,
        "databases": databases,
    }
    api.call(
        "POST",
        f"/workspaces/{workspace_id}/applications",
        {"name": name, "owner_id": owner_id, "platform": platform},
    )


def _pairs(items: tuple[str, ...], sep: str, shape: str, option: str) -> dict[str, str]:
    """``key<sep>value`` options as a dict; one without the separator is a usage error."""
    pairs = {}
    for item in items:
        key, found, value = item.partition(sep)
        if not found:
            raise click.BadParameter(f"{item!r} is not {shape}", param_hint=option)
        pairs[key] = value
    return pairs


@apps.command("create-kubernetes")
@click.argument("workspace_id")
@click.option("--name", required=True, help="unique in the workspace")
@click.option("--owner", "owner_id", required=True, help="user id of the owner")
@click.option("--namespace", required=True, help="the application's namespace in the cluster")
@click.option("--context", help="kubeconfig context of the cluster (default: cairn's)")
@click.option(
    "--workload",
    multiple=True,
    help="deployment/<name> or statefulset/<name> scaled to zero during snapshots and"
    " restores (repeatable)",
)
@click.option("--workload-selector", help="label selector of those workloads instead of names")
@click.option("--volume", multiple=True, help="name=<pvc name> (repeatable)")
@click.option("--snapshot-class", help="VolumeSnapshotClass (default: cairn's or the cluster's)")
@click.option("--db-host", help="the database's host as seen from inside the cluster")
@click.option("--db-port", type=int, default=5432, show_default=True, help="the database's port")
@click.option("--db-name", help="the database's name")
@click.option("--db-user", help="the user cairn's mover connects as")
@click.option(
    "--db-password-secret",
    help="<secret>:<key> in the namespace holding the password (cairn never stores it)",
)
@click.option(
    "--config",
    "config_include",
    type=click.Choice(["all", "none", "selector"]),
    default="all",
    show_default=True,
    help="which ConfigMaps and Secrets a backup includes",
)
@click.option("--config-selector", help="label selector of them, with --config selector")
@pass_api
def apps_create_kubernetes(
    api: Api,
    workspace_id: str,
    name: str,
    owner_id: str,
    namespace: str,
    context: str | None,
    workload: tuple[str, ...],
    workload_selector: str | None,
    volume: tuple[str, ...],
    snapshot_class: str | None,
    db_host: str | None,
    db_port: int,
    db_name: str | None,
    db_user: str | None,
    db_password_secret: str | None,
    config_include: str,
    config_selector: str | None,
) -> None:
    """Register an application that runs on Kubernetes: its PVCs, database and ConfigMaps/Secrets
    are what backups take (docs/kubernetes.md)."""
    database = None
    if db_host:
        if not (db_name and db_user and db_password_secret):
            raise click.UsageError("--db-host needs --db-name, --db-user and --db-password-secret")
        secret, _, key = db_password_secret.partition(":")
        database = {
            "host": db_host,
            "port": db_port,
            "dbname": db_name,
            "user": db_user,
            "password_secret": {"name": secret, "key": key},
        }
    workloads: dict[str, Any] = {"selector": workload_selector} if workload_selector else {}
    if workload or not workload_selector:
        workloads["names"] = list(workload)  # both given: the API says to choose
    platform = {
        "kind": "kubernetes",
        "namespace": namespace,
        "context": context,
        "workloads": workloads,
        "volumes": _pairs(volume, "=", "name=<pvc name>", "--volume"),
        "snapshot_class": snapshot_class,
        "database": database,
        "config": {"include": config_include, "selector": config_selector},
    }
    api.call(
        "POST",
        f"/workspaces/{workspace_id}/applications",
        {"name": name, "owner_id": owner_id, "platform": platform},
    )


@apps.command("list")
@click.argument("workspace_id")
@pass_api
def apps_list(api: Api, workspace_id: str) -> None:
    """A workspace's applications."""
    api.call("GET", f"/workspaces/{workspace_id}/applications?limit=200")


@apps.command("get")
@click.argument("app_id")
@pass_api
def apps_get(api: Api, app_id: str) -> None:
    """One application."""
    api.call("GET", f"/applications/{app_id}")


@apps.command("confirm-database")
@click.argument("app_id")
@click.argument("name")
@pass_api
def apps_confirm_database(api: Api, app_id: str, name: str) -> None:
    """Confirm named database NAME's server (restarted or rebuilt) as the application's, so
    restores write to it again: registration's checks, its identity recorded anew."""
    api.call("POST", f"/applications/{app_id}/databases/{name}/confirm")


@apps.command("delete")
@click.argument("app_id")
@pass_api
def apps_delete(api: Api, app_id: str) -> None:
    """Delete an application (refused while it has a backup policy)."""
    api.call("DELETE", f"/applications/{app_id}")
    click.echo(f"application {app_id} deleted")


@admin.command("repo-password")
@click.argument("app_id")
@pass_api
def repo_password(api: Api, app_id: str) -> None:
    """Print an application's restic repository password (audited; reads the database)."""
    from cli.repo_password import print_passwords

    print_passwords(api.token, app_id)


@admin.command()
@click.argument("workspace_id")
@pass_api
def audit(api: Api, workspace_id: str) -> None:
    """A workspace's audit events, newest first."""
    api.call("GET", f"/workspaces/{workspace_id}/audit-events?limit=200")


admin.add_command(bootstrap)
