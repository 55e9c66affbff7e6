"""Point-in-time recovery through the API (docs/pitr.md), on a PostgreSQL server of the test's
own: continuous archiving turned on and off in the policy.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from activities.archive import ArchiveActivities, Source, spool_of
from adapters import pg_databases
from adapters.pg_archive import stream
from adapters.pg_archive.window import stamp
from adapters.pg_identity import identity_of_current
from adapters.restic import Restic
from contracts.task_queues import CONTROL_TASK_QUEUE
from core.settings import Settings
from db.session import make_engine, make_sessionmaker
from schedules.reconcile import reconcile_all
from tests.conftest import free_port
from tests.integration.test_cli import cairn
from tests.support import pg_instance
from tests.support.api import ApiClient, World, expect, new_workspace, running_app, wait_for
from tests.support.backups import finished
from tests.support.database import snapshot
from tests.support.histories import HISTORIES
from tests.support.served import served  # noqa: F401  (the fixture)

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
    assert not spool_of(settings, app.id).exists()  # a later archiver starts from its new slot

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


class Archived:
    def __init__(self, app: App, instance: pg_instance.Instance) -> None:
        self.app, self.instance = app, instance
        self.commits: dict[int, datetime] = {}
        self.window = f"/api/v1/applications/{app.id}/recovery-window"
        self.restores = f"/api/v1/applications/{app.id}/restores"


async def window_when(
    api: ApiClient, world: World, archived: Archived, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        shown = await expect(await api.get(archived.window, headers=world.auth("member")), 200)
        if ready(shown):
            return dict(shown)
        assert time.monotonic() < deadline, f"the window never got there: {shown}"
        await asyncio.sleep(1)


def at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


async def refused_outside_window(
    api: ApiClient, url: str, moment: datetime, headers: dict[str, str]
) -> None:
    """A restore or drill to ``moment``, before the window, is a 422 on ``target_time``."""
    problem = await expect(
        await api.post(url, json={"target_time": moment.isoformat()}, headers=headers), 422
    )
    assert [e["field"] for e in problem["errors"]] == ["body.target_time"], problem
    assert "is not restorable: the window is from" in problem["errors"][0]["message"]


@pytest.fixture(scope="module")
async def archived(
    api: ApiClient, world: World, temporal_client: Client, instance: pg_instance.Instance
) -> AsyncIterator[Archived]:
    """An application with archiving on, rows committed after its first base backup, and a
    window that reaches the last of them."""
    app = await register(api, world, on_instance(instance))
    archived = Archived(app, instance)
    await expect(
        await api.post(
            app.policy, json=policy(app, continuous_archiving=True), headers=world.auth("owner")
        ),
        201,
    )
    await window_when(api, world, archived, lambda w: w["earliest"] is not None)
    with instance.connect(DB) as conn:
        for i in range(1, 31):
            conn.execute("INSERT INTO orders VALUES (%s, clock_timestamp())", (i,))
            if i % 10 == 0:
                conn.execute("SELECT pg_switch_wal()")
            await asyncio.sleep(0.05)
        archived.commits.update(
            (int(row[0]), row[1])
            for row in conn.execute("SELECT id, pg_xact_commit_timestamp(xmin) FROM orders")
        )
    last = max(archived.commits.values())
    await window_when(
        api, world, archived, lambda w: w["latest"] is not None and at(w["latest"]) >= last
    )
    yield archived
    await expect(
        await api.post(
            app.policy, json=policy(app, continuous_archiving=False), headers=world.auth("owner")
        ),
        200,
    )
    await until_closed(temporal_client, app)  # slot and spool gone before the server goes


async def test_the_window_reaches_every_commit_and_shows_the_archiver(
    api: ApiClient, world: World, archived: Archived
) -> None:
    shown = await expect(await api.get(archived.window, headers=world.auth("member")), 200)
    assert shown["continuous_archiving"] is True
    assert at(shown["earliest"]) <= min(archived.commits.values())
    assert at(shown["latest"]) >= max(archived.commits.values())
    assert shown["gaps"] == []
    archiver = shown["archiver"]
    assert archiver["streaming"] is True
    assert at(archiver["last_shipment_at"]) == at(shown["latest"])
    assert isinstance(archiver["lag_seconds"], float)
    await expect(await api.get(archived.window, headers=world.auth("other_admin")), 404)


async def restored_rows(
    api: ApiClient,
    world: World,
    temporal_client: Client,
    settings: Settings,
    archived: Archived,
    body: dict[str, Any],
    *,
    policy: bool = True,
) -> tuple[dict[str, Any], set[int]]:
    """Restores through the API, waits for the run's end; the row and the ids the new
    database holds (dropped afterwards). Without a ``policy`` (after a catalog import) there
    is no archiver to accept the new database."""
    started = await expect(
        await api.post(archived.restores, json=body, headers=world.auth("owner")), 202
    )
    assert started["backup_id"] is None
    done = await wait_for(
        api,
        f"{archived.restores}/{started['id']}",
        world.auth("member"),
        lambda r: r["status"] not in ("pending", "running"),
        seconds=180,
    )
    assert done["status"] == "succeeded", done["error_message"]
    if os.environ.get("CAIRN_RECORD_HISTORIES"):
        handle = temporal_client.get_workflow_handle(done["workflow_id"])
        history = await handle.fetch_history()
        (HISTORIES / "restore-to-time-succeeded.json").write_text(history.to_json())
    into = done["target"]["database_name"]
    with archived.instance.connect(into) as conn:
        ids = {int(row[0]) for row in conn.execute("SELECT id FROM orders").fetchall()}
        made = identity_of_current(conn)
    if policy:  # the archiver's next stretch takes it for the application's own data
        source = await archiver_source(settings, archived.app.id)
        assert made in source.restored  # by its identity
        stream.prepare(source.target, stream.slot_name(archived.app.id), source.restored)
    pg_databases.drop(archived.instance.target(into), into)
    return done, ids


async def archiver_source(settings: Settings, application_id: str) -> Source:
    """The application as the archiver's activities load it."""
    engine = make_engine(settings.database_url)
    try:
        sessions = make_sessionmaker(engine)
        activities = ArchiveActivities(sessions, settings, Restic(settings.restic_bin))
        async with sessions() as session:
            return await activities._load(session, application_id)
    finally:
        await engine.dispose()


