"""A finished run's timeline is read from Temporal once, then served from the API process."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from api import timeline
from devstack.postgres import PostgresServer
from tests.support.api import ApiClient, World, expect
from tests.support.backups import make_app, run_backup

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


class Unreachable:
    """Stands in for a Temporal client that must not be called at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Temporal was asked ({name}) for a kept timeline")


async def test_a_closed_runs_timeline_costs_no_temporal_call_after_the_first_read(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    temporal_client: Client,
) -> None:
    app = await make_app(api, world, database_server, tmp_path)
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup["error_message"]
    await temporal_client.get_workflow_handle(backup["workflow_id"]).result()

    first = await timeline.read(temporal_client, backup["workflow_id"], backup["run_id"])
    assert first["workflow_status"] == "completed"
    again = await timeline.read(Unreachable(), backup["workflow_id"], backup["run_id"])  # type: ignore[arg-type]
    assert again == first
    again["steps"].clear()  # a caller changing its copy does not change what is kept
    kept = await timeline.read(Unreachable(), backup["workflow_id"], backup["run_id"])  # type: ignore[arg-type]
    assert kept == first

    # the API's detail of the finished backup shows the same steps
    detail = await expect(
        await api.get(f"{app.backups}/{backup['id']}", headers=world.auth("owner")), 200
    )
    assert [s["step"] for s in detail["timeline"]["steps"]] == [s["step"] for s in first["steps"]]


async def test_reads_of_a_running_run_within_max_age_share_one_temporal_read(
    temporal_client: Client,
) -> None:
    """Clients polling a running run cost one Temporal read per window, not one each."""
    handle = await temporal_client.start_workflow(
        "never-picked-up",  # no worker polls its queue: it stays running
        id=f"timeline-running-{uuid.uuid4().hex[:8]}",
        task_queue=f"nobody-polls-{uuid.uuid4().hex[:8]}",
    )
    run_id = handle.result_run_id
    nobody = Unreachable()
    try:
        first = await timeline.read(temporal_client, handle.id, run_id, max_age=60)
        assert first["workflow_status"] == "running"
        assert await timeline.read(nobody, handle.id, run_id, max_age=60) == first  # type: ignore[arg-type]
        with pytest.raises(AssertionError, match="was asked"):
            await timeline.read(nobody, handle.id, run_id)  # type: ignore[arg-type]
    finally:
        await handle.terminate("test over")
    # a row that ended reads afresh (max_age 0), and then the closed timeline is kept
    ended = await timeline.read(temporal_client, handle.id, run_id)
    assert ended["workflow_status"] == "terminated"
    assert await timeline.read(nobody, handle.id, run_id, max_age=60) == ended  # type: ignore[arg-type]
