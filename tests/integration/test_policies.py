"""Backup policies as Temporal Schedules, checked with the official Temporal CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError

from core.settings import Settings
from devstack.temporal import cli_path
from tests.conftest import free_port
from tests.support.api import ApiClient, World, expect, new_workspace, running_app, wait_for
from tests.support.database import libpq_url, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


class Setup:
    def __init__(self, ws: str, app: str, storage: str) -> None:
        self.ws, self.app, self.storage = ws, app, storage
        self.url = f"/api/v1/applications/{app}/backup-policy"


SHOP_DATABASE = "postgresql://shop:s3cret-pw@127.0.0.1:5432/shop"


async def make_setup(
    api: ApiClient, world: World, *, platform: dict[str, Any] | None = None
) -> Setup:
    """A workspace with an active storage and an application (by default one with a database)."""
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
                "name": "shop",
                "owner_id": world.users["owner"],
                "platform": platform or {"kind": "local", "database_url": SHOP_DATABASE},
            },
            headers=world.auth("platform_admin"),
        ),
        201,
    )
    return Setup(ws, app["id"], accepted["id"])


@pytest.fixture
async def setup(api: ApiClient, world: World) -> Setup:
    return await make_setup(api, world)


def describe(settings: Settings, schedule_id: str) -> dict[str, Any] | None:
    """``temporal schedule describe`` (the official CLI), as JSON; None when absent."""
    result = subprocess.run(
        [
            cli_path(),
            "schedule",
            "describe",
            "--schedule-id",
            schedule_id,
            "--address",
            settings.temporal_address,
            "--namespace",
            settings.temporal_namespace,
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        assert "not found" in (result.stderr + result.stdout).lower(), result.stderr
        return None
    return dict(json.loads(result.stdout))


def calendar(described: dict[str, Any]) -> dict[str, Any]:
    """minute, hour and day of week of the compiled cron ('*' for every day)."""
    spec = described["schedule"]["spec"]["structuredCalendar"][0]

    def first(field: str) -> Any:
        ranges = spec[field]
        if ranges == [{"end": 6, "step": 1}]:
            return "*"
        return ranges[0].get("start", 0)

    return {"minute": first("minute"), "hour": first("hour"), "dayOfWeek": first("dayOfWeek")}


def policy(storage: str, **overrides: Any) -> dict[str, Any]:
    return {
        "storage_id": storage,
        "schedule": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "retention_days": 14,
        "backup_type": "incremental",
        **overrides,
    }


async def test_policy_lifecycle_is_mirrored_by_the_schedule(
    api: ApiClient, world: World, setup: Setup, settings: Settings
) -> None:
    owner = world.auth("owner")
    created = await expect(
        await api.post(setup.url, json=policy(setup.storage), headers=owner), 201
    )
    sid = f"backup-policy-{setup.app}"
    assert created["schedule_id"] == sid
    described = describe(settings, sid)
    assert described is not None
    assert calendar(described) == {"minute": 0, "hour": 3, "dayOfWeek": "*"}
    assert described["schedule"]["spec"]["timezoneName"] == "Europe/Berlin"
    assert described["schedule"]["policies"]["overlapPolicy"] == "SCHEDULE_OVERLAP_POLICY_SKIP"
    action = described["schedule"]["action"]["startWorkflow"]
    assert action["workflowType"]["name"] == "BackupWorkflow"
    assert action["taskQueue"]["name"] == "cairn-control"
    indexed = action["searchAttributes"]["indexedFields"]
    assert set(indexed) == {"WorkspaceId", "ApplicationId", "BackupTrigger"}
    assert described["schedule"]["state"].get("paused") in (None, False)
    state = created["schedule_state"]
    assert state["paused"] is False and len(state["next_runs"]) == 5
    first = datetime.fromisoformat(state["next_runs"][0])
    assert first.utcoffset() in (timedelta(hours=1), timedelta(hours=2)) and first.hour == 3

    updated = await expect(
        await api.post(setup.url, json=policy(setup.storage, schedule="30 1 * * 1"), headers=owner),
        200,
    )
    assert updated["schedule"] == "30 1 * * 1"
    assert datetime.fromisoformat(updated["schedule_state"]["next_runs"][0]).weekday() == 0
    described = describe(settings, sid)
    assert described is not None
    assert calendar(described) == {"minute": 30, "hour": 1, "dayOfWeek": 1}

    paused = await expect(
        await api.post(setup.url, json=policy(setup.storage, enabled=False), headers=owner), 200
    )
    assert paused["schedule_state"]["paused"] is True
    assert paused["schedule_state"]["note"].startswith("paused by owner-")
    described = describe(settings, sid)
    assert described is not None and described["schedule"]["state"]["paused"] is True
    resumed = await expect(
        await api.post(setup.url, json=policy(setup.storage, enabled=True), headers=owner), 200
    )
    assert resumed["schedule_state"]["paused"] is False

    read = await expect(await api.get(setup.url, headers=world.auth("member")), 200)
    assert read["retention_days"] == 14 and read["schedule_state"]["present"] is True

    await expect(await api.delete(setup.url, headers=owner), 204)
    assert describe(settings, sid) is None
    await expect(await api.get(setup.url, headers=owner), 404)


async def test_trigger_starts_a_backup_run_with_the_right_identity(
    api: ApiClient, world: World, setup: Setup, temporal_client: Client
) -> None:
    owner = world.auth("owner")
    created = await expect(
        await api.post(setup.url, json=policy(setup.storage), headers=owner), 201
    )
    accepted = await expect(await api.post(f"{setup.url}/trigger", headers=owner), 202)
    assert accepted["overlap"] == "skip"
    query = f"ApplicationId = '{setup.app}'"
    runs: list[Any] = []
    for _ in range(50):
        runs = [r async for r in temporal_client.list_workflows(query)]
        if runs:
            break
        await asyncio.sleep(0.2)
    assert len(runs) == 1
    run = runs[0]
    assert run.id.startswith(f"backup-policy-{setup.app}")
    assert run.workflow_type == "BackupWorkflow" and run.task_queue == "cairn-control"
    attrs = {k.name: v for k, v in ((p.key, p.value) for p in run.typed_search_attributes)}
    mine = {"WorkspaceId": setup.ws, "ApplicationId": setup.app, "BackupTrigger": "schedule"}
    assert {k: attrs[k] for k in mine} == mine
    history = await temporal_client.get_workflow_handle(run.id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    args = json.loads(started.input.payloads[0].data)
    assert args == {
        "application_id": setup.app,
        "workspace_id": setup.ws,
        "policy_id": created["id"],
        "storage_id": setup.storage,
        "trigger": "schedule",
        "backup_type": "incremental",
        "include_volumes": False,
        "include_database": True,
        "retention_days": 14,
        "execution_id": None,
    }
    # the run may have ended already (the test application's database does not exist)
    with contextlib.suppress(RPCError):
        await temporal_client.get_workflow_handle(run.id).terminate("test: not run to its end")


def invalid_policies(setup: Setup, other_storage: str) -> list[tuple[dict[str, Any], int, str]]:
    return [
        (policy(setup.storage, schedule="61 * * * *"), 422, "not a valid cron"),
        (policy(setup.storage, schedule="*/5 * * * *"), 422, "fires every 5 minutes"),
        (policy(setup.storage, schedule="0,5 3 * * *"), 422, "fires every 5 minutes"),
        (policy(setup.storage, schedule="0 3 * * * *"), 422, "five fields"),
        (policy(setup.storage, schedule="@every 1m"), 422, "unknown macro"),
        (policy(setup.storage, schedule=""), 422, "schedule"),
        (policy(setup.storage, timezone="Mars/Olympus"), 422, "unknown time zone"),
        (policy(setup.storage, retention_days=0), 422, "retention_days"),
        (policy(setup.storage, retention_days=3651), 422, "retention_days"),
        (policy(setup.storage, include_volumes=False, include_database=False), 422, "both false"),
        (policy(setup.storage, backup_type="differential"), 422, "backup_type"),
        (policy(str(uuid.uuid4())), 404, "does not exist"),
        (policy(other_storage), 404, "does not exist"),
        (policy("not-a-uuid"), 422, "storage_id"),
        ({**policy(setup.storage), "cron": "x"}, 422, "cron"),
    ]


async def test_invalid_policies_change_neither_database_nor_temporal(
    api: ApiClient, world: World, setup: Setup, settings: Settings
) -> None:
    other = await make_setup(api, world)
    before = snapshot(settings.database_url)
    failures = []
    for body, status, mention in invalid_policies(setup, other.storage):
        response = await api.post(setup.url, json=body, headers=world.auth("owner"))
        if response.status_code != status or mention not in response.text:
            failures.append(f"{body}: {response.status_code} {response.text}")
    assert not failures, "\n".join(failures)
    assert snapshot(settings.database_url) == before
    assert describe(settings, f"backup-policy-{setup.app}") is None


async def test_roles_plan_and_storage_state(
    api: ApiClient, world: World, setup: Setup, settings: Settings
) -> None:
    body = policy(setup.storage)
    await expect(await api.post(setup.url, json=body, headers=world.auth("member")), 403)
    await expect(await api.post(setup.url, json=body, headers=world.auth("other_admin")), 404)
    await expect(await api.get(setup.url, headers=world.auth("other_admin")), 404)
    free_url = f"/api/v1/applications/{world.apps['free']}/backup-policy"
    problem = await expect(
        await api.post(free_url, json=body, headers=world.auth("free_admin")), 403
    )
    assert problem["type"] == "/problems/plan-required"
    await expect(await api.post(setup.url, json=body, headers=world.auth("ws_admin")), 201)
    await expect(await api.post(f"{setup.url}/trigger", headers=world.auth("member")), 403)
    await expect(await api.delete(setup.url, headers=world.auth("member")), 403)
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE backup_storages SET status = 'error', status_message = 'PVE said no'"
            " WHERE id = %s",
            (setup.storage,),
        )
    problem = await expect(await api.post(setup.url, json=body, headers=world.auth("owner")), 409)
    assert "error: PVE said no" in problem["detail"]


async def test_temporal_down_answers_503_and_changes_nothing(
    world: World, setup: Setup, settings: Settings
) -> None:
    down = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    before = snapshot(settings.database_url)
    async with running_app(down) as client:
        problem = await expect(
            await client.post(setup.url, json=policy(setup.storage), headers=world.auth("owner")),
            503,
        )
    assert problem["type"] == "/problems/temporal-unavailable"
    assert snapshot(settings.database_url) == before


async def reconcile_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cli.main", "schedules", "reconcile"]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, check=True
    )


async def test_reconcile_repairs_every_kind_of_drift(
    api: ApiClient, world: World, setup: Setup, settings: Settings, temporal_client: Client
) -> None:
    owner = world.auth("owner")
    await expect(await api.post(setup.url, json=policy(setup.storage), headers=owner), 201)
    second = await make_setup(api, world)
    await expect(await api.post(second.url, json=policy(second.storage), headers=owner), 201)
    third = await make_setup(api, world)
    await expect(
        await api.post(third.url, json=policy(third.storage, enabled=False), headers=owner), 201
    )
    sid = f"backup-policy-{setup.app}"
    await temporal_client.get_schedule_handle(sid).delete()

    async def other_spec(update: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule = update.description.schedule
        schedule.spec = ScheduleSpec(cron_expressions=["*/1 * * * *"])
        assert isinstance(schedule.action, ScheduleActionStartWorkflow)
        schedule.action.memo = {"cairn_fingerprint": "edited by hand"}
        return ScheduleUpdate(schedule=schedule)

    await temporal_client.get_schedule_handle(f"backup-policy-{second.app}").update(other_spec)
    await temporal_client.get_schedule_handle(f"backup-policy-{third.app}").unpause()
    orphan = f"backup-policy-{uuid.uuid4()}"
    template = await temporal_client.get_schedule_handle(f"backup-policy-{third.app}").describe()
    await temporal_client.create_schedule(orphan, template.schedule)

    env = {
        **os.environ,
        "CAIRN_DATABASE_URL": settings.database_url,
        "CAIRN_TEMPORAL_ADDRESS": settings.temporal_address,
    }
    result = await reconcile_cli(env)
    report = json.loads(result.stdout)
    assert sid in report["created"]
    assert {f"backup-policy-{second.app}", f"backup-policy-{third.app}"} <= set(report["updated"])
    assert orphan in report["deleted"]
    assert describe(settings, orphan) is None
    read = await expect(await api.get(second.url, headers=owner), 200)
    assert datetime.fromisoformat(read["schedule_state"]["next_runs"][1]) - datetime.fromisoformat(
        read["schedule_state"]["next_runs"][0]
    ) == timedelta(days=1)
    assert (await expect(await api.get(third.url, headers=owner), 200))["schedule_state"]["paused"]
    again = await reconcile_cli(env)
    assert json.loads(again.stdout)["created"] == [] and json.loads(again.stdout)["updated"] == []


NEVER_OR_MALFORMED = [
    ("0 3 30 2 *", "this schedule never fires (no 30 February)"),
    ("0 0 31 4 *", "this schedule never fires (no 31 April)"),
    ("0 0 30 2 1", "this schedule never fires (no 30 February)"),
    ("*/0 * * * *", "not a valid cron expression"),
    ("60 * * * *", "not a valid cron expression"),
    ("* * * * * *", "five fields"),
    ("@reboot", "unknown macro"),
    ("0 3 * * 1#2", "not supported"),
    ("0 3 L * *", "not supported"),
    ("\u00e9 3 * * *", "not a valid cron expression"),
    ("\uff10 3 * * *", "not a valid cron expression"),  # fullwidth zero
    ("0 3 * * *\u2028", "surrounding spaces"),
    ("0 " * 49 + "0", "five fields"),
]


@pytest.mark.parametrize(("schedule", "message"), NEVER_OR_MALFORMED)
async def test_a_schedule_that_never_fires_or_cannot_be_read_is_422(
    api: ApiClient,
    world: World,
    setup: Setup,
    settings: Settings,
    unchanged: None,
    schedule: str,
    message: str,
) -> None:
    response = await api.post(
        setup.url, json=policy(setup.storage, schedule=schedule), headers=world.auth("owner")
    )
    problem = await expect(response, 422)
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["type"] == "/problems/validation-error"
    assert [e["field"] for e in problem["errors"]] == ["body.schedule"]
    assert message in problem["errors"][0]["message"]
    assert describe(settings, f"backup-policy-{setup.app}") is None


@pytest.mark.parametrize("schedule", ["", "0 3 * * *" + " " * 200, "1" * 5000])
async def test_empty_and_oversized_schedules_are_422(
    api: ApiClient, world: World, setup: Setup, unchanged: None, schedule: str
) -> None:
    problem = await expect(
        await api.post(
            setup.url, json=policy(setup.storage, schedule=schedule), headers=world.auth("owner")
        ),
        422,
    )
    assert problem["type"] == "/problems/validation-error"
    assert [e["field"] for e in problem["errors"]] == ["body.schedule"]


async def test_temporal_runs_the_schedule_the_validator_read(
    api: ApiClient, world: World, setup: Setup
) -> None:
    """The interval check and Temporal agree on when an accepted schedule fires."""
    from zoneinfo import ZoneInfo

    from schedules.cron import next_times

    owner = world.auth("owner")
    for schedule in (
        "0 0 13 * 5",
        "0 3 * * mon-fri",
        "15 1-5/2 * * *",
        "0 3 * jan *",
        "0 3 * * 7",
        "@weekly",
        "0 0 29 2 *",
    ):
        response = await api.post(
            setup.url, json=policy(setup.storage, schedule=schedule), headers=owner
        )
        assert response.status_code in (200, 201), (schedule, response.text)
        body = response.json()
        temporal = [datetime.fromisoformat(t) for t in body["schedule_state"]["next_runs"]]
        ours = next_times(schedule, ZoneInfo("Europe/Berlin"), len(temporal))
        assert temporal and temporal == ours, (schedule, temporal, ours)


async def app_setup(
    api: ApiClient, world: World, tmp: Any, *, database: bool, volumes: bool
) -> Setup:
    """An application with or without a database and a volume folder."""
    platform: dict[str, Any] = {"kind": "local"}
    if database:
        platform["database_url"] = SHOP_DATABASE
    if volumes:
        folder = tmp / f"uploads-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True)
        platform["volumes"] = {"uploads": str(folder)}
    return await make_setup(api, world, platform=platform)


@pytest.mark.parametrize(("database", "volumes"), [(True, False), (False, True), (True, True)])
async def test_what_a_policy_includes_defaults_to_what_the_application_has(
    api: ApiClient, world: World, tmp_path: Any, database: bool, volumes: bool
) -> None:
    app = await app_setup(api, world, tmp_path, database=database, volumes=volumes)
    body = {"storage_id": app.storage, "schedule": "0 3 * * *"}
    created = await expect(await api.post(app.url, json=body, headers=world.auth("owner")), 201)
    assert (created["include_database"], created["include_volumes"]) == (database, volumes)


async def test_including_a_part_the_application_lacks_is_422_and_changes_nothing(
    api: ApiClient, world: World, tmp_path: Any, settings: Settings
) -> None:
    no_db = await app_setup(api, world, tmp_path, database=False, volumes=True)
    no_volumes = await app_setup(api, world, tmp_path, database=True, volumes=False)
    nothing = await app_setup(api, world, tmp_path, database=False, volumes=False)
    owner = world.auth("owner")
    before = snapshot(settings.database_url)
    cases = [
        (
            no_db,
            {"include_database": True},
            "body.include_database",
            "the application has no database; register one or set include_database false",
        ),
        (
            no_volumes,
            {"include_volumes": True},
            "body.include_volumes",
            "the application has no volumes; register one or set include_volumes false",
        ),
        (nothing, {}, "body", "neither a database nor volumes"),
        (no_db, {"include_volumes": False}, "body", "both false"),
    ]
    for app, extra, field, message in cases:
        body = {"storage_id": app.storage, "schedule": "0 3 * * *", **extra}
        problem = await expect(await api.post(app.url, json=body, headers=owner), 422)
        assert problem["type"] == "/problems/validation-error"
        assert [e["field"] for e in problem["errors"]] == [field], problem
        assert message in problem["errors"][0]["message"]
        assert describe(settings, f"backup-policy-{app.app}") is None
    assert snapshot(settings.database_url) == before


async def test_an_update_keeps_the_fields_it_leaves_out(
    api: ApiClient, world: World, tmp_path: Any, settings: Settings
) -> None:
    app = await app_setup(api, world, tmp_path, database=True, volumes=True)
    owner = world.auth("owner")
    first = {
        "storage_id": app.storage,
        "schedule": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "retention_days": 14,
        "backup_type": "incremental",
        "enabled": False,
        "include_volumes": False,
    }
    await expect(await api.post(app.url, json=first, headers=owner), 201)
    updated = await expect(
        await api.post(
            app.url, json={"storage_id": app.storage, "schedule": "30 4 * * *"}, headers=owner
        ),
        200,
    )
    kept = {
        k: updated[k]
        for k in (
            "timezone",
            "retention_days",
            "backup_type",
            "enabled",
            "include_volumes",
            "include_database",
        )
    }
    assert kept == {
        "timezone": "Europe/Berlin",
        "retention_days": 14,
        "backup_type": "incremental",
        "enabled": False,
        "include_volumes": False,
        "include_database": True,
    }
    assert updated["schedule"] == "30 4 * * *" and updated["schedule_state"]["paused"] is True
    first_run = datetime.fromisoformat(updated["schedule_state"]["next_runs"][0])
    assert (first_run.hour, first_run.minute) == (4, 30)
    assert first_run.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    # A later update's explicit value wins; a stored timezone is what the schedule is read in.
    again = await expect(
        await api.post(
            app.url,
            json={"storage_id": app.storage, "schedule": "*/5 * * * *", "enabled": True},
            headers=owner,
        ),
        422,
    )
    assert [e["field"] for e in again["errors"]] == ["body.schedule"]
    described = describe(settings, f"backup-policy-{app.app}")
    assert described is not None and described["schedule"]["state"]["paused"] is True