async def test_a_restore_to_a_moment_through_the_api_holds_exactly_the_rows_committed_by_then(
    api: ApiClient,
    world: World,
    temporal_client: Client,
    settings: Settings,
    archived: Archived,
    instance: pg_instance.Instance,
) -> None:
    moment = sorted(archived.commits.values())[11]
    body = {"target_time": moment.isoformat(), "target": {"database_name": "shop_at_12"}}
    done, ids = await restored_rows(api, world, temporal_client, settings, archived, body)
    assert ids == {i for i, c in archived.commits.items() if c <= moment}
    assert len(ids) == 12
    assert done["target_time"] == stamp(moment)
    listed = await expect(await api.get(archived.restores, headers=world.auth("member")), 200)
    assert done["id"] in {r["id"] for r in listed["items"]}

    done, ids = await restored_rows(
        api, world, temporal_client, settings, archived, {"target_time": "latest"}
    )
    assert ids == set(archived.commits)
    assert done["target"]["database_name"].startswith(f"{DB}_at_")
    with instance.connect(DB) as conn:  # the live database is untouched
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (30,)


async def test_a_moment_outside_the_window_or_a_bad_one_is_422(
    api: ApiClient, world: World, archived: Archived, settings: Settings
) -> None:
    before = snapshot(settings.database_url)
    owner = world.auth("owner")
    early = min(archived.commits.values()) - timedelta(days=1)
    await refused_outside_window(api, archived.restores, early, owner)
    for body in [
        {"target_time": "2026-12-07T14:31:05"},  # no offset
        {"target_time": "yesterday"},
        {"target_time": 1765000000},
        {"target_time": "latest", "target": {"database_name": DB}},
        {"target_time": "latest", "target": {"database_name": "postgres"}},
    ]:
        problem = await expect(await api.post(archived.restores, json=body, headers=owner), 422)
        assert problem["errors"][0]["field"].startswith("body.target"), (body, problem)
    assert snapshot(settings.database_url) == before


