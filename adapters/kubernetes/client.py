"""The connection to the cluster and the two things every caller needs: errors and waiting.

The official ``kubernetes`` client's API classes are untyped; they are exposed as ``Any``
here, and manifests are sent as plain dicts (the client turns them into its models).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Final, TypeVar

from kubernetes import client, config
from kubernetes.client import ApiException
from kubernetes.config import ConfigException

from adapters.platform import PlatformError

T = TypeVar("T")
# The first pause of wait_for; each next one is twice as long, up to its interval.
FIRST_POLL_SECONDS: Final = 0.05

# Status codes worth another try: throttling, the API server's own trouble, a conflict.
_RETRYABLE = {409, 429, 500, 502, 503, 504}


@dataclass
class Kube:
    """One API client and the API groups cairn uses."""

    api: client.ApiClient

    @cached_property
    def core(self) -> Any:
        return client.CoreV1Api(self.api)

    @cached_property
    def batch(self) -> Any:
        return client.BatchV1Api(self.api)

    @cached_property
    def apps(self) -> Any:
        return client.AppsV1Api(self.api)

    @cached_property
    def custom(self) -> Any:
        return client.CustomObjectsApi(self.api)


def connect(kubeconfig: Path | None, context: str | None) -> Kube:
    """The cluster from ``kubeconfig`` (and ``context``), else the pod's service account."""
    try:
        if kubeconfig is not None:
            loaded: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig), context=context
            )
            return Kube(loaded)
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return Kube(client.ApiClient(configuration))
    except (ConfigException, OSError) as exc:
        raise PlatformError(
            f"cannot reach the Kubernetes cluster: {exc} (set CAIRN_KUBECONFIG, or run the"
            " worker in the cluster)",
            retryable=False,
        ) from None


def status_message(exc: ApiException) -> str:
    """The API server's own sentence for a refusal (its Status ``message``)."""
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason or exc.status)


def failure(exc: ApiException, doing: str) -> PlatformError:
    return PlatformError(
        f"{doing}: the Kubernetes API answered {exc.status}: {status_message(exc)}",
        retryable=exc.status in _RETRYABLE or exc.status is None,
    )


def is_missing(exc: ApiException) -> bool:
    return bool(exc.status == 404)


def create_or_keep(create: Callable[[], object], doing: str) -> bool:
    """Creates an object unless one of that name exists (a retry finds its own); True if made."""
    try:
        create()
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise failure(exc, doing) from None
    return True


def read_or_none(kube: Kube, read: Callable[[], object], doing: str) -> dict[str, Any] | None:
    """An object as plain JSON, or None when it does not exist."""
    try:
        found = read()
    except ApiException as exc:
        if is_missing(exc):
            return None
        raise failure(exc, doing) from None
    serialized: dict[str, Any] = kube.api.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
    return serialized


def delete_quietly(delete: Callable[[], object], doing: str) -> None:
    """Deletes an object; one already gone is fine (release is repeated)."""
    try:
        delete()
    except ApiException as exc:
        if not is_missing(exc):
            raise failure(exc, doing) from None


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    expired: Callable[[], str],
    tick: Callable[[], None] | None = None,
    interval: float = 2.0,
) -> T:
    """Polls ``probe`` until it returns a value; ``tick`` runs between polls (heartbeats).

    The pause between polls starts short and doubles up to ``interval``: what is ready in a
    moment (a pod ending, a small snapshot) is seen at once, what takes long costs the API
    server one request per ``interval``. On timeout, ``expired`` says what was waited for
    and what was last seen.
    """
    deadline = time.monotonic() + timeout
    pause = FIRST_POLL_SECONDS
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise PlatformError(expired(), retryable=False)
        if tick is not None:
            tick()
        time.sleep(min(pause, interval, max(0.0, deadline - time.monotonic()) + 0.01))
        pause *= 2
