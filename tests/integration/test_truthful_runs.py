"""Every run ends in a status that matches its Temporal workflow, and says why.

Each test is one row of issue 9's table: before the fix the row stayed ``running`` forever
(or the request failed with a 500); now it ends truthfully, alerts, and never blocks the
application's next run.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client

from core import crypto
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.support import histories
from tests.support.api import ApiClient, World, expect, wait_for
from tests.support.backups import CREATED_DATABASES, App, finished, make_app, run_backup
from tests.support.database import libpq_url
from tests.support.webhook import WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

# Temporal's workflow status for each final row status.
SAME = {"succeeded": "completed", "failed": "failed", "cancelled": "canceled"}


async def _ended(api: ApiClient, world: World, app: App, backup_id: str) -> Any:
    return await wait_for(
        api, f"{app.backups}/{backup_id}", world.auth("owner"), finished, seconds=60
    )


def _matches_temporal(row: dict[str, Any], *temporal: str) -> None:
    workflow_status = row["timeline"]["workflow_status"]
    assert workflow_status in temporal, (row["status"], workflow_status)


async def test_cancel_right_after_trigger_ends_cancelled_and_alerts(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    webhook: WebhookReceiver,
) -> None:
    app = await make_app(api, world, database_server, tmp_path)
    owner = world.auth("owner")
    accepted = await expect(await api.post(app.backups, headers=owner), 202)
    await expect(await api.post(f"{app.backups}/{accepted['id']}/cancel", headers=owner), 202)
    row = await _ended(api, world, app, accepted["id"])
    assert row["status"] == "cancelled", row
    assert row["error_message"].startswith("cancelled during ")
    _matches_temporal(row, "canceled")
    assert [e["event"] for e in webhook.for_execution(row["id"])] == ["backup.cancelled"]
    # the application is free again at once
    again = await run_backup(api, world, app)
    assert again["status"] == "succeeded", again


async def test_a_terminated_workflow_is_settled_when_read_and_does_not_block(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    webhook: WebhookReceiver,
    temporal_client: Client,
) -> None:
    """An operator terminated the run in the Temporal UI: the row cannot record itself."""
    app = await make_app(api, world, database_server, tmp_path)
    owner = world.auth("owner")
    accepted = await expect(await api.post(app.backups, headers=owner), 202)
    handle = temporal_client.get_workflow_handle(accepted["workflow_id"])
    await handle.terminate(reason="stopped by an operator")
    row = await expect(await api.get(f"{app.backups}/{accepted['id']}", headers=owner), 200)
    assert row["status"] == "failed", row
    assert "terminated in Temporal: stopped by an operator" in row["error_message"]
    _matches_temporal(row, "terminated")
    events = await wait_for_events(webhook, row["id"])
    assert [e["event"] for e in events] == ["backup.failed"]
    await histories.record(temporal_client, "runs-settle-now", "runs-settle")
    # the stale run no longer blocks the next backup
    again = await run_backup(api, world, app)
    assert again["status"] == "succeeded", again


async def test_cancel_of_a_run_whose_workflow_closed_settles_it(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    temporal_client: Client,
) -> None:
    app = await make_app(api, world, database_server, tmp_path)
    owner = world.auth("owner")
    accepted = await expect(await api.post(app.backups, headers=owner), 202)
    await temporal_client.get_workflow_handle(accepted["workflow_id"]).terminate(reason="gone")
    problem = await expect(
        await api.post(f"{app.backups}/{accepted['id']}/cancel", headers=owner), 409
    )
    assert problem["backup_status"] == "failed"
    listed = await expect(await api.get(app.backups, headers=owner), 200)
    assert [b["status"] for b in listed["items"] if b["id"] == accepted["id"]] == ["failed"]


async def test_secrets_that_cannot_be_opened_fail_the_run_with_the_reason(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    settings: Settings,
    webhook: WebhookReceiver,
) -> None:
    """The data folder (and its master key) was reset while the metadata database was kept."""
    app = await make_app(api, world, database_server, tmp_path)
    assert (await run_backup(api, world, app))["status"] == "succeeded"
    other_key = crypto.generate_master_key()
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        repo_id, storage_id, sealed = conn.execute(
            "SELECT id, storage_id, password_sealed FROM backup_repositories"
            " WHERE application_id = %s",
            (app.id,),
        ).fetchone()  # type: ignore[misc]
        resealed = crypto.seal(
            b"some other password",
            master_key=other_key,
            context=f"backup_repositories/{app.id}/{storage_id}/password",
        )
        assert resealed != sealed
        conn.execute(
            "UPDATE backup_repositories SET password_sealed = %s WHERE id = %s",
            (resealed, repo_id),
        )
    row = await run_backup(api, world, app)
    assert row["status"] == "failed", row
    assert row["error_message"].startswith("quota check: "), row["error_message"]
    assert "cannot be opened with this master key" in row["error_message"]
    assert "cleanup incomplete" in (row["metadata"] or {}).get("cleanup", "")
    _matches_temporal(row, "failed")
    assert [e["event"] for e in webhook.for_execution(row["id"])] == ["backup.failed"]


async def test_deleting_a_policy_keeps_the_backup_history_restorable(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    settings: Settings,
) -> None:
    """Before: DELETE policy after any restore answered 500 and the app could never go."""
    app = await make_app(api, world, database_server, tmp_path)
    owner = world.auth("owner")
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded"
    restore_path = f"{app.backups}/{backup['id']}/restore"
    body = {"restore_type": "selective", "database": True}
    first = await expect(await api.post(restore_path, json=body, headers=owner), 202)
    restores = f"/api/v1/applications/{app.id}/restores"
    done = await wait_for(
        api, f"{restores}/{first['id']}", owner, lambda r: r["status"] == "succeeded", 120
    )
    assert done["status"] == "succeeded"

    await expect(await api.delete(app.policy, headers=owner), 204)
    listed = await expect(await api.get(app.backups, headers=owner), 200)
    assert [b["id"] for b in listed["items"]] == [backup["id"]]
    assert listed["items"][0]["policy_id"] is None
    # still restorable without a policy
    second = await expect(await api.post(restore_path, json=body, headers=owner), 202)
    done = await wait_for(
        api, f"{restores}/{second['id']}", owner, lambda r: r["status"] == "succeeded", 120
    )
    assert done["status"] == "succeeded", done
    scraped = await api.get("/metrics", headers=world.auth("platform_admin"))
    assert 'cairn_restores{status="succeeded"}' in scraped.text
    # and the application can be deleted, its history with it
    await expect(
        await api.delete(f"/api/v1/applications/{app.id}", headers=world.auth("platform_admin")),
        204,
    )
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        left = conn.execute(
            "SELECT count(*) FROM backup_executions WHERE application_id = %s", (app.id,)
        ).fetchone()
    assert left == (0,)


async def wait_for_events(webhook: WebhookReceiver, subject: str) -> list[dict[str, Any]]:
    """The alert is sent by the reconciler's workflow right after it settled the row."""
    import asyncio

    for _ in range(100):
        events = webhook.for_execution(subject)
        if events:
            return events
        await asyncio.sleep(0.1)
    return []


