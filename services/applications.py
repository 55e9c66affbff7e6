"""Registering an application: what is checked against the outside world before it is
stored. A kubernetes application's namespace must exist in its cluster, asked through the
kubernetes adapter (the API imports no adapter)."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid

import urllib3
from kubernetes.client import ApiException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.kubernetes.client import connect
from adapters.platform import PlatformError
from core import boundaries
from core.settings import Settings
from db.models import Application
from services.errors import Invalid

log = logging.getLogger(__name__)
# How long registration waits for the cluster to say whether a namespace exists.
NAMESPACE_CHECK_SECONDS = 5


def namespace_exists(settings: Settings, context: str | None, namespace: str) -> bool | None:
    """Whether the cluster (``context``, else the installation's) has the namespace; None
    when the cluster cannot be asked."""
    try:
        kube = connect(settings.kubeconfig, context or settings.kube_context)
    except PlatformError as exc:
        log.warning("namespace of a new application not checked: %s", exc)
        return None
    try:
        kube.core.read_namespace(namespace, _request_timeout=NAMESPACE_CHECK_SECONDS)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        log.warning("namespace of a new application not checked: %s", exc.reason)
        return None
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # unreachable: not checked
        log.warning("namespace of a new application not checked: %s", exc)
        return None
    finally:
        kube.api.close()  # type: ignore[no-untyped-call]


async def check_namespace(settings: Settings, context: str | None, namespace: str) -> None:
    """An unknown namespace is refused now (Invalid on ``platform.namespace``), when cairn can
    reach the cluster (a kubeconfig, or cairn running in the cluster); otherwise the first
    backup finds out."""
    if settings.kubeconfig is None and "KUBERNETES_SERVICE_HOST" not in os.environ:
        return
    if await asyncio.to_thread(namespace_exists, settings, context, namespace) is False:
        raise Invalid(
            [
                {
                    "loc": ("platform", "namespace"),
                    "msg": f"namespace {namespace} does not exist in the cluster",
                    "type": "unknown_namespace",
                }
            ]
        )


async def volumes_of_others(session: AsyncSession, application_id: uuid.UUID | None) -> list[str]:
    """The volume folders of every other local application, in every workspace."""
    query = select(Application.platform_settings).where(Application.platform_kind == "local")
    if application_id is not None:
        query = query.where(Application.id != application_id)
    rows = await session.scalars(query)
    return [str(path) for row in rows for path in (row.get("volumes") or {}).values()]


async def check_volumes_apart(
    session: AsyncSession, application: Application, names: list[str]
) -> None:
    """A local application's registered volumes ``names`` are still apart from every other
    volume, its own included (``BoundaryError``): asked again right before a restore writes,
    since a folder may have become a link or a mount since registration."""
    if application.platform_kind != "local":
        return
    folders = {k: str(v) for k, v in (application.platform_settings.get("volumes") or {}).items()}
    others = await volumes_of_others(session, application.id)
    for name in names:
        if name in folders:
            siblings = [path for other, path in folders.items() if other != name]
            boundaries.check_volumes_apart(folders[name], [*others, *siblings], f"volumes.{name}")
