"""Runs the workers of both task queues until SIGTERM/SIGINT, then drains them."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from contracts.task_queues import CONTROL_TASK_QUEUE, DATA_TASK_QUEUE
from core.settings import Settings
from core.temporal import connect
from db.session import make_engine, make_sessionmaker
from worker import registry
from worker.metrics_endpoint import MetricsTokenMissing, serve_metrics
from worker.preflight import PreflightError, preflight
from worker.system_schedules import ensure_system_schedules

log = logging.getLogger("cairn.worker")
HEARTBEAT_THROTTLE_SECONDS = 2


def build_workers(
    client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> list[Worker]:
    """Every workflow and activity of the project, on the queue where it belongs."""
    activities = registry.activities(client, settings, sessions)
    grace = timedelta(seconds=settings.worker_shutdown_grace_seconds)
    # live progress in the API: send heartbeats every few seconds, not every 24 s
    throttle = timedelta(seconds=HEARTBEAT_THROTTLE_SECONDS)
    return [
        Worker(
            client,
            task_queue=CONTROL_TASK_QUEUE,
            max_heartbeat_throttle_interval=throttle,
            workflows=registry.WORKFLOWS,
            activities=activities.control,
            graceful_shutdown_timeout=grace,
        ),
        Worker(
            client,
            task_queue=DATA_TASK_QUEUE,
            activities=activities.data,
            max_concurrent_activities=settings.worker_data_concurrency,
            max_heartbeat_throttle_interval=throttle,
            graceful_shutdown_timeout=grace,
        ),
    ]


async def check_programs(settings: Settings) -> None:
    """Refuses to serve (``PreflightError``) unless restic and the PostgreSQL client run."""
    versions = await asyncio.to_thread(preflight, settings.restic_bin, settings.pg_bin_dir)
    for name, version in versions.items():
        log.info("preflight: %s: %s", name, version)


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    if settings.worker_metrics_port:
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        serve_metrics(settings.worker_metrics_host, settings.worker_metrics_port, token)
        log.info(
            "worker metrics on %s:%s/metrics (Bearer CAIRN_METRICS_TOKEN)",
            settings.worker_metrics_host,
            settings.worker_metrics_port,
        )
    await check_programs(settings)
    client = await connect(settings, wait_seconds=30)
    engine = make_engine(settings.database_url)
    workers = build_workers(client, settings, make_sessionmaker(engine))
    grace = settings.worker_shutdown_grace_seconds
    await ensure_system_schedules(client, settings)
    log.info("worker serving %s and %s", CONTROL_TASK_QUEUE, DATA_TASK_QUEUE)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        log.info("worker stopping: running activities get %ss to finish", grace)
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        waiter.cancel()
        await engine.dispose()
    for task in tasks:
        if task.done() and task.exception():
            raise task.exception()  # type: ignore[misc]


def main(settings: Settings) -> None:
    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    try:
        asyncio.run(serve())
    except (PreflightError, MetricsTokenMissing) as exc:
        # one line, no traceback: the message says what to install or which setting to fix
        raise SystemExit(f"cairn worker cannot start: {exc}") from None
