"""``cairn notification-channels``: where a workspace is told about its runs (docs/alerts.md).

Secrets (the webhook's HMAC key, the Slack URL, the SMTP password) never go on the command
line (the process list shows it): they come from a file or the environment.
"""

from __future__ import annotations

import os
from typing import IO, Any

import click

from cli.client import Api, connection_options, with_api
from cli.output import Field, Output, limit_options, note, output_options, when
from cli.storages import _workspace, workspace_option
from contracts.channels import EVENTS

SECRET_ENV = "CAIRN_CHANNEL_SECRET"

COLUMNS: list[Field] = [
    ("id", "id"),
    ("name", "name"),
    ("kind", "kind"),
    ("events", lambda c: ",".join(c["events"])),
    ("status", "status"),
]
FIELDS: list[Field] = [
    *COLUMNS,
    ("enabled", "enabled"),
    ("url", "url"),
    ("recipients", lambda c: ",".join(c["recipients"] or []) if c.get("recipients") else None),
    ("sender", "sender"),
    ("smtp host", "smtp_host"),
    ("smtp port", "smtp_port"),
    ("starttls", "starttls"),
    ("username", "username"),
    ("secret set", "secret_set"),
    ("last delivery", lambda c: when(c["last_delivery_at"])),
    ("last error", "last_error"),
    ("consecutive failures", "consecutive_failures"),
    ("workspace", "workspace_id"),
]


def _path(workspace_id: str, channel_id: str | None = None) -> str:
    return f"/workspaces/{workspace_id}/notification-channels" + (
        f"/{channel_id}" if channel_id else ""
    )


def _secret(given: IO[str] | None, what: str) -> str:
    """The secret from its file (``-``: stdin), else from ``CAIRN_CHANNEL_SECRET``."""
    secret = given.read().strip() if given is not None else os.environ.get(SECRET_ENV, "")
    if not secret:
        raise click.UsageError(f"give the {what} in --secret-file or in {SECRET_ENV}")
    return secret


@click.group("notification-channels")
@connection_options
def notification_channels() -> None:
    """A workspace's notification channels: signed webhook, Slack or e-mail (workspace admins).

    Exit status: 0 done, 2 bad usage, 3 API problem; `test` exits 1 when the channel did not
    accept the test notice.
    """


@notification_channels.command("list")
@workspace_option
@limit_options
@output_options
@with_api
def list_channels(
    api: Api, workspace_id: str | None, limit: int, cursor: str | None, out: Output
) -> None:
    """The workspace's channels, with the status of their last delivery."""
    page = api.get(_path(_workspace(api, workspace_id)), limit=limit, cursor=cursor)
    out.page(page, COLUMNS, "notification channels")


@notification_channels.command("get")
@workspace_option
@click.argument("channel_id")
@output_options
@with_api
def get_channel(api: Api, workspace_id: str | None, channel_id: str, out: Output) -> None:
    """One channel (its secret never shows)."""
    out.record(api.get(_path(_workspace(api, workspace_id), channel_id)), FIELDS)


@notification_channels.command("add")
@workspace_option
@click.option("--name", required=True, help="the channel's name in the workspace")
@click.option(
    "--kind",
    type=click.Choice(["webhook", "slack", "email"]),
    required=True,
    help="webhook: a signed JSON POST; slack: an incoming webhook; email: over SMTP",
)
@click.option(
    "--event",
    "events",
    type=click.Choice(EVENTS),
    multiple=True,
    required=True,
    help="an event the channel is told of (repeat the option)",
)
@click.option("--url", help="webhook: the URL cairn POSTs to (a Slack URL is a secret: below)")
@click.option(
    "--secret-file",
    type=click.File("r"),
    help="webhook: the HMAC key; slack: the incoming webhook URL; email: the SMTP password"
    f" ('-': stdin) [default: env {SECRET_ENV}]",
)
@click.option("--to", "recipients", multiple=True, help="email: a recipient (repeat)")
@click.option("--sender", help="email: the From address")
@click.option("--smtp-host", help="email: the SMTP server")
@click.option(
    "--smtp-port",
    type=click.IntRange(1, 65535),
    default=587,
    show_default=True,
    help="email: the SMTP port",
)
@click.option("--no-starttls", is_flag=True, help="email: plain SMTP (no STARTTLS)")
@click.option("--username", help="email: the SMTP AUTH user (the password as the secret)")
@output_options
@with_api
def add_channel(
    api: Api,
    workspace_id: str | None,
    name: str,
    kind: str,
    events: tuple[str, ...],
    url: str | None,
    secret_file: IO[str] | None,
    recipients: tuple[str, ...],
    sender: str | None,
    smtp_host: str | None,
    smtp_port: int,
    no_starttls: bool,
    username: str | None,
    out: Output,
) -> None:
    """Add a channel; `cairn notification-channels test` then sends it a test notice."""
    body: dict[str, Any] = {"name": name, "kind": kind, "events": list(events)}
    if kind == "webhook":
        body.update(url=url, secret=_secret(secret_file, "HMAC key"))
    elif kind == "slack":
        body["url"] = _secret(secret_file, "Slack incoming webhook URL")
    else:
        body.update(
            recipients=list(recipients),
            sender=sender,
            smtp_host=smtp_host,
            smtp_port=smtp_port,
            starttls=not no_starttls,
        )
        if username:
            body.update(username=username, password=_secret(secret_file, "SMTP password"))
    out.record(api.post(_path(_workspace(api, workspace_id)), body), FIELDS)


@notification_channels.command("remove")
@workspace_option
@click.argument("channel_id")
@with_api
def remove_channel(api: Api, workspace_id: str | None, channel_id: str) -> None:
    """Remove a channel; notices still being retried to it are dropped."""
    api.request("DELETE", _path(_workspace(api, workspace_id), channel_id))
    note("notification channel removed")


@notification_channels.command("test")
@workspace_option
@click.argument("channel_id")
@output_options
@with_api
def test_channel(api: Api, workspace_id: str | None, channel_id: str, out: Output) -> None:
    """Send a test notice now; exit 1 with the channel's error when it was not accepted."""
    answer = api.post(_path(_workspace(api, workspace_id), channel_id) + "/test", {})
    out.record(answer["channel"], FIELDS)
    if not answer["delivered"]:
        raise click.ClickException(f"the channel did not accept the test: {answer['error']}")
    note("test notice delivered")
