"""Restore drills end to end: real backups restored into scratch copies, proven, removed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.drill import DrillActivities
from adapters.local_platform import drills_folder, scratch_database
from adapters.restic import Restic
from contracts.task_queues import CONTROL_TASK_QUEUE
from core.settings import Settings
from db.models import BackupRepository
from db.session import make_engine, make_sessionmaker
from devstack.postgres import PostgresServer
from repository.store import read_password
from tests.support import histories
from tests.support.api import ApiClient, World, expect, wait_for
from tests.support.backups import (
    TERMINAL,
    App,
    damage,
    finished,
    make_app,
    run_backup,
    table_hashes,
    tree_hashes,
)
from tests.support.database import libpq_url
from tests.support.webhook import WebhookReceiver
from workflows.reconcile import ReconcileSchedulesWorkflow

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

PASSING = [
    {"name": "all items", "sql": "SELECT count(*) = 200 FROM items"},
    {"name": "odd table", "sql": """SELECT EXISTS (SELECT 1 FROM "Odd Name" WHERE k = 'a')"""},
]


def drills_url(app: App) -> str:
    return f"/api/v1/applications/{app.id}/drills"


def drill_policy_url(app: App) -> str:
    return f"/api/v1/applications/{app.id}/drill-policy"


def app_state(app: App) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    return table_hashes(app.db_url), {n: tree_hashes(p) for n, p in app.volumes.items()}


def scratch_left(pg: PostgresServer, settings: Settings, drill_id: str) -> list[str]:
    """The drill's scratch database and folder, if either still exists."""
    with psycopg.connect(pg.url("postgres", driver="postgresql")) as conn:
        found = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = %s", (scratch_database(drill_id),)
        ).fetchall()
    left = [str(row[0]) for row in found]
    folder = drills_folder(settings) / drill_id
    return left + ([str(folder)] if folder.exists() else [])


async def run_drill(api: ApiClient, world: World, app: App) -> Any:
    accepted = await expect(await api.post(drills_url(app), headers=world.auth("owner")), 202)
    assert accepted["workflow_id"] == f"drill-{accepted['id']}"
    assert accepted["trigger"] == "manual"
    return await wait_for(
        api, f"{drills_url(app)}/{accepted['id']}", world.auth("owner"), finished, seconds=120
    )


def audit_actions(settings: Settings, target_id: str) -> list[str]:
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT action FROM audit_events WHERE target_id = %s ORDER BY occurred_at",
            (target_id,),
        ).fetchall()
    return [str(row[0]) for row in rows]


async def wait_for_events(webhook: WebhookReceiver, subject: str) -> list[dict[str, Any]]:
    for _ in range(100):
        if webhook.for_execution(subject):
            break
        await asyncio.sleep(0.1)
    return webhook.for_execution(subject)


@pytest.fixture
async def backed_up(
    api: ApiClient, world: World, database_server: PostgresServer, tmp_path: Path
) -> tuple[App, dict[str, Any]]:
    app = await make_app(api, world, database_server, tmp_path)
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup["error_message"]
    return app, backup


async def test_a_drill_restores_verifies_times_and_removes_its_copy(
    api: ApiClient,
    world: World,
    backed_up: tuple[App, dict[str, Any]],
    settings: Settings,
    database_server: PostgresServer,
    temporal_client: Client,
) -> None:
    app, backup = backed_up
    before = app_state(app)
    body = {"schedule": "0 4 * * 0", "checks": PASSING}
    await expect(await api.put(drill_policy_url(app), json=body, headers=world.auth("owner")), 201)
    drill = await run_drill(api, world, app)
    assert drill["status"] == "succeeded", drill["error_message"]
    assert drill["backup_id"] == backup["id"]
    assert drill["recovery_seconds"] > 0
    manifest = backup["metadata"]
    dump = next(p["bytes_processed"] for p in manifest["parts"] if p["part"] == "database")
    assert drill["bytes_restored"] == dump + sum(v["bytes"] for v in manifest["volumes"].values())
    assert drill["checks"] == [
        {"name": "all items", "outcome": "passed", "message": "returned true"},
        {"name": "odd table", "outcome": "passed", "message": "returned true"},
    ]
    steps = [s["step"] for s in drill["timeline"]["steps"]]
    assert steps == [
        "begin_drill",
        "verify_drill_backup",
        "restore_drill_database",
        "restore_drill_volume",
        "restore_drill_volume",
        "verify_drill",
        "run_drill_checks",
        "finish_drill",
        "clean_up_drill",
    ]
    assert "removed" in drill["cleanup"]
    assert scratch_left(database_server, settings, drill["id"]) == []
    assert app_state(app) == before
    assert audit_actions(settings, drill["id"]) == [
        "drill.request",
        "drill.start",
        "drill.succeeded",
    ]
    shown = await expect(
        await api.get(f"{app.backups}/{backup['id']}", headers=world.auth("member")), 200
    )
    assert shown["last_verified_by_drill_at"] == drill["completed_at"]
    listed = await expect(await api.get(app.backups, headers=world.auth("member")), 200)
    assert [b["last_verified_by_drill_at"] for b in listed["items"]] == [drill["completed_at"]]
    page = await expect(await api.get(drills_url(app), headers=world.auth("member")), 200)
    assert [d["id"] for d in page["items"]] == [drill["id"]]
    metrics = (await api.get("/metrics", headers=world.auth("platform_admin"))).text.splitlines()
    for family in ("cairn_drill_recovery_seconds", "cairn_drill_last_success_timestamp_seconds"):
        assert [line for line in metrics if line.startswith(family) and app.id in line], family
    await histories.record(temporal_client, drill["workflow_id"], "drill-succeeded")


