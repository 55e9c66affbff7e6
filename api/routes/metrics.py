"""Prometheus metrics derived from the database at scrape time.

The API holds no counters of its own: whichever API replica is scraped reports the same
numbers. Event histograms (duration, size) come from the worker's own endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from db.models import Application, BackupExecution, BackupPolicy, BackupStorage

router = APIRouter(tags=["health"])
GIB = 1024**3


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


async def _families(request: Request) -> list[Metric]:
    backups = GaugeMetricFamily(
        "cairn_backups", "Backup executions by status and trigger", labels=["status", "trigger"]
    )
    last = GaugeMetricFamily(
        "cairn_backup_last_success_timestamp_seconds",
        "When the newest successful backup of an application completed",
        labels=["workspace_id", "application_id"],
    )
    used = GaugeMetricFamily(
        "cairn_storage_used_bytes", "Last usage reading of a backup storage",
        labels=["workspace_id", "storage_id", "name"],
    )  # fmt: skip
    capacity = GaugeMetricFamily(
        "cairn_storage_capacity_bytes", "Capacity granted to a backup storage",
        labels=["workspace_id", "storage_id", "name"],
    )  # fmt: skip
    up = GaugeMetricFamily(
        "cairn_storage_active", "1 when the storage is active, 0 otherwise",
        labels=["workspace_id", "storage_id", "name"],
    )  # fmt: skip
    async with request.app.state.sessions() as session:
        for status, trigger, count in await session.execute(
            select(BackupExecution.status, BackupExecution.trigger, func.count()).group_by(
                BackupExecution.status, BackupExecution.trigger
            )
        ):
            backups.add_metric([status, trigger], count)
        for workspace_id, app_id, completed in await session.execute(
            select(Application.workspace_id, Application.id, func.max(BackupExecution.completed_at))
            .join(BackupPolicy, BackupPolicy.application_id == Application.id)
            .join(BackupExecution, BackupExecution.policy_id == BackupPolicy.id)
            .where(BackupExecution.status == "succeeded")
            .group_by(Application.workspace_id, Application.id)
        ):
            last.add_metric([str(workspace_id), str(app_id)], completed.timestamp())
        for storage in await session.scalars(select(BackupStorage)):
            labels = [str(storage.workspace_id), str(storage.id), storage.name]
            used.add_metric(labels, storage.used_bytes)
            capacity.add_metric(labels, storage.capacity_gb * GIB)
            up.add_metric(labels, 1 if storage.status == "active" else 0)
    return [backups, last, used, capacity, up]


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry = CollectorRegistry()
    registry.register(_Snapshot(await _families(request)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
