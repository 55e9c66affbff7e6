"""Liveness and readiness; readiness names the dependency that is down."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.client import Client

from api.problems import problem_response
from contracts.task_queues import CONTROL_TASK_QUEUE, DATA_TASK_QUEUE
from db.migrate import head_revisions

router = APIRouter(tags=["health"])
CHECK_TIMEOUT = 3.0

# A worker's long poll lasts up to a minute, so an idle, healthy worker can show a last
# poll about 60 s old; 90 s leaves room for that and a little clock skew.
WORKER_SEEN_SECONDS: Final = 90
# What the workers must poll: workflows and control activities on cairn-control, data
# activities on cairn-data.
POLLED_QUEUES: Final = (
    (CONTROL_TASK_QUEUE, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, "workflow"),
    (CONTROL_TASK_QUEUE, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, "activity"),
    (DATA_TASK_QUEUE, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, "activity"),
)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check_database(request: Request) -> str | None:
    try:
        async with request.app.state.engine.connect() as conn:
            versions = set(await conn.scalars(text("SELECT version_num FROM alembic_version")))
    except Exception as exc:
        return f"cannot query the database ({type(exc).__name__})"
    heads = head_revisions()
    if versions != heads:
        found, expected = ", ".join(sorted(versions)), ", ".join(sorted(heads))
        return f"schema is at revision {found}, expected {expected}: run 'cairn migrate'"
    return None


async def check_temporal(request: Request) -> str | None:
    namespace = request.app.state.settings.temporal_namespace
    try:
        client = await request.app.state.temporal.get()
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=CHECK_TIMEOUT)
        )
    except Exception as exc:
        return f"namespace {namespace!r} not reachable ({type(exc).__name__})"
    return None


def unpolled(polled: Iterable[tuple[str, str, Sequence[PollerInfo]]], now: datetime) -> list[str]:
    """``queue (kind)`` of every queue whose pollers were all last seen too long ago.

    A worker that stopped stays in Temporal's poller list for five minutes; only a recent
    ``last_access_time`` says someone is still polling. A worker whose every slot is busy
    stops polling too, so a long stretch of full load also shows here.
    """
    oldest = now - timedelta(seconds=WORKER_SEEN_SECONDS)
    return [
        f"{queue} ({kind})"
        for queue, kind, pollers in polled
        if not any(p.last_access_time.ToDatetime(tzinfo=UTC) >= oldest for p in pollers)
    ]


async def pollers(client: Client) -> list[tuple[str, str, list[PollerInfo]]]:
    """``(queue, kind, pollers)`` of each queue the workers must poll (also for /metrics)."""
    responses = await asyncio.gather(
        *(
            client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=queue_type,
                ),
                timeout=timedelta(seconds=CHECK_TIMEOUT),
            )
            for queue, queue_type, _ in POLLED_QUEUES
        )
    )
    return [
        (queue, kind, list(response.pollers))
        for (queue, _, kind), response in zip(POLLED_QUEUES, responses, strict=True)
    ]


async def _check_workers(client: Client) -> str | None:
    missing = unpolled(await pollers(client), datetime.now(UTC))
    if missing:
        return (
            f"no worker polled {', '.join(missing)} in the last {WORKER_SEEN_SECONDS}s;"
            " start 'cairn worker' (or it is stopped, or every slot is busy)"
        )
    return None


async def _check_temporal_and_workers(request: Request) -> tuple[str | None, str | None]:
    """Temporal first; the workers are only asked about when Temporal answers."""
    temporal = await check_temporal(request)
    if temporal is not None:
        return temporal, None
    try:
        client = await request.app.state.temporal.get()
        return None, await _check_workers(client)
    except Exception as exc:
        return None, f"cannot describe the task queues ({type(exc).__name__})"


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> JSONResponse | dict[str, Any]:
    database, temporal_and_workers = await asyncio.gather(
        asyncio.wait_for(_check_database(request), CHECK_TIMEOUT * 2),
        asyncio.wait_for(_check_temporal_and_workers(request), CHECK_TIMEOUT * 3),
        return_exceptions=True,
    )
    temporal, workers = (
        temporal_and_workers if isinstance(temporal_and_workers, tuple) else ("timed out", None)
    )
    failures = {
        name: (result if isinstance(result, str) else "timed out")
        for name, result in (("database", database), ("temporal", temporal), ("workers", workers))
        if result is not None
    }
    if failures:
        detail = "; ".join(f"{name}: {why}" for name, why in failures.items())
        return problem_response(
            request,
            503,
            "not-ready",
            "Not ready",
            detail,
            failing=sorted(failures),
            checks=failures,
        )
    return {"status": "ready", "checks": {"database": "ok", "temporal": "ok", "workers": "ok"}}