async def test_a_false_or_writing_check_fails_the_drill_naming_it(
    api: ApiClient,
    world: World,
    backed_up: tuple[App, dict[str, Any]],
    settings: Settings,
    database_server: PostgresServer,
    webhook: WebhookReceiver,
    temporal_client: Client,
) -> None:
    app, _ = backed_up
    before = app_state(app)
    checks = [
        *PASSING,
        {"name": "no items", "sql": "SELECT count(*) = 0 FROM items"},
        {"name": "sneaky write", "sql": "WITH d AS (DELETE FROM items RETURNING 1) SELECT true"},
        {"name": "two statements", "sql": "COMMIT; DELETE FROM items"},
    ]
    await expect(
        await api.put(
            drill_policy_url(app),
            json={"schedule": "@weekly", "checks": checks},
            headers=world.auth("owner"),
        ),
        201,
    )
    drill = await run_drill(api, world, app)
    assert drill["status"] == "failed"
    message = drill["error_message"]
    assert message.startswith("checks: check 'no items' failed (returned false)"), message
    assert "check 'sneaky write' error" in message and "read-only transaction" in message
    assert "check 'two statements' error" in message
    outcomes = {c["name"]: c["outcome"] for c in drill["checks"]}
    assert outcomes == {
        "all items": "passed",
        "odd table": "passed",
        "no items": "failed",
        "sneaky write": "error",
        "two statements": "error",
    }
    assert drill["recovery_seconds"] is None and drill["bytes_restored"] > 0
    assert scratch_left(database_server, settings, drill["id"]) == []
    assert app_state(app) == before
    events = await wait_for_events(webhook, drill["id"])
    assert [e["event"] for e in events] == ["drill.failed"]
    assert audit_actions(settings, drill["id"])[-1] == "drill.failed"
    backup = (await expect(await api.get(app.backups, headers=world.auth("owner")), 200))["items"]
    assert backup[0]["last_verified_by_drill_at"] is None
    await histories.record(temporal_client, drill["workflow_id"], "drill-check-failed")


async def test_a_damaged_pack_fails_the_drill_at_verification(
    api: ApiClient,
    world: World,
    backed_up: tuple[App, dict[str, Any]],
    settings: Settings,
    database_server: PostgresServer,
    webhook: WebhookReceiver,
) -> None:
    app, backup = backed_up
    before = app_state(app)
    packs = [p for p in Path(backup["backup_path"], "data").rglob("*") if p.is_file()]
    pack = max(packs, key=lambda p: p.stat().st_size)
    damage(pack)
    drill = await run_drill(api, world, app)
    assert drill["status"] == "failed"
    assert "the backup failed verification" in drill["error_message"], drill["error_message"]
    assert "ciphertext verification failed" in drill["error_message"]
    assert scratch_left(database_server, settings, drill["id"]) == []
    assert app_state(app) == before
    assert [e["event"] for e in await wait_for_events(webhook, drill["id"])] == ["drill.failed"]


