"""The operator CLI's road to the API: where it is, whose token, and errors as one line.

The URL and token come from ``--api-url``/``--token`` (or ``CAIRN_API_URL``/``CAIRN_TOKEN``),
else from the files ``cairn dev`` writes in its data folder (``CAIRN_DATA_DIR``, default
``.cairn``): ``cairn.env`` holds ``CAIRN_API_URL`` (read with ``cli.operator``'s reader) and
``admin-token`` the platform admin's token. Exit codes are the contract scripts rely on
(docs/cli.md).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from enum import IntEnum
from typing import IO, Any, TypeVar

import click
import httpx

from cli.operator import env_file, read_env_file

F = TypeVar("F", bound=Callable[..., Any])


class Exit(IntEnum):
    """What a command's exit status means."""

    OK = 0
    FAILED = 1  # the backup, restore or storage ended in failure
    CANCELLED = 2  # the run was cancelled; click's usage errors and a refused confirmation too
    API = 3  # the API refused the request, could not be reached, or no URL/token is known
    INTERRUPTED = 130  # Ctrl-C while following a run (the run goes on)


class CliError(click.ClickException):
    """An expected error: printed as one ``error: …`` line on stderr, never a traceback."""

    exit_code = Exit.API

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class NotConfirmed(CliError):
    """Destroying data was not confirmed; nothing was changed."""

    exit_code = Exit.CANCELLED


class Interrupted(CliError):
    """Ctrl-C while following a run; the run itself goes on."""

    exit_code = Exit.INTERRUPTED


class ApiError(CliError):
    """The API answered with a problem (RFC 9457); ``status`` tells a 404 from an outage."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def problem_error(response: httpx.Response) -> ApiError:
    """``<title>: <detail>`` from a problem+json answer, the status and text otherwise."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "title" in body:
        detail = body.get("detail")
        return ApiError(
            response.status_code, f"{body['title']}: {detail}" if detail else body["title"]
        )
    text = response.text.strip()[:300] or response.reason_phrase
    return ApiError(response.status_code, f"HTTP {response.status_code}: {text}")


def resolve(api_url: str | None, token: str | None) -> tuple[str, str]:
    """The API URL and token to use, or an error naming every place that was looked at."""
    settings_file = env_file()
    token_file = settings_file.with_name("admin-token")
    if not api_url and settings_file.is_file():
        api_url = read_env_file(settings_file).get("CAIRN_API_URL")
    if not token and token_file.is_file():
        token = token_file.read_text().strip()
    if not api_url:
        raise CliError(
            f"no API URL: pass --api-url, set CAIRN_API_URL, or start 'cairn dev' (it writes"
            f" CAIRN_API_URL into {settings_file})"
        )
    if not token:
        raise CliError(
            f"no API token: pass --token, set CAIRN_TOKEN, or start 'cairn dev' (it writes the"
            f" platform admin's token into {token_file})"
        )
    return api_url.rstrip("/"), token


# Answers that mean "try again shortly" while following a run: the API restarting, the
# metadata database or Temporal briefly away.
TRANSIENT_STATUSES = (502, 503, 504)


class Api:
    """A thin synchronous client of ``/api/v1``; errors become :class:`CliError`."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.client = httpx.Client(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.client.request(method, path, json=body, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the API at {self.url}: {exc}") from None
        if response.is_error:
            raise problem_error(response)
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body=body)

    def poll(self, path: str, on_wait: Callable[[str], None], patience: float = 120.0) -> Any:
        """GET for a follower: outages of the API (connection, 502-504) are waited out.

        A run goes on while the API restarts; giving up at once would leave a script
        without the outcome. Other errors end the wait at once.
        """
        deadline = time.monotonic() + patience
        while True:
            try:
                return self.get(path)
            except ApiError as exc:
                if exc.status not in TRANSIENT_STATUSES or time.monotonic() > deadline:
                    raise
                on_wait(exc.message)
            except CliError as exc:
                if time.monotonic() > deadline:
                    raise
                on_wait(exc.message)
            time.sleep(2.0)


class Session:
    """What a command group was told; the client is made on first use, so ``--help`` and
    usage errors need no URL or token."""

    def __init__(self, api_url: str | None, token: str | None) -> None:
        self.api_url, self.token = api_url, token

    @functools.cached_property
    def api(self) -> Api:
        return Api(*resolve(self.api_url, self.token))


def connection_options(function: F) -> F:
    """``--api-url`` and ``--token`` on a group; they become the group's :class:`Session`."""

    @click.option(
        "--api-url",
        envvar="CAIRN_API_URL",
        metavar="URL",
        help="base URL of cairn's API, e.g. http://127.0.0.1:8000 [env CAIRN_API_URL;"
        " default: the URL 'cairn dev' wrote in .cairn/cairn.env]",
    )
    @click.option(
        "--token",
        envvar="CAIRN_TOKEN",
        metavar="TOKEN",
        help="API token [env CAIRN_TOKEN; default: the platform admin token 'cairn dev'"
        " wrote in .cairn/admin-token]",
    )
    @functools.wraps(function)
    def wrapper(api_url: str | None, token: str | None, **kwargs: Any) -> Any:
        click.get_current_context().obj = Session(api_url, token)
        return function(**kwargs)

    return wrapper  # type: ignore[return-value]


def with_api(command: F) -> F:
    """Passes the group's :class:`Api` as the command's first argument."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        session = click.get_current_context().find_object(Session)
        assert session is not None, "a command of a group without connection_options"
        return command(session.api, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


app_option = click.option(
    "--app",
    "app_id",
    envvar="CAIRN_APP",
    required=True,
    metavar="APP_ID",
    help="the application's id [env CAIRN_APP]",
)
