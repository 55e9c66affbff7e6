"""Runs read like cairn in the Temporal UI: summaries in words, filterable by workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.common import SearchAttributeKey
from temporalio.converter import DataConverter

from devstack.postgres import PostgresServer
from schedules.backup_policy import schedule_id
from tests.support.api import ApiClient, World, expect, wait_for
from tests.support.backups import App, make_app, run_backup

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

WORKSPACE_ID = SearchAttributeKey.for_keyword("WorkspaceId")


def _decoded(payload: object) -> str:
    value = DataConverter.default.payload_converter.from_payloads([payload])[0]  # type: ignore[list-item]
    assert isinstance(value, str)
    return value


def _activity_summaries(events: list[HistoryEvent]) -> list[str]:
    return [
        _decoded(event.user_metadata.summary)
        for event in events
        if event.HasField("activity_task_scheduled_event_attributes")
        and event.user_metadata.HasField("summary")
    ]


async def _names(api: ApiClient, world: World, app: App) -> tuple[str, str]:
    admin = world.auth("platform_admin")
    workspace = await expect(
        await api.get(f"/api/v1/admin/workspaces/{app.workspace}", headers=admin), 200
    )
    application = await expect(await api.get(f"/api/v1/applications/{app.id}", headers=admin), 200)
    return workspace["name"], application["name"]


async def test_storage_backup_restore_and_schedule_read_in_words(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    temporal_client: Client,
    tmp_path: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path)
    workspace, application = await _names(api, world, app)

    provision = await temporal_client.get_workflow_handle(
        f"storage-provision-{app.storage}"
    ).describe()
    assert await provision.static_summary() == f"Provision storage main ({workspace})"
    assert f"Workspace: **{workspace}**" in (await provision.static_details() or "")
    assert provision.typed_search_attributes.get(WORKSPACE_ID) == app.workspace

    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup
    run = temporal_client.get_workflow_handle(backup["workflow_id"])
    described = await run.describe()
    assert await described.static_summary() == (
        f"Backup of {application} ({workspace}) to main, manual"
    )
    details = await described.static_details() or ""
    assert f"**Backup** of application **{application}**" in details
    assert "Trigger: started by hand (API or CLI)" in details
    history = await run.fetch_history()
    summaries = _activity_summaries(list(history.events))
    assert summaries[0] == "dump the database" and summaries[-1] == "store the manifest"
    assert sorted(summaries[1:-1]) == ["upload volume media", "upload volume uploads"]

    accepted = await expect(
        await api.post(
            f"{app.backups}/{backup['id']}/restore",
            json={"restore_type": "selective", "volumes": ["uploads"]},
            headers=world.auth("owner"),
        ),
        202,
    )
    restore = await wait_for(
        api,
        f"/api/v1/applications/{app.id}/restores/{accepted['id']}",
        world.auth("owner"),
        lambda r: (
            r["status"] in ("succeeded", "failed", "cancelled")
            and (r.get("timeline") or {}).get("workflow_status") not in (None, "running")
        ),
        seconds=120,
    )
    assert restore["status"] == "succeeded", restore
    restored = temporal_client.get_workflow_handle(accepted["workflow_id"])
    summary = await (await restored.describe()).static_summary()
    assert summary == f"Selective restore of {application} ({workspace}), in place"
    details = await (await restored.describe()).static_details() or ""
    assert "Restores: volume uploads, in place" in details
    assert "in storage **main**" in details
    summaries = _activity_summaries(list((await restored.fetch_history()).events))
    assert summaries == ["verify the backup", "restore volume uploads", "verify the restored data"]

    schedule = await temporal_client.get_schedule_handle(schedule_id(app.id)).describe()
    action = schedule.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert _decoded(action.static_summary) == (
        f"Backup of {application} ({workspace}) to main, schedule"
    )
    assert "started by the backup policy's schedule" in _decoded(action.static_details)
