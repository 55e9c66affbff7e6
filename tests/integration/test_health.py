"""Readiness names the dependency that is down."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.taskqueue.v1 import PollerInfo
from temporalio.testing import WorkflowEnvironment

from api.routes.health import WORKER_SEEN_SECONDS, unpolled
from core.search_attributes import SEARCH_ATTRIBUTE_KEYS
from core.settings import Settings
from devstack.postgres import PostgresServer
from devstack.temporal import cli_path
from tests.conftest import free_port
from tests.support.api import ApiClient, expect, running_app
from tests.support.workers import running_workers

pytestmark = pytest.mark.integration


@pytest.fixture
async def workers_polling(api: ApiClient, worker: None) -> None:
    """The session's workers poll both queues, so only the broken dependency is named."""
    await wait_ready(api)


async def test_ready_when_everything_answers(api: ApiClient, worker: None) -> None:
    assert (await expect(await api.get("/healthz"), 200)) == {"status": "ok"}
    body = await wait_ready(api)
    assert body["checks"] == {"database": "ok", "temporal": "ok", "workers": "ok"}


async def wait_ready(client: ApiClient, seconds: float = 30) -> dict[str, object]:
    """The workers' first polls reach Temporal a moment after they start."""
    deadline = time.monotonic() + seconds
    while True:
        response = await client.get("/readyz")
        if response.status_code == 200 or time.monotonic() > deadline:
            return await expect(response, 200)  # type: ignore[no-any-return]
        await asyncio.sleep(0.3)


async def test_workers_not_polling_are_named(settings: Settings) -> None:
    """A Temporal of its own, with no worker: not ready; once workers poll: ready."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=cli_path(),
        port=free_port(),
        search_attributes=SEARCH_ATTRIBUTE_KEYS,
        dev_server_log_level="error",
    )
    try:
        own = settings.model_copy(
            update={"temporal_address": env.client.service_client.config.target_host}
        )
        async with running_app(own) as client:
            problem = await expect(await client.get("/readyz"), 503)
            assert problem["failing"] == ["workers"]
            detail = problem["checks"]["workers"]
            for queue in ("cairn-control (workflow)", "cairn-control (activity)", "cairn-data"):
                assert queue in detail
            assert "cairn worker" in detail
            async with running_workers(own, env.client):
                await wait_ready(client)
    finally:
        await env.shutdown()


def _poller(seconds_ago: float, now: datetime) -> PollerInfo:
    seen = Timestamp()
    seen.FromDatetime(now - timedelta(seconds=seconds_ago))
    return PollerInfo(identity="1@host", last_access_time=seen)


def test_a_poller_seen_long_ago_does_not_count() -> None:
    """Temporal lists a stopped worker for five minutes; its last poll tells it apart."""
    now = datetime.now(UTC)
    polled = [
        ("cairn-control", "workflow", [_poller(5, now)]),
        ("cairn-control", "activity", [_poller(WORKER_SEEN_SECONDS + 30, now), _poller(55, now)]),
        ("cairn-data", "activity", [_poller(WORKER_SEEN_SECONDS + 30, now)]),
        ("cairn-other", "activity", []),
    ]
    assert unpolled(polled, now) == ["cairn-data (activity)", "cairn-other (activity)"]


async def test_stopped_temporal_is_named(settings: Settings) -> None:
    down = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    async with running_app(down) as client:
        problem = await expect(await client.get("/readyz"), 503)
        health = await expect(await client.get("/healthz"), 200)
    assert problem["failing"] == ["temporal"]
    assert "temporal" in problem["detail"] and health["status"] == "ok"


async def test_stopped_database_is_named(settings: Settings, workers_polling: None) -> None:
    down = settings.model_copy(
        update={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/cairn"}
    )
    async with running_app(down) as client:
        problem = await expect(await client.get("/readyz"), 503)
    assert problem["failing"] == ["database"]
    assert problem["type"] == "/problems/not-ready"


async def test_unmigrated_database_is_named(
    settings: Settings, database_server: PostgresServer, workers_polling: None
) -> None:
    database_server.create_database("cairn_test_unmigrated")
    try:
        empty = settings.model_copy(
            update={"database_url": database_server.url("cairn_test_unmigrated")}
        )
        async with running_app(empty) as client:
            problem = await expect(await client.get("/readyz"), 503)
        assert problem["failing"] == ["database"]
    finally:
        database_server.drop_database("cairn_test_unmigrated")
