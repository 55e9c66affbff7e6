"""Point-in-time recovery through the API (docs/pitr.md), on a PostgreSQL server of the test's
own: continuous archiving turned on and off in the policy.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from adapters.pg_archive import stream
from core.settings import Settings
from db.session import make_engine, make_sessionmaker
from schedules.reconcile import reconcile_all
from tests.conftest import free_port
from tests.support import pg_instance
from tests.support.api import ApiClient, World, expect, new_workspace, running_app, wait_for
from tests.support.database import snapshot

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

DB = "shop"


@pytest.fixture(scope="module")
def instance() -> Iterator[pg_instance.Instance]:
    with pg_instance.running() as server:
        with server.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {DB}")
        with server.connect(DB) as conn:
            conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, at timestamptz NOT NULL)")
        yield server


class App:
    def __init__(self, ws: str, app: str, storage: str) -> None:
        self.ws, self.id, self.storage = ws, app, storage
        self.policy = f"/api/v1/applications/{app}/backup-policy"


async def register(api: ApiClient, world: World, platform: dict[str, Any]) -> App:
    """A workspace with an active storage and an application on ``platform``."""
    ws = await new_workspace(api, world, members=("member", "owner"))
    admin = world.auth("ws_admin")
    accepted = await expect(
        await api.post(
            f"/api/v1/workspaces/{ws}/backup-storages",
            json={"name": "main", "type": "local", "capacity_gb": 10},
            headers=admin,
        ),
        202,
    )
    await wait_for(
        api,
        f"/api/v1/workspaces/{ws}/backup-storages/{accepted['id']}",
        admin,
        lambda s: s["status"] == "active",
    )
    app = await expect(
        await api.post(
            f"/api/v1/workspaces/{ws}/applications",
            json={
                "name": f"app-{uuid.uuid4().hex[:6]}",
                "owner_id": world.users["owner"],
                "platform": platform,
            },
            headers=world.auth("platform_admin"),
        ),
        201,
    )
    return App(ws, str(app["id"]), str(accepted["id"]))


def on_instance(instance: pg_instance.Instance) -> dict[str, Any]:
    target = instance.target(DB)
    url = f"postgresql://{target.user}:{target.password}@{target.host}:{target.port}/{DB}"
    return {"kind": "local", "database_url": url, "volumes": {}}


def policy(app: App, **fields: Any) -> dict[str, Any]:
    return {"storage_id": app.storage, "schedule": "0 3 * * *", **fields}


async def archiver_status(client: Client, app: App) -> WorkflowExecutionStatus | None:
    described = await client.get_workflow_handle(f"archiver-{app.id}").describe()
    return described.status


async def until_closed(client: Client, app: App) -> WorkflowExecutionStatus | None:
    deadline = time.monotonic() + 120
    while (status := await archiver_status(client, app)) == WorkflowExecutionStatus.RUNNING:
        assert time.monotonic() < deadline, "the archiver never stopped"
        await asyncio.sleep(0.5)
    return status


def slot_exists(instance: pg_instance.Instance, app: App) -> bool:
    with instance.connect(DB) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
            (stream.slot_name(app.id),),
        ).fetchone()
        return row is not None


async def test_archiving_on_starts_the_archiver_off_and_delete_cancel_it(
    api: ApiClient,
    world: World,
    settings: Settings,
    temporal_client: Client,
    instance: pg_instance.Instance,
) -> None:
    app = await register(api, world, on_instance(instance))
    owner = world.auth("owner")
    body = policy(app, continuous_archiving=True, archive_window_days=3)
    created = await expect(await api.post(app.policy, json=body, headers=owner), 201)
    assert (created["continuous_archiving"], created["archive_window_days"]) == (True, 3)
    handle = temporal_client.get_workflow_handle(f"archiver-{app.id}")
    first = (await handle.describe()).run_id
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    # saved again with archiving on: the running archiver is kept
    await expect(await api.post(app.policy, json=body, headers=owner), 200)
    assert (await handle.describe()).run_id == first

    off = await expect(
        await api.post(app.policy, json={**body, "continuous_archiving": False}, headers=owner),
        200,
    )
    assert off["continuous_archiving"] is False
    assert await until_closed(temporal_client, app) == WorkflowExecutionStatus.CANCELED
    assert not slot_exists(instance, app)

    await expect(await api.post(app.policy, json=body, headers=owner), 200)
    assert await archiver_status(temporal_client, app) == WorkflowExecutionStatus.RUNNING
    await handle.terminate("lost by hand")
    engine = make_engine(settings.database_url)
    try:
        report = await reconcile_all(temporal_client, make_sessionmaker(engine), settings)
    finally:
        await engine.dispose()
    assert f"archiver-{app.id}" in report.created
    assert await archiver_status(temporal_client, app) == WorkflowExecutionStatus.RUNNING
    await expect(await api.delete(app.policy, headers=owner), 204)
    assert await until_closed(temporal_client, app) == WorkflowExecutionStatus.CANCELED

    events = await expect(
        await api.get(f"/api/v1/workspaces/{app.ws}/audit-events", headers=world.auth("ws_admin")),
        200,
    )
    switched = [
        e["details"].get("continuous_archiving")
        for e in events["items"]
        if e["action"] in ("policy.create", "policy.update")
        and "continuous_archiving" in e["details"]
    ]
    assert sorted(switched) == [False, True, True]
    assert "policy.delete" in {e["action"] for e in events["items"]}


async def test_archiving_needs_a_database_and_takes_strict_values(
    api: ApiClient, world: World, settings: Settings, tmp_path: Any
) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir()
    app = await register(api, world, {"kind": "local", "volumes": {"uploads": str(folder)}})
    owner = world.auth("owner")
    before = snapshot(settings.database_url)
    problem = await expect(
        await api.post(app.policy, json=policy(app, continuous_archiving=True), headers=owner),
        422,
    )
    assert [e["field"] for e in problem["errors"]] == ["body.continuous_archiving"], problem
    assert "needs a database" in problem["errors"][0]["message"]
    for field, value in [
        ("continuous_archiving", "true"),
        ("continuous_archiving", 1),
        ("archive_window_days", 36),
        ("archive_window_days", 0),
        ("archive_window_days", 7.0),
        ("archive_window_days", True),
    ]:
        problem = await expect(
            await api.post(app.policy, json=policy(app, **{field: value}), headers=owner), 422
        )
        assert [e["field"] for e in problem["errors"]] == [f"body.{field}"], (value, problem)
    assert snapshot(settings.database_url) == before


async def test_temporal_down_leaves_archiving_off(
    api: ApiClient, world: World, settings: Settings, instance: pg_instance.Instance
) -> None:
    app = await register(api, world, on_instance(instance))
    down = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    before = snapshot(settings.database_url)
    async with running_app(down) as client:
        problem = await expect(
            await client.post(
                app.policy,
                json=policy(app, continuous_archiving=True),
                headers=world.auth("owner"),
            ),
            503,
        )
    assert problem["type"] == "/problems/temporal-unavailable"
    assert snapshot(settings.database_url) == before