async def test_a_backup_runs_beside_a_drill(
    api: ApiClient,
    world: World,
    backed_up: tuple[App, dict[str, Any]],
    settings: Settings,
    database_server: PostgresServer,
) -> None:
    app, first = backed_up
    owner = world.auth("owner")
    before = app_state(app)
    # the check keeps the drill live for seconds after its restore: the 409 below is sure
    slow = {
        "schedule": "@weekly",
        "checks": [{"name": "slow", "sql": "SELECT pg_sleep(3) IS NOT NULL"}],
    }
    await expect(await api.put(drill_policy_url(app), json=slow, headers=owner), 201)
    keyed = {**owner, "Idempotency-Key": "drill-once"}
    drill = await expect(await api.post(drills_url(app), headers=keyed), 202)
    backup = await expect(await api.post(app.backups, headers=owner), 202)
    # a retried request returns the same drill; a new one waits for the running drill
    again = await expect(await api.post(drills_url(app), headers=keyed), 202)
    assert again["id"] == drill["id"]
    problem = await expect(await api.post(drills_url(app), headers=owner), 409)
    assert problem["running_workflow_id"] == drill["workflow_id"]
    done = await wait_for(api, f"{drills_url(app)}/{drill['id']}", owner, finished, seconds=120)
    second = await wait_for(api, f"{app.backups}/{backup['id']}", owner, finished, seconds=120)
    assert done["status"] == "succeeded", done["error_message"]
    assert second["status"] == "succeeded", second["error_message"]
    assert done["backup_id"] == first["id"]
    assert scratch_left(database_server, settings, drill["id"]) == []
    assert app_state(app) == before


async def test_a_cancelled_drill_ends_cancelled_and_removes_its_copy(
    api: ApiClient,
    world: World,
    backed_up: tuple[App, dict[str, Any]],
    settings: Settings,
    database_server: PostgresServer,
    webhook: WebhookReceiver,
    temporal_client: Client,
) -> None:
    app, _ = backed_up
    owner = world.auth("owner")
    slow = [{"name": "slow", "sql": "SELECT pg_sleep(45) IS NOT NULL"}]
    body = {"schedule": "@weekly", "checks": slow}
    await expect(await api.put(drill_policy_url(app), json=body, headers=owner), 201)
    accepted = await expect(await api.post(drills_url(app), headers=owner), 202)
    path = f"{drills_url(app)}/{accepted['id']}"

    def checking(drill: dict[str, Any]) -> bool:
        steps = (drill.get("timeline") or {}).get("steps", [])
        return any(s["step"] == "run_drill_checks" and s["started_at"] for s in steps)

    await wait_for(api, path, owner, checking, seconds=120)
    # the scratch copy exists while the checks run, its folder for the worker's user only
    assert len(scratch_left(database_server, settings, accepted["id"])) == 2
    assert (drills_folder(settings) / accepted["id"]).stat().st_mode & 0o777 == 0o700
    await temporal_client.get_workflow_handle(accepted["workflow_id"]).cancel()
    drill = await wait_for(api, path, owner, finished, seconds=60)
    assert drill["status"] == "cancelled", drill
    assert drill["error_message"] == "cancelled during checks"
    assert drill["cleanup"] == "scratch database and folder removed"
    assert scratch_left(database_server, settings, drill["id"]) == []
    assert [e["event"] for e in await wait_for_events(webhook, drill["id"])] == ["drill.cancelled"]
    assert audit_actions(settings, drill["id"])[-1] == "drill.cancelled"
    await histories.record(temporal_client, drill["workflow_id"], "drill-cancelled")


async def test_what_a_terminated_drill_left_goes_with_the_next_drill(
    api: ApiClient,
    world: World,
    backed_up: tuple[App, dict[str, Any]],
    settings: Settings,
    database_server: PostgresServer,
    webhook: WebhookReceiver,
    temporal_client: Client,
) -> None:
    """A workflow terminated in Temporal runs no cleanup; the application's next drill does."""
    app, _ = backed_up
    owner = world.auth("owner")
    accepted = await expect(await api.post(drills_url(app), headers=owner), 202)
    await temporal_client.get_workflow_handle(accepted["workflow_id"]).terminate(reason="ops")
    stopped = await expect(await api.get(f"{drills_url(app)}/{accepted['id']}", headers=owner), 200)
    assert (
        stopped["status"] == "failed" and "terminated in Temporal: ops" in stopped["error_message"]
    )
    assert [e["event"] for e in await wait_for_events(webhook, stopped["id"])] == ["drill.failed"]
    # what a restore cut off by the termination would have left
    database_server.create_database(scratch_database(stopped["id"]))
    (drills_folder(settings) / stopped["id"] / "uploads").mkdir(parents=True)
    assert len(scratch_left(database_server, settings, stopped["id"])) == 2
    drill = await run_drill(api, world, app)
    assert drill["status"] == "succeeded", drill["error_message"]
    assert scratch_left(database_server, settings, stopped["id"]) == []
    assert scratch_left(database_server, settings, drill["id"]) == []
    earlier = await expect(await api.get(f"{drills_url(app)}/{stopped['id']}", headers=owner), 200)
    assert f"by the cleanup of drill {drill['id']}" in earlier["cleanup"]