async def test_the_cli_shows_the_window_and_restores_to_a_moment(
    world: World,
    archived: Archived,
    served: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    owner = world.tokens["owner"]
    app = archived.app.id
    shown = await cairn(served, owner, tmp_path, "restores", "window", "--app", app, "-o", "json")
    assert shown.code == 0, shown
    assert at(shown.json()["latest"]) >= max(archived.commits.values())
    table = await cairn(served, owner, tmp_path, "restores", "window", "--app", app, "-o", "table")
    assert re.search(r"archiver streaming\s+yes", table.out), table

    moment = sorted(archived.commits.values())[4]
    ran = await cairn(
        served, owner, tmp_path, "restores", "create", "--app", app,
        "--to", moment.isoformat(), "--target-database", "shop_cli", "--wait", "-o", "json",
    )  # fmt: skip
    assert ran.code == 0, ran
    with archived.instance.connect("shop_cli") as conn:
        ids = {int(row[0]) for row in conn.execute("SELECT id FROM orders").fetchall()}
    pg_databases.drop(archived.instance.target("shop_cli"), "shop_cli")
    assert ids == {i for i, c in archived.commits.items() if c <= moment}

    refused = await cairn(
        served, owner, tmp_path, "restores", "create", "--app", app, "--to", "latest",
        "--backup", str(uuid.uuid4()),
    )  # fmt: skip
    assert refused.code == 2, refused
    changed = await cairn(
        served, owner, tmp_path, "policies", "set", "--app", app,
        "--continuous-archiving", "--archive-window-days", "10", "-o", "json",
    )  # fmt: skip
    assert changed.code == 0, changed
    assert (changed.json()["continuous_archiving"], changed.json()["archive_window_days"]) == (
        True,
        10,
    )


async def test_the_retention_sweep_prunes_dumps_by_their_rule_and_keeps_the_window(
    api: ApiClient, world: World, temporal_client: Client, archived: Archived
) -> None:
    """Two dumps beside the archive and a rule keeping the last one: the sweep prunes the
    older dump; the archive is pruned by its window (7 days: nothing of it goes)."""
    from workflows.retention import RetentionSweepWorkflow

    owner, member = world.auth("owner"), world.auth("member")
    backups = f"/api/v1/applications/{archived.app.id}/backups"
    runs = []
    for _ in range(2):
        accepted = await expect(await api.post(backups, headers=owner), 202)
        runs.append(
            await wait_for(api, f"{backups}/{accepted['id']}", owner, finished, seconds=120)
        )
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"], runs
    rule = policy(archived.app, continuous_archiving=True, retention_days=None, keep_last=1)
    saved = await expect(await api.post(archived.app.policy, json=rule, headers=owner), 200)
    before = await expect(await api.get(archived.window, headers=member), 200)
    swept = await temporal_client.execute_workflow(
        RetentionSweepWorkflow.run,
        id=f"test-pitr-sweep-{uuid.uuid4()}",
        task_queue=CONTROL_TASK_QUEUE,
    )
    assert swept.get(saved["id"]) == [runs[0]["id"]]
    after = await expect(await api.get(archived.window, headers=member), 200)
    assert after["earliest"] == before["earliest"] and after["gaps"] == []
    assert at(after["latest"]) >= at(before["latest"])
    statuses = {
        b["id"]: b["status"]
        for b in (await expect(await api.get(backups, headers=owner), 200))["items"]
    }
    assert [statuses[r["id"]] for r in runs] == ["pruned", "succeeded"]
