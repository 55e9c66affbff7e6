"""The archiver workflow on the project's real workers: an application registered through the
API on a PostgreSQL server of the test's own, archived while a writer commits; turned off, it
drops its replication slot.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from adapters.pg_archive import stream
from adapters.pg_archive.window import read_archive, window
from adapters.restic import Restic, ResticError
from contracts.archive import ArchiverJob
from contracts.task_queues import CONTROL_TASK_QUEUE
from core.settings import Settings
from schedules.cron import next_times
from tests.support import pg_instance
from tests.support.api import ApiClient, World, expect, new_workspace
from tests.support.backups import active_storage, repository_of
from tests.support.histories import HISTORIES
from workflows.archiver import ArchiverWorkflow

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

DB = "shop"


@pytest.fixture(scope="module")
def instance() -> Iterator[pg_instance.Instance]:
    with pg_instance.running() as server:
        with server.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {DB}")
        with server.connect(DB) as conn:
            conn.execute("CREATE TABLE orders (id bigserial PRIMARY KEY)")
        yield server


async def _register(
    api: ApiClient, world: World, instance: pg_instance.Instance
) -> tuple[str, str]:
    ws = await new_workspace(api, world, members=("owner",))
    storage = await active_storage(api, world, ws)
    target = instance.target(DB)
    url = f"postgresql://{target.user}:{target.password}@{target.host}:{target.port}/{DB}"
    app = await expect(
        await api.post(
            f"/api/v1/workspaces/{ws}/applications",
            json={
                "name": f"app-{uuid.uuid4().hex[:6]}",
                "owner_id": world.users["owner"],
                "platform": {"kind": "local", "database_url": url, "volumes": {}},
            },
            headers=world.auth("platform_admin"),
        ),
        201,
    )
    body = {"storage_id": storage["id"], "schedule": "0 3 * * *"}
    policy = f"/api/v1/applications/{app['id']}/backup-policy"
    await expect(await api.post(policy, json=body, headers=world.auth("owner")), 201)
    return str(app["id"]), str(storage["id"])


async def _window_latest(
    settings: Settings, application_id: str, storage_id: str
) -> datetime | None:
    repo = await repository_of(settings, application_id, storage_id)
    if not (repo.path / "config").exists():
        return None
    restic = Restic(settings.restic_bin)
    try:
        snapshots = await asyncio.to_thread(restic.snapshots, repo)
    except ResticError as exc:  # the archiver's forget holds the lock: asked again
        if not exc.retryable:
            raise
        return None
    return window(read_archive(snapshots)).latest


async def _save(client: Client, workflow_id: str, run_id: str, name: str) -> None:
    if not os.environ.get("CAIRN_RECORD_HISTORIES"):
        return
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())


def _slot_active(instance: pg_instance.Instance, slot: str) -> bool | None:
    with instance.connect(DB) as conn:
        row = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        return None if row is None else bool(row[0])


async def test_the_archiver_streams_continues_as_new_and_drops_its_slot_when_stopped(
    api: ApiClient,
    world: World,
    settings: Settings,
    temporal_client: Client,
    instance: pg_instance.Instance,
) -> None:
    application_id, storage_id = await _register(api, world, instance)
    stop = threading.Event()
    committed: list[datetime] = []

    def write() -> None:
        with instance.connect(DB) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO orders DEFAULT VALUES")
                row = conn.execute("SELECT clock_timestamp()").fetchone()
                assert row is not None
                committed.append(row[0])
                time.sleep(0.05)

    writer = threading.Thread(target=write)
    writer.start()
    workflow_id = f"archiver-{application_id}"
    handle = await temporal_client.start_workflow(
        ArchiverWorkflow.run,
        ArchiverJob(application_id, stretch_seconds=15),
        id=workflow_id,
        task_queue=CONTROL_TASK_QUEUE,
    )
    first_run = handle.result_run_id
    assert first_run is not None
    try:
        deadline = time.monotonic() + 180
        while True:  # a second run: the first one took its base backup and continued as new
            described = await temporal_client.get_workflow_handle(workflow_id).describe()
            if described.run_id != first_run:
                break
            assert described.status == WorkflowExecutionStatus.RUNNING
            assert time.monotonic() < deadline, "the archiver never continued as new"
            await asyncio.sleep(1)
        assert _slot_active(instance, stream.slot_name(application_id)) is not None
        # the next base backup is due at the policy's next fire time ("0 3 * * *", UTC)
        carried = json.loads(
            (await temporal_client.get_workflow_handle(workflow_id).fetch_history())
            .events[0]
            .workflow_execution_started_event_attributes.input.payloads[0]
            .data
        )
        around = described.start_time - timedelta(minutes=5)
        fires = next_times("0 3 * * *", ZoneInfo("UTC"), 2, around)
        assert datetime.fromisoformat(carried["base_backup_due"]) in fires
        stop.set()
        writer.join()
        last_commit = committed[-1]
        deadline = time.monotonic() + 120
        latest = await _window_latest(settings, application_id, storage_id)
        while latest is None or latest < last_commit:  # the window reaches the last commit
            assert time.monotonic() < deadline, "the window never reached the last commit"
            await asyncio.sleep(1)
            latest = await _window_latest(settings, application_id, storage_id)
    finally:
        stop.set()
        writer.join()
        await temporal_client.get_workflow_handle(workflow_id).cancel()
    second = temporal_client.get_workflow_handle(workflow_id)
    with pytest.raises(WorkflowFailureError):
        await second.result()
    assert (await second.describe()).status == WorkflowExecutionStatus.CANCELED
    assert _slot_active(instance, stream.slot_name(application_id)) is None
    await _save(temporal_client, workflow_id, first_run, "archiver-stretch")
    await _save(temporal_client, workflow_id, (await second.describe()).run_id, "archiver-stopped")