async def test_a_backup_taken_under_writes_restores_and_verifies(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
) -> None:
    """Before: the manifest's row counts were taken outside pg_dump's snapshot, so the
    restore of a live application failed verification although its data was the dump's."""
    app = await make_app(api, world, database_server, tmp_path)
    stop = threading.Event()

    def write() -> None:
        with psycopg.connect(app.db_url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO items (name) VALUES ('written during the backup')")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        backup = await run_backup(api, world, app)
    finally:
        stop.set()
        writer.join()
    assert backup["status"] == "succeeded", backup
    counted = backup["metadata"]["database"]["row_counts"]["public.items"]
    assert counted > 200  # the writer was busy while the dump ran
    copy = f"{app.dbname}_copy"
    CREATED_DATABASES.append(copy)
    owner = world.auth("owner")
    body = {"restore_type": "selective", "database": True, "target": {"database_name": copy}}
    started = await expect(
        await api.post(f"{app.backups}/{backup['id']}/restore", json=body, headers=owner), 202
    )
    done = await wait_for(
        api,
        f"/api/v1/applications/{app.id}/restores/{started['id']}",
        owner,
        lambda r: r["status"] in ("succeeded", "failed"),
        120,
    )
    assert done["status"] == "succeeded", done["error_message"]
    with psycopg.connect(database_server.url(copy, driver="postgresql")) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (counted,)


async def test_backups_of_a_storage_deleted_with_force_are_shown_pruned(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
) -> None:
    """Their data is gone with the storage: the history must not offer them for restore."""
    app = await make_app(api, world, database_server, tmp_path)
    owner, admin = world.auth("owner"), world.auth("ws_admin")
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded"
    await expect(await api.delete(app.policy, headers=owner), 204)
    storage = f"/api/v1/workspaces/{app.workspace}/backup-storages/{app.storage}"
    await expect(await api.delete(f"{storage}?force=true", headers=admin), 202)
    await wait_for(api, storage, admin, None, seconds=60)
    row = await expect(await api.get(f"{app.backups}/{backup['id']}", headers=owner), 200)
    assert row["status"] == "pruned" and "deleted with force" in row["error_message"]
    problem = await expect(
        await api.post(
            f"{app.backups}/{backup['id']}/restore", json={"restore_type": "full"}, headers=owner
        ),
        409,
    )
    assert problem["type"].endswith("/backup-pruned-on-primary"), problem
    assert "(its storage was deleted with force)" in problem["detail"]
    assert "no offsite copy" in problem["detail"]
