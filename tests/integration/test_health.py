"""Readiness names the dependency that is down."""

from __future__ import annotations

import pytest

from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.conftest import free_port
from tests.support.api import ApiClient, expect, running_app

pytestmark = pytest.mark.integration


async def test_ready_when_everything_answers(api: ApiClient) -> None:
    assert (await expect(await api.get("/healthz"), 200)) == {"status": "ok"}
    body = await expect(await api.get("/readyz"), 200)
    assert body["checks"] == {"database": "ok", "temporal": "ok"}


async def test_stopped_temporal_is_named(settings: Settings) -> None:
    down = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    async with running_app(down) as client:
        problem = await expect(await client.get("/readyz"), 503)
        health = await expect(await client.get("/healthz"), 200)
    assert problem["failing"] == ["temporal"]
    assert "temporal" in problem["detail"] and health["status"] == "ok"


async def test_stopped_database_is_named(settings: Settings) -> None:
    down = settings.model_copy(
        update={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/cairn"}
    )
    async with running_app(down) as client:
        problem = await expect(await client.get("/readyz"), 503)
    assert problem["failing"] == ["database"]
    assert problem["type"] == "/problems/not-ready"


async def test_unmigrated_database_is_named(
    settings: Settings, database_server: PostgresServer
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
