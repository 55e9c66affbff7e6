"""Prometheus metrics derived from the database at scrape time.

The API holds no counters of its own: whichever API replica is scraped reports the same
numbers. Event histograms (duration, size) come from the worker's own endpoint.

The labels name every tenant's storages and applications, so a scrape needs a token: the
scrape token ``CAIRN_METRICS_TOKEN`` or a platform administrator's API token.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
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
from api.routes.health import CHECK_TIMEOUT, WORKER_SEEN_SECONDS, check_temporal, pollers, unpolled
from core.states import FINISHED, LIVE, CopyStatus, RunStatus, StorageStatus
from core.units import GIB
from db.models import (
    Application,
    BackupCopy,
    BackupExecution,
    BackupRestore,
    BackupStorage,
    RestoreDrill,
    Workspace,
)
from services import offsite_targets, overdue

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


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


def _gauge(name: str, documentation: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


async def _alerting_families(request: Request) -> list[Metric]:
    """What the alert rules and the dashboard ask (deploy/prometheus/, docs/alerts.md): who is
    overdue, whose newest run failed, runs that stay live, quota, and the names to show."""
    app_ids = ("workspace_id", "application_id")
    info = _gauge(
        "cairn_application_info",
        "1 per application: its and its workspace's names, for joins in alerts and dashboards",
        "workspace_id",
        "application_id",
        "workspace",
        "application",
    )
    overdue_backup = _gauge(
        "cairn_backup_overdue",
        "1 when the application's enabled policy owed a backup that has not succeeded within"
        " its grace (docs/alerts.md)",
        *app_ids,
    )
    overdue_drill = _gauge(
        "cairn_drill_overdue",
        "1 when the enabled drill policy owed a drill that has not succeeded within its grace",
        *app_ids,
    )
    overdue_count = _gauge(
        "cairn_applications_overdue",
        "Applications of the workspace whose scheduled backup is overdue",
        "workspace_id",
    )
    failed_backup = _gauge(
        "cairn_backup_last_run_failed",
        "1 when the application's newest finished backup failed",
        *app_ids,
    )
    failed_drill = _gauge(
        "cairn_drill_last_run_failed",
        "1 when the application's newest finished restore drill failed",
        *app_ids,
    )
    live = _gauge("cairn_runs_live", "Backups, restores and drills pending or running", "kind")
    oldest = _gauge(
        "cairn_run_oldest_live_seconds",
        "Age of the oldest pending or running run of each kind (0: none)",
        "kind",
    )
    quota = _gauge(
        "cairn_workspace_quota_bytes", "The workspace's backup quota", "workspace_id", "workspace"
    )
    filesystem = _gauge(
        "cairn_storage_filesystem_size_bytes",
        "Size of the file system a backup storage lives on (shared with other data)",
        "workspace_id",
        "storage_id",
        "name",
    )
    now = datetime.now(UTC)
    async with request.app.state.sessions() as session:
        for ws_id, ws_name, app_id, app_name in await session.execute(
            select(Workspace.id, Workspace.name, Application.id, Application.name).join(
                Application, Application.workspace_id == Workspace.id
            )
        ):
            info.add_metric([str(ws_id), str(app_id), ws_name, app_name], 1)
        counted: dict[str, int] = {}
        for standing in (await overdue.standings(session, request.app.state.settings)).values():
            labels = [str(standing.workspace_id), str(standing.application_id)]
            if standing.backup is not None:
                overdue_backup.add_metric(labels, int(standing.overdue))
                counted[labels[0]] = counted.get(labels[0], 0) + int(standing.overdue)
            if standing.drill is not None:
                overdue_drill.add_metric(labels, int(standing.drill_overdue))
        for ws, count in counted.items():
            overdue_count.add_metric([ws], count)
        for model, family in ((BackupExecution, failed_backup), (RestoreDrill, failed_drill)):
            for ws_id, app_id, status in await session.execute(
                select(Application.workspace_id, Application.id, model.status)
                .join(model, model.application_id == Application.id)
                .where(model.status.in_(FINISHED))
                .ext(distinct_on(Application.id))
                .order_by(Application.id, model.completed_at.desc().nulls_last())
            ):
                family.add_metric([str(ws_id), str(app_id)], int(status == RunStatus.FAILED))
        for kind, run in (
            ("backup", BackupExecution),
            ("restore", BackupRestore),
            ("drill", RestoreDrill),
        ):
            count, first = (
                await session.execute(
                    select(
                        func.count(), func.min(func.coalesce(run.started_at, run.created_at))
                    ).where(run.status.in_(LIVE))
                )
            ).one()
            live.add_metric([kind], count)
            oldest.add_metric([kind], (now - first).total_seconds() if first else 0.0)
        for ws_id, ws_name, quota_gb in await session.execute(
            select(Workspace.id, Workspace.name, Workspace.backup_quota_gb)
        ):
            quota.add_metric([str(ws_id), ws_name], quota_gb * GIB)
        for storage in await session.scalars(
            select(BackupStorage).where(BackupStorage.filesystem_total_bytes.is_not(None))
        ):
            labels = [str(storage.workspace_id), str(storage.id), storage.name]
            filesystem.add_metric(labels, storage.filesystem_total_bytes or 0)
    return [
        info,
        overdue_backup,
        overdue_drill,
        overdue_count,
        failed_backup,
        failed_drill,
        live,
        oldest,
        quota,
        filesystem,
        *await _temporal_families(request),
    ]


async def _temporal_families(request: Request) -> list[Metric]:
    """Whether the API reaches Temporal and whether a worker polls each task queue, asked as
    /readyz asks (a scrape waits at most a few seconds for an unreachable Temporal)."""
    up = _gauge("cairn_temporal_up", "1 when the API reached Temporal's namespace at this scrape")
    polled = _gauge(
        "cairn_task_queue_polled",
        f"1 when a worker polled the task queue within the last {WORKER_SEEN_SECONDS}s",
        "task_queue",
        "type",
    )
    try:
        reachable = await asyncio.wait_for(check_temporal(request), CHECK_TIMEOUT + 1) is None
    except TimeoutError:
        reachable = False
    up.add_metric([], int(reachable))
    if not reachable:
        return [up, polled]
    try:
        client = await request.app.state.temporal.get()
        described = await asyncio.wait_for(pollers(client), CHECK_TIMEOUT + 1)
    except Exception as exc:  # the up gauge says Temporal answered; the queues stay unknown
        log.warning("task queues not described for /metrics: %s", exc)
        return [up, polled]
    now = datetime.now(UTC)
    for queue, kind, seen in described:
        polled.add_metric([queue, kind], 0 if unpolled([(queue, kind, seen)], now) else 1)
    return [up, polled]


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


async def _offsite_families(request: Request) -> list[Metric]:
    """Offsite copies (docs/offsite.md): each application's lag at its policy's target, and
    the copies by status (a failed copy stays failed until a later backup's copy lands)."""
    labels = ("workspace_id", "application_id", "target_id")
    lag = _gauge(
        "cairn_offsite_lag_seconds",
        "Time since the oldest backup newer than the newest copied one completed (0: the newest"
        " backup is copied)",
        *labels,
    )
    last = _gauge(
        "cairn_offsite_last_copy_timestamp_seconds",
        "When the copy of the application's newest copied backup finished",
        *labels,
    )
    behind = _gauge(
        "cairn_offsite_copies_behind",
        "Backups newer than the newest copied one, by their copy's status (pending, failed)",
        *labels,
        "status",
    )
    late = _gauge(
        "cairn_offsite_copy_overdue",
        "1 when the oldest backup waiting for its offsite copy is past its allowance (the backup"
        " schedule's grace, core/offsite_overdue.py)",
        *labels,
    )
    copies = _gauge("cairn_offsite_copies", "Backup copies at offsite targets by status", "status")
    now = datetime.now(UTC)
    async with request.app.state.sessions() as session:
        lags = await offsite_targets.offsite_lags(session, request.app.state.settings)
        workspaces = {
            app_id: workspace_id
            for app_id, workspace_id in await session.execute(
                select(Application.id, Application.workspace_id).where(
                    Application.id.in_(list(lags))
                )
            )
        }
        for status, count in await session.execute(
            select(BackupCopy.status, func.count()).group_by(BackupCopy.status)
        ):
            copies.add_metric([status], count)
    for app_id, each in lags.items():
        values = [str(workspaces.get(app_id, "")), str(app_id), str(each.target_id)]
        lag.add_metric(values, each.lag_seconds(now))
        late.add_metric(values, 1 if each.overdue_since(now) else 0)
        if each.last_copied_at is not None:
            last.add_metric(values, each.last_copied_at.timestamp())
        behind.add_metric([*values, CopyStatus.PENDING], each.copies_pending)
        behind.add_metric([*values, CopyStatus.FAILED], each.copies_failed)
    return [lag, last, behind, late, copies]


@router.get("/metrics", response_class=Response, dependencies=[Depends(scraper)])
async def metrics(request: Request) -> Response:
    registry = CollectorRegistry()
    families = await _families(request) + await _alerting_families(request)
    registry.register(_Snapshot(families + await _offsite_families(request)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
