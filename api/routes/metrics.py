"""Prometheus metrics derived from the database at scrape time.

The API holds no counters of its own: whichever API replica is scraped reports the same
numbers. Event histograms (duration, size) come from the worker's own endpoint.

The labels name every tenant's storages and applications, so a scrape needs a token: the
scrape token ``CAIRN_METRICS_TOKEN`` or a platform administrator's API token.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import distinct_on

from api.deps import SessionDep, SettingsDep, current_principal
from api.problems import forbidden, unauthorized
from core.states import RunStatus, StorageStatus
from core.units import GIB
from db.models import Application, BackupExecution, BackupRestore, BackupStorage, RestoreDrill

router = APIRouter(tags=["health"])


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


async def _families(request: Request) -> list[Metric]:
    backups = GaugeMetricFamily(
        "cairn_backups", "Backup executions by status and trigger", labels=["status", "trigger"]
    )
    restores = GaugeMetricFamily("cairn_restores", "Restores by status", labels=["status"])
    last = GaugeMetricFamily(
        "cairn_backup_last_success_timestamp_seconds",
        "When the newest successful backup of an application completed",
        labels=["workspace_id", "application_id"],
    )
    used = GaugeMetricFamily(
        "cairn_storage_used_bytes",
        "Bytes of cairn's repositories in a backup storage",
        labels=["workspace_id", "storage_id", "name"],
    )
    free = GaugeMetricFamily(
        "cairn_storage_filesystem_available_bytes",
        "Free bytes of the file system a backup storage lives on (shared with other data)",
        labels=["workspace_id", "storage_id", "name"],
    )
    capacity = GaugeMetricFamily(
        "cairn_storage_capacity_bytes",
        "Capacity granted to a backup storage",
        labels=["workspace_id", "storage_id", "name"],
    )
    up = GaugeMetricFamily(
        "cairn_storage_active",
        "1 when the storage is active, 0 otherwise",
        labels=["workspace_id", "storage_id", "name"],
    )
    drilled = GaugeMetricFamily(
        "cairn_drill_last_success_timestamp_seconds",
        "When the newest successful restore drill of an application finished",
        labels=["workspace_id", "application_id"],
    )
    recovery = GaugeMetricFamily(
        "cairn_drill_recovery_seconds",
        "Recovery time (restore start to verified copy) of an application's last successful drill",
        labels=["workspace_id", "application_id"],
    )
    async with request.app.state.sessions() as session:
        for status, trigger, count in await session.execute(
            select(BackupExecution.status, BackupExecution.trigger, func.count()).group_by(
                BackupExecution.status, BackupExecution.trigger
            )
        ):
            backups.add_metric([status, trigger], count)
        for status, count in await session.execute(
            select(BackupRestore.status, func.count()).group_by(BackupRestore.status)
        ):
            restores.add_metric([status], count)
        for workspace_id, app_id, completed in await session.execute(
            select(Application.workspace_id, Application.id, func.max(BackupExecution.completed_at))
            .join(BackupExecution, BackupExecution.application_id == Application.id)
            .where(BackupExecution.status == RunStatus.SUCCEEDED)
            .group_by(Application.workspace_id, Application.id)
        ):
            last.add_metric([str(workspace_id), str(app_id)], completed.timestamp())
        for storage in await session.scalars(select(BackupStorage)):
            labels = [str(storage.workspace_id), str(storage.id), storage.name]
            used.add_metric(labels, storage.used_bytes)
            if storage.available_bytes is not None:
                free.add_metric(labels, storage.available_bytes)
            capacity.add_metric(labels, storage.capacity_gb * GIB)
            up.add_metric(labels, 1 if storage.status == StorageStatus.ACTIVE else 0)
        for workspace_id, app_id, completed, seconds in await session.execute(
            select(
                Application.workspace_id,
                Application.id,
                RestoreDrill.completed_at,
                RestoreDrill.recovery_seconds,
            )
            .join(RestoreDrill, RestoreDrill.application_id == Application.id)
            .where(RestoreDrill.status == RunStatus.SUCCEEDED)
            .ext(distinct_on(Application.id))
            .order_by(Application.id, RestoreDrill.completed_at.desc())
        ):
            drilled.add_metric([str(workspace_id), str(app_id)], completed.timestamp())
            recovery.add_metric([str(workspace_id), str(app_id)], seconds or 0.0)
    return [backups, restores, last, used, free, capacity, up, drilled, recovery]


async def scraper(
    session: SessionDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """The scrape token (constant-time comparison) or a platform administrator's API token."""
    scheme, _, token = (authorization or "").partition(" ")
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if (
        scheme.lower() == "bearer"
        and expected
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    ):
        return
    if not authorization:
        raise unauthorized(
            "metrics name every tenant's storages: send 'Authorization: Bearer <token>' with the"
            " scrape token (CAIRN_METRICS_TOKEN) or a platform administrator's API token"
        )
    principal = await current_principal(session, authorization)
    if not principal.user.is_platform_admin:
        raise forbidden("metrics need the scrape token or a platform administrator's token")


@router.get("/metrics", response_class=Response, dependencies=[Depends(scraper)])
async def metrics(request: Request) -> Response:
    registry = CollectorRegistry()
    registry.register(_Snapshot(await _families(request)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
