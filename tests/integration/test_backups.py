"""Backups end to end: real PostgreSQL, pg_dump, restic, Temporal; Proxmox is the fake."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client

from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.support import histories
from tests.support.api import ApiClient, World, expect, temporal_refresh, wait_for
from tests.support.backups import (
    TERMINAL,
    App,
    finished,
    make_app,
    random_file,
    run_backup,
    table_hashes,
    tree_hashes,
)
from tests.support.database import libpq_url
from tests.support.webhook import WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def cli(settings: Settings, *args: str) -> str:
    env = {
        **os.environ,
        "CAIRN_DATABASE_URL": settings.database_url,
        "CAIRN_MASTER_KEY": settings.master_key_text or "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def restic(repo: str, password: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "RESTIC_PASSWORD": password}
    return subprocess.run(["restic", "-r", repo, *args], env=env, capture_output=True, check=True)


@pytest.fixture
async def app(api: ApiClient, world: World, database_server: PostgresServer, tmp_path: Path) -> App:
    return await make_app(api, world, database_server, tmp_path)


async def test_backup_is_complete_encrypted_and_restorable_with_plain_restic(
    api: ApiClient,
    world: World,
    app: App,
    settings: Settings,
    temporal_client: Client,
    database_server: PostgresServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup
    assert backup["trigger"] == "manual" and backup["size_bytes"] > 0
    assert backup["workflow_id"] == f"backup-{backup['id']}"
    manifest = backup["metadata"]
    assert {p["part"] for p in manifest["parts"]} == {"database", "volume:media", "volume:uploads"}
    assert (
        manifest["database"]["row_counts"]
        == {"public.items": 200, 'public."Odd Name"': 2, "public.empty_one": 0}
        or manifest["database"]["row_counts"]["public.items"] == 200
    )
    assert manifest["volumes"]["uploads"]["files"] == 22
    assert manifest["snapshot"]["consistent"] is False and "live" in manifest["snapshot"]["note"]
    steps = [s["step"] for s in backup["timeline"]["steps"]]
    assert steps == [
        "begin_backup",
        "check_quota",
        "snapshot_volumes",
        "dump_database",
        "upload_volume",
        "upload_volume",
        "store_manifest",
        "record_success",
        "release_backup",
        "offsite_target_of",
    ]  # retention is the daily sweep's (issue 13); release: the platform's cleanup (issue 11);
    # the offsite copy, when the policy names a target, is a workflow of its own (issue 23)
    assert all(s["status"] == "completed" for s in backup["timeline"]["steps"])
    # begin_backup may retry once while the API's transaction commits; data steps never did
    assert all(s["attempts"] == 1 for s in backup["timeline"]["steps"][1:])

    token = world.tokens["platform_admin"]
    out = cli(settings, "admin", "--token", token, "repo-password", app.id)
    repo = out.split("repository: ")[1].split()[0]
    password = out.split("password:   ")[1].split()[0]
    snapshots = json.loads(restic(repo, password, "snapshots", "--json").stdout)
    parts = sorted(t for s in snapshots for t in s["tags"] if t.startswith("part="))
    assert parts == ["part=database", "part=manifest", "part=volume:media", "part=volume:uploads"]
    assert all(f"execution={backup['id']}" in s["tags"] for s in snapshots)

    by_part = {t: s["id"] for s in snapshots for t in s["tags"] if t.startswith("part=")}
    for name, source in app.volumes.items():
        target = tmp_path / f"restored-{name}"
        restic(repo, password, "restore", by_part[f"part=volume:{name}"], "--target", str(target))
        assert tree_hashes(target) == tree_hashes(source)
    dump = restic(repo, password, "dump", by_part["part=database"], "/database.dump").stdout
    copy = f"{app.dbname}_copy"
    database_server.create_database(copy)
    try:
        copy_url = database_server.url(copy, driver="postgresql")
        subprocess.run(["pg_restore", "--no-owner", "--dbname", copy_url], input=dump, check=True)
        assert table_hashes(copy_url) == table_hashes(app.db_url)
    finally:
        database_server.drop_database(copy)

    for path in Path(repo).rglob("*"):
        if path.is_file():
            assert app.marker.encode() not in path.read_bytes(), path
    history = await temporal_client.get_workflow_handle(backup["workflow_id"]).fetch_history()
    for secret in (password, "app-db-secret-pw"):
        assert secret not in history.to_json()
        assert secret not in json.dumps(backup)
        assert secret not in caplog.text
    listed = await expect(await api.get(app.backups, headers=world.auth("member")), 200)
    assert password not in json.dumps(listed)
    events = await expect(
        await api.get(
            f"/api/v1/workspaces/{app.workspace}/audit-events?limit=200",
            headers=world.auth("ws_admin"),
        ),
        200,
    )
    actions = {e["action"] for e in events["items"]}
    assert {
        "backup.trigger",
        "backup.start",
        "backup.succeeded",
        "repository.password_reveal",
    } <= actions
    await histories.record(temporal_client, backup["workflow_id"], "backup-succeeded")


async def test_incremental_reuses_parent_and_full_rereads(
    api: ApiClient, world: World, database_server: PostgresServer, tmp_path: Path
) -> None:
    app = await make_app(
        api, world, database_server, tmp_path, policy={"backup_type": "incremental"}
    )
    first = await run_backup(api, world, app)
    second = await run_backup(api, world, app)
    assert first["status"] == second["status"] == "succeeded"
    parts = {p["part"]: p for p in second["metadata"]["parts"]}
    assert parts["volume:uploads"]["data_added"] < 4096


async def test_quota_exceeded_fails_before_any_data_is_written(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    settings: Settings,
    webhook: WebhookReceiver,
    temporal_client: Client,
) -> None:
    app = await make_app(api, world, database_server, tmp_path, capacity_gb=1)
    # inside the storage's repositories folder, so it is cairn's own usage (data elsewhere on
    # the file system is not: see test_storages' test_usage_and_quota_count_cairns_bytes…)
    filler = settings.storage_mount_root / app.storage_pve_id / "workspaces" / "filler.bin"
    filler.parent.mkdir(exist_ok=True)
    with filler.open("wb") as handle:
        handle.truncate(1024**3)  # sparse: counts as 1 GiB of usage, costs nothing
    try:
        backup = await run_backup(api, world, app)
    finally:
        filler.unlink()
    assert backup["status"] == "failed"
    assert "quota check" in backup["error_message"] and "of its 1 GB" in backup["error_message"]
    steps = [s["step"] for s in backup["timeline"]["steps"]]
    assert "dump_database" not in steps and "upload_volume" not in steps
    repo = settings.storage_mount_root / app.storage_pve_id / "workspaces"
    assert not any(p.is_file() for p in repo.rglob("*"))
    await _wait_webhook(webhook, backup["id"])
    assert webhook.for_execution(backup["id"])[0]["status"] == "failed"
    await histories.record(temporal_client, backup["workflow_id"], "backup-quota-exceeded")


async def test_the_quota_check_reads_the_recorded_usage_and_measures_before_refusing(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    settings: Settings,
) -> None:
    """Constant time (issue 27): the last usage reading plus what backups added since, no
    walk of the storage while the backup fits; a refusal only after measuring."""
    app = await make_app(api, world, database_server, tmp_path, capacity_gb=1)
    assert (await run_backup(api, world, app))["status"] == "succeeded"
    await temporal_refresh(api)  # a reading: the first backup's repository
    filler = settings.storage_mount_root / app.storage_pve_id / "workspaces" / "filler.bin"
    with filler.open("wb") as handle:
        handle.truncate(1024**3)  # sparse: 1 GiB of cairn's own usage, unrecorded
    try:
        # fits by the reading: the storage is not walked, so the unrecorded GiB is not seen
        assert (await run_backup(api, world, app))["status"] == "succeeded"
        await temporal_refresh(api)  # the reading now holds the GiB
        refused = await run_backup(api, world, app)
        assert refused["status"] == "failed"
        assert "quota check" in refused["error_message"], refused["error_message"]
        assert "of its 1 GB" in refused["error_message"]
    finally:
        filler.unlink()
    # the reading still says full (space freed since, as by a prune): measured, and it fits
    assert (await run_backup(api, world, app))["status"] == "succeeded"


async def _wait_webhook(webhook: WebhookReceiver, execution_id: str) -> None:
    for _ in range(100):
        if webhook.for_execution(execution_id):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no webhook event for {execution_id}")


async def test_unreachable_database_is_retried_then_fails_with_the_reason(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    webhook: WebhookReceiver,
) -> None:
    from tests.conftest import free_port

    app = await make_app(
        api,
        world,
        database_server,
        tmp_path,
        database_url=f"postgresql://postgres:pw@127.0.0.1:{free_port()}/nowhere",
        policy={"include_volumes": False},
    )
    webhook.fail_next = 1  # the notifier is retried by Temporal too
    backup = await run_backup(api, world, app, seconds=240)
    assert backup["status"] == "failed"
    assert "database" in backup["error_message"] and "refused" in backup["error_message"].lower()
    quota = next(s for s in backup["timeline"]["steps"] if s["step"] == "check_quota")
    assert quota["attempts"] > 1
    await _wait_webhook(webhook, backup["id"])


async def test_unavailable_storage_and_concurrent_trigger(
    api: ApiClient, world: World, app: App, settings: Settings, pve: Any
) -> None:
    owner = world.auth("owner")
    pve.delay(1.5)  # the quota check reads the storage status from PVE: keep the run going
    try:
        first = await expect(await api.post(app.backups, headers=owner), 202)
        problem = await expect(await api.post(app.backups, headers=owner), 409)
        assert first["workflow_id"] in problem["detail"]
        done = await wait_for(api, f"{app.backups}/{first['id']}", owner, finished, seconds=90)
    finally:
        pve.delay(0)
    assert done["status"] == "succeeded"
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE backup_storages SET status = 'unavailable', status_message ="
            " 'NFS server not responding' WHERE id = %s",
            (app.storage,),
        )
    failed = await run_backup(api, world, app)
    assert failed["status"] == "failed"
    assert "unavailable: NFS server not responding" in failed["error_message"]


async def test_idempotency_key_returns_the_same_run(api: ApiClient, world: World, app: App) -> None:
    headers = {**world.auth("owner"), "Idempotency-Key": "nightly-2026-11-27"}
    first = await expect(await api.post(app.backups, headers=headers), 202)
    again = await expect(await api.post(app.backups, headers=headers), 202)
    assert again["id"] == first["id"] and again["workflow_id"] == first["workflow_id"]
    await wait_for(api, f"{app.backups}/{first['id']}", headers, finished, seconds=90)
    bad = {**world.auth("owner"), "Idempotency-Key": "no spaces allowed"}
    await expect(await api.post(app.backups, headers=bad), 422)


async def test_cancel_mid_run_ends_cancelled(
    api: ApiClient,
    world: World,
    app: App,
    pve: Any,
    webhook: WebhookReceiver,
    temporal_client: Client,
) -> None:
    owner = world.auth("owner")
    pve.delay(3)
    try:
        started = await expect(await api.post(app.backups, headers=owner), 202)
        await asyncio.sleep(1)
        await expect(await api.post(f"{app.backups}/{started['id']}/cancel", headers=owner), 202)
        done = await wait_for(api, f"{app.backups}/{started['id']}", owner, finished, seconds=60)
    finally:
        pve.delay(0)
    assert done["status"] == "cancelled" and "cancelled during" in done["error_message"]
    await histories.record(temporal_client, done["workflow_id"], "backup-cancelled")
    await expect(await api.post(f"{app.backups}/{started['id']}/cancel", headers=owner), 409)
    await _wait_webhook(webhook, started["id"])


async def test_scheduled_run_matches_a_manual_one(
    api: ApiClient, world: World, app: App, temporal_client: Client
) -> None:
    owner = world.auth("owner")
    await expect(await api.post(f"{app.policy}/trigger", headers=owner), 202)
    done = None
    for _ in range(300):
        listed = await expect(await api.get(app.backups, headers=owner), 200)
        if listed["items"] and listed["items"][0]["status"] in TERMINAL:
            done = listed["items"][0]
            break
        await asyncio.sleep(0.3)
    assert done is not None and done["status"] == "succeeded", done
    assert done["trigger"] == "schedule"
    assert done["workflow_id"].startswith(f"backup-policy-{app.id}")
    assert done["schedule_id"] == f"backup-policy-{app.id}"
    assert {p["part"] for p in done["metadata"]["parts"]} == {
        "database",
        "volume:media",
        "volume:uploads",
    }


async def _sweep(temporal_client: Client, name: str) -> dict[str, list[str]]:
    """Runs the daily retention sweep now: it, not the backup, forgets and prunes."""
    from contracts.task_queues import CONTROL_TASK_QUEUE
    from workflows.retention import RetentionSweepWorkflow

    return await temporal_client.execute_workflow(
        RetentionSweepWorkflow.run, id=f"test-sweep-{name}", task_queue=CONTROL_TASK_QUEUE
    )


async def test_retention_prunes_expired_backups_but_never_the_newest_good_one(
    api: ApiClient, world: World, app: App, settings: Settings, temporal_client: Client
) -> None:
    owner = world.auth("owner")
    runs = [await run_backup(api, world, app) for _ in range(3)]
    assert all(r["status"] == "succeeded" for r in runs)
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE backup_executions SET started_at = now() - interval '40 days',"
            " completed_at = now() - interval '40 days' + interval '1 second' * "
            " array_position(%s::uuid[], id) WHERE id = ANY(%s::uuid[])",
            ([r["id"] for r in runs], [r["id"] for r in runs]),
        )
    fourth = await run_backup(api, world, app)
    assert fourth["status"] == "succeeded"
    await _sweep(temporal_client, fourth["id"])
    statuses = {
        b["id"]: b["status"]
        for b in (await expect(await api.get(app.backups, headers=owner), 200))["items"]
    }
    assert [statuses[r["id"]] for r in runs] == ["pruned", "pruned", "pruned"]
    assert statuses[fourth["id"]] == "succeeded"
    out = cli(settings, "admin", "--token", world.tokens["platform_admin"], "repo-password", app.id)
    repo = out.split("repository: ")[1].split()[0]
    password = out.split("password:   ")[1].split()[0]
    tags = {
        t
        for s in json.loads(restic(repo, password, "snapshots", "--json").stdout)
        for t in s["tags"]
        if t.startswith("execution=")
    }
    assert tags == {f"execution={fourth['id']}"}
    # with every backup expired, the newest good one stays
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE backup_executions SET started_at = now() - interval '90 days' WHERE id = %s",
            (fourth["id"],),
        )
        conn.execute(
            "UPDATE backup_policies SET retention_days = 1 WHERE application_id = %s", (app.id,)
        )
    await _fail_next_backup(api, world, app, settings)
    await _sweep(temporal_client, f"{fourth['id']}-again")
    statuses = {
        b["id"]: b["status"]
        for b in (await expect(await api.get(app.backups, headers=owner), 200))["items"]
    }
    assert statuses[fourth["id"]] == "succeeded"


async def _fail_next_backup(api: ApiClient, world: World, app: App, settings: Settings) -> None:
    """A run that fails in the quota check still leaves the newest good backup alone."""
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE backup_storages SET status = 'unavailable' WHERE id = %s", (app.storage,)
        )
    failed = await run_backup(api, world, app)
    assert failed["status"] == "failed"
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute("UPDATE backup_storages SET status = 'active' WHERE id = %s", (app.storage,))


async def test_rules_of_the_backup_api(
    api: ApiClient, world: World, app: App, settings: Settings
) -> None:
    await expect(await api.post(app.backups, headers=world.auth("member")), 403)
    await expect(await api.post(app.backups, headers=world.auth("other_admin")), 404)
    await expect(await api.get(app.backups, headers=world.auth("other_admin")), 404)
    await expect(await api.get(f"{app.backups}?status=bogus", headers=world.auth("member")), 422)
    await expect(await api.get(f"{app.backups}/not-a-uuid", headers=world.auth("member")), 422)
    foreign = f"/api/v1/applications/{world.apps['b']}/backups"
    await expect(await api.get(foreign, headers=world.auth("owner")), 404)
    free = f"/api/v1/applications/{world.apps['free']}/backups"
    problem = await expect(await api.post(free, headers=world.auth("free_admin")), 403)
    assert problem["type"] == "/problems/plan-required"
    await expect(await api.delete(app.policy, headers=world.auth("owner")), 204)
    problem = await expect(await api.post(app.backups, headers=world.auth("owner")), 409)
    assert problem["type"] == "/problems/policy-required"


async def test_metrics_report_backups_and_storage(api: ApiClient, world: World, app: App) -> None:
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded"
    text = (await api.get("/metrics", headers=world.auth("platform_admin"))).text
    assert 'cairn_backups{status="succeeded",trigger="manual"}' in text
    assert f'application_id="{app.id}"' in text
    assert f'cairn_storage_capacity_bytes{{name="main",storage_id="{app.storage}"' in text
    from core import metrics as worker_metrics

    assert worker_metrics.BACKUPS_SUCCEEDED.labels("manual")._value.get() >= 1


async def test_daily_sweep_prunes_expired_backups_without_a_new_backup(
    api: ApiClient, world: World, app: App, settings: Settings, temporal_client: Client
) -> None:
    old, new = await run_backup(api, world, app), await run_backup(api, world, app)
    assert old["status"] == new["status"] == "succeeded"
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE backup_executions SET started_at = now() - interval '40 days' WHERE id = %s",
            (old["id"],),
        )
    swept = await _sweep(temporal_client, old["id"])
    assert [old["id"]] in swept.values()
    statuses = {
        b["id"]: b["status"]
        for b in (await expect(await api.get(app.backups, headers=world.auth("owner")), 200))[
            "items"
        ]
    }
    assert (statuses[old["id"]], statuses[new["id"]]) == ("pruned", "succeeded")


async def test_the_timeline_shows_the_running_step_as_running(
    api: ApiClient, world: World, database_server: PostgresServer, tmp_path: Path
) -> None:
    """History has only the Scheduled event of an executing (retryable) activity; the
    timeline still shows the upload running, with its start time and attempt."""
    app = await make_app(api, world, database_server, tmp_path, policy={"include_database": False})
    # restic takes a few seconds over it: many times the API's window for sharing a running
    # run's read (api/runs.py POLL_FRESH_SECONDS)
    random_file(app.volumes["uploads"] / "bulk.bin", 300)
    owner = world.auth("owner")
    accepted = await expect(await api.post(app.backups, headers=owner), 202)
    url = f"{app.backups}/{accepted['id']}"
    seen: dict[str, Any] | None = None
    body: dict[str, Any] = {}
    for _ in range(600):  # at most about two minutes
        body = await expect(await api.get(url, headers=owner), 200)
        steps = (body.get("timeline") or {}).get("steps", [])
        seen = next(
            (s for s in steps if s["step"] == "upload_volume" and s["status"] == "running"), None
        )
        if seen is not None or finished(body):
            break
        await asyncio.sleep(0.1)
    assert seen is not None, f"no upload step was ever shown running: {body.get('timeline')}"
    assert seen["started_at"] is not None and seen["completed_at"] is None
    assert seen["started_at"] >= seen["scheduled_at"] and seen["attempts"] == 1
    done = await wait_for(api, url, owner, finished, seconds=120)
    assert done["status"] == "succeeded", done["error_message"]
    uploads = [s for s in done["timeline"]["steps"] if s["step"] == "upload_volume"]
    assert uploads and all(s["status"] == "completed" and s["started_at"] for s in uploads)