def repository_env(settings: Settings, app: App) -> dict[str, str]:
    """restic's environment for the application's repository (its password opened)."""
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        found = conn.execute(
            "SELECT storage_id, password_sealed FROM backup_repositories WHERE application_id = %s",
            (app.id,),
        ).fetchone()
    assert found is not None
    row = BackupRepository(
        application_id=uuid.UUID(app.id), storage_id=found[0], password_sealed=found[1]
    )
    return {**os.environ, "RESTIC_PASSWORD": read_password(settings, row)}


async def test_a_drill_reads_while_a_writer_holds_the_repository_lock(
    api: ApiClient,
    world: World,
    backed_up: tuple[App, dict[str, Any]],
    settings: Settings,
    database_server: PostgresServer,
) -> None:
    """A backup holds restic's (shared) lock for its whole upload; the drill goes on beside it."""
    app, backup = backed_up
    env, repo = repository_env(settings, app), backup["backup_path"]
    writer = subprocess.Popen(
        [
            "restic",
            "--repo",
            repo,
            "backup",
            "--stdin",
            "--stdin-filename",
            "slow.bin",
            "--tag",
            "test=writer",
            "--quiet",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert writer.stdin is not None
        writer.stdin.write(b"still writing " * 1000)
        writer.stdin.flush()
        for _ in range(100):
            locks = subprocess.run(
                ["restic", "--repo", repo, "--no-lock", "list", "locks"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            if locks:
                break
            await asyncio.sleep(0.1)
        assert locks, "the writer never took its lock"
        drill = await run_drill(api, world, app)
        assert drill["status"] == "succeeded", drill["error_message"]
        assert writer.poll() is None  # the writer still holds its lock
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        assert writer.wait(timeout=60) == 0
    assert scratch_left(database_server, settings, drill["id"]) == []


async def test_a_drill_policy_is_a_schedule_in_the_policy_time_zone(
    api: ApiClient,
    world: World,
    backed_up: tuple[App, dict[str, Any]],
    settings: Settings,
    database_server: PostgresServer,
    temporal_client: Client,
) -> None:
    app, backup = backed_up
    owner = world.auth("owner")
    url = drill_policy_url(app)
    sid = f"restore-drill-{app.id}"
    body = {"schedule": "0 4 * * 0", "enabled": False, "checks": PASSING[:1]}
    created = await expect(await api.put(url, json=body, headers=owner), 201)
    assert created["timezone"] == "UTC" and created["schedule_id"] == sid
    assert created["schedule_state"]["paused"] is True
    handle = temporal_client.get_schedule_handle(sid)
    # the policy's time zone moves the drill schedule with it
    policy = {"storage_id": app.storage, "schedule": "0 3 * * *", "timezone": "Europe/Berlin"}
    await expect(await api.post(app.policy, json=policy, headers=owner), 200)
    described = await handle.describe()
    assert described.schedule.spec.time_zone_name == "Europe/Berlin"
    (calendar,) = described.schedule.spec.calendars  # Temporal's reading of "0 4 * * 0"
    assert [r.start for r in calendar.hour] == [4] and [r.start for r in calendar.day_of_week] == [
        0
    ]
    # drift: the schedule deleted by hand is recreated by the reconciler
    await handle.delete()
    reconcile_id = f"reconcile-{uuid.uuid4()}"
    report = await temporal_client.execute_workflow(
        ReconcileSchedulesWorkflow.run, id=reconcile_id, task_queue=CONTROL_TASK_QUEUE
    )
    await histories.record(temporal_client, reconcile_id, "policy-schedules-reconcile")
    assert sid in report["created"]
    assert (await handle.describe()).schedule.state.paused is True
    # a scheduled drill makes its own row and proves the newest backup
    await expect(await api.put(url, json={**body, "enabled": True}, headers=owner), 200)
    await handle.trigger()
    listed = await wait_for(
        api,
        drills_url(app),
        owner,
        lambda page: page["items"] and finished_drill(page["items"][0]),
        seconds=120,
    )
    drill = listed["items"][0]
    assert drill["trigger"] == "schedule" and drill["schedule_id"] == sid
    assert drill["status"] == "succeeded", drill["error_message"]
    assert drill["backup_id"] == backup["id"]
    assert drill["checks"][0]["outcome"] == "passed"
    assert scratch_left(database_server, settings, drill["id"]) == []
    await expect(await api.delete(url, headers=owner), 204)
    assert (await api.get(url, headers=owner)).status_code == 404
    assert sid not in [s.id async for s in await temporal_client.list_schedules()]


def finished_drill(drill: dict[str, Any]) -> bool:
    """Ended, and its scratch copy dealt with (the cleanup writes its note last)."""
    return drill["status"] in TERMINAL and drill["cleanup"] is not None


async def test_rules_of_the_drill_api(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    settings: Settings,
    temporal_client: Client,
    webhook: WebhookReceiver,
) -> None:
    app = await make_app(api, world, database_server, tmp_path)
    owner, member = world.auth("owner"), world.auth("member")
    problem = await expect(await api.post(drills_url(app), headers=owner), 409)
    assert problem["type"] == "/problems/no-backup"
    await expect(await api.post(drills_url(app), headers=member), 403)
    await expect(await api.get(drills_url(app), headers=world.auth("other_admin")), 404)
    await expect(await api.get(drill_policy_url(app), headers=world.auth("other_admin")), 404)
    await expect(await api.get(f"{drills_url(app)}/{uuid.uuid4()}", headers=member), 404)
    url = drill_policy_url(app)
    await expect(await api.put(url, json={"schedule": "@daily"}, headers=member), 403)
    many = [{"name": f"c{i}", "sql": "SELECT true"} for i in range(21)]
    for body, mention in [
        ({"schedule": "* * * * *"}, "fires every 1 minute"),
        ({"schedule": "0 3 30 2 *"}, "never fires"),
        ({"schedule": "@daily", "checks": many}, "checks"),
        ({"schedule": "@daily", "checks": [{"name": "x", "sql": "  "}]}, "not only spaces"),
        ({"schedule": "@daily", "checks": [{"name": "", "sql": "SELECT true"}]}, "name"),
        ({"schedule": "@daily", "checks": [{"name": "x", "sql": "x" * 4001}]}, "sql"),
        ({"schedule": "@daily", "checks": [PASSING[0], PASSING[0]]}, "unique"),
        ({"schedule": "@daily", "checks": [{"name": "x", "sql": "SELECT true", "db": 1}]}, "db"),
        ({"schedule": "@daily", "retention": 3}, "retention"),
    ]:
        response = await api.put(url, json=body, headers=owner)
        assert response.status_code == 422 and mention in response.text, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert (await api.get(url, headers=owner)).status_code == 404
    assert drill_audits(settings, app.workspace) == []
    # drills run in the backup policy's time zone and go with the policy
    await expect(await api.put(url, json={"schedule": "@daily"}, headers=owner), 201)
    assert drill_audits(settings, app.workspace) == ["drill_policy.create"]
    # a scheduled drill without any backup to restore fails, says why and alerts
    sid = f"restore-drill-{app.id}"
    await temporal_client.get_schedule_handle(sid).trigger()
    listed = await wait_for(
        api,
        drills_url(app),
        owner,
        lambda page: page["items"] and page["items"][0]["status"] in TERMINAL,
        seconds=60,
    )
    drill = listed["items"][0]
    assert drill["status"] == "failed" and drill["trigger"] == "schedule"
    assert drill["backup_id"] is None and drill["cleanup"] is None  # nothing was restored
    assert drill["error_message"] == (
        "begin: the application has no successful backup to drill; take a backup first"
    )
    assert [e["event"] for e in await wait_for_events(webhook, drill["id"])] == ["drill.failed"]
    await expect(await api.delete(app.policy, headers=owner), 204)
    assert (await api.get(url, headers=owner)).status_code == 404
    assert sid not in [s.id async for s in await temporal_client.list_schedules()]
    problem = await expect(await api.put(url, json={"schedule": "@daily"}, headers=owner), 409)
    assert problem["type"] == "/problems/policy-required"


def drill_audits(settings: Settings, workspace_id: str) -> list[str]:
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT action FROM audit_events WHERE workspace_id = %s AND action LIKE 'drill%%'"
            " ORDER BY occurred_at",
            (workspace_id,),
        ).fetchall()
    return [str(row[0]) for row in rows]


async def test_cleanup_after_the_application_was_deleted_removes_the_scratch_folder(
    settings: Settings,
) -> None:
    """Deleting an application takes its drill rows along; the worker's own scratch folder of
    a drill still running then is all that is left, and the drill's cleanup removes it."""
    drill_id = str(uuid.uuid4())
    folder = drills_folder(settings) / drill_id
    (folder / "uploads").mkdir(parents=True)
    (folder / "uploads" / "file").write_bytes(b"restored")
    engine = make_engine(settings.database_url)
    try:
        activities = DrillActivities(
            make_sessionmaker(engine), settings, Restic(settings.restic_bin)
        )
        await ActivityEnvironment().run(activities.clean_up_drill, drill_id)
    finally:
        await engine.dispose()
    assert not folder.exists()
