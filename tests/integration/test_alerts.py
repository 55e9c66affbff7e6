"""Overdue applications (issue 25) through the real API, its /metrics and a real backup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client

from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.support import histories
from tests.support.api import ApiClient, World, expect
from tests.support.backups import App, make_app, run_backup
from tests.support.database import libpq_url
from tests.support.overdue_notices import run_notices
from tests.support.webhook import WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def backdate(settings: Settings, table: str, column: str, value: object, moment: datetime) -> None:
    """Moves a policy's creation into the past: the tests cannot wait for days of schedule."""
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(f"UPDATE {table} SET created_at = %s WHERE {column} = %s", (moment, value))


def series(text: str, name: str, app: App) -> float | None:
    """The value of ``name`` for the application (None when the scrape has no such series)."""
    labels = f'application_id="{app.id}",workspace_id="{app.workspace}"'
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_an_application_whose_schedule_stopped_is_overdue_until_a_backup_succeeds(
    api: ApiClient,
    world: World,
    settings: Settings,
    database_server: PostgresServer,
    tmp_path: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path)  # daily at 03:00 UTC
    owner, scraper = world.auth("owner"), world.auth("platform_admin")
    application = f"/api/v1/applications/{app.id}"
    shown = await expect(await api.get(application, headers=owner), 200)
    assert (shown["overdue"], shown["overdue_since"]) == (False, None)

    # made three days ago at midnight, and its schedule never ran a backup since (paused in
    # Temporal behind cairn's back, or no worker): the 03:00 run had until 09:00 (a quarter
    # of its day), so it is overdue since then
    made = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(3)
    backdate(settings, "backup_policies", "application_id", app.id, made)
    since = made + timedelta(hours=9)
    shown = await expect(await api.get(application, headers=owner), 200)
    assert shown["overdue"] is True
    assert datetime.fromisoformat(shown["overdue_since"]) == since
    policy = await expect(await api.get(app.policy, headers=owner), 200)
    assert (policy["overdue"], datetime.fromisoformat(policy["overdue_since"])) == (True, since)
    listed = await expect(
        await api.get(f"/api/v1/workspaces/{app.workspace}/applications", headers=owner), 200
    )
    assert [a["overdue"] for a in listed["items"] if a["id"] == app.id] == [True]

    # the weekly drill made two weeks ago never ran either
    drill_policy = f"{application}/drill-policy"
    await expect(await api.put(drill_policy, json={"schedule": "0 4 * * 0"}, headers=owner), 201)
    backdate(settings, "restore_drill_policies", "policy_id", policy["id"], made - timedelta(11))
    drills = await expect(await api.get(drill_policy, headers=owner), 200)
    assert drills["overdue"] is True and drills["overdue_since"] is not None
    assert (await expect(await api.get(application, headers=owner), 200))["drill_overdue"]

    scraped = (await api.get("/metrics", headers=scraper)).text
    assert series(scraped, "cairn_backup_overdue", app) == 1
    assert series(scraped, "cairn_drill_overdue", app) == 1
    assert f'cairn_applications_overdue{{workspace_id="{app.workspace}"}} 1.0' in scraped

    # a policy paused in cairn is a decision, not a miss
    paused = await api.post(
        app.policy,
        json={"storage_id": app.storage, "schedule": "0 3 * * *", "enabled": False},
        headers=owner,
    )
    assert (await expect(paused, 200))["overdue"] is False
    assert (
        series((await api.get("/metrics", headers=scraper)).text, "cairn_backup_overdue", app)
        is None
    )
    resumed = await api.post(
        app.policy,
        json={"storage_id": app.storage, "schedule": "0 3 * * *", "enabled": True},
        headers=owner,
    )
    assert (await expect(resumed, 200))["overdue"] is True

    # the next success clears it
    assert (await run_backup(api, world, app))["status"] == "succeeded"
    shown = await expect(await api.get(application, headers=owner), 200)
    assert (shown["overdue"], shown["overdue_since"]) == (False, None)
    scraped = (await api.get("/metrics", headers=scraper)).text
    assert series(scraped, "cairn_backup_overdue", app) == 0
    assert series(scraped, "cairn_backup_last_run_failed", app) == 0
    assert f'cairn_applications_overdue{{workspace_id="{app.workspace}"}} 0.0' in scraped


async def notices(
    temporal: Client, webhook: WebhookReceiver, app: App, record: str = ""
) -> list[str]:
    """One run of the overdue-notices schedule's workflow; the events it sent about ``app``."""
    before = len(webhook.events)
    workflow_id = await run_notices(temporal)
    if record:
        await histories.record(temporal, workflow_id, record)
    return [e["event"] for e in webhook.events[before:] if e.get("application_id") == app.id]


async def test_the_webhook_is_told_once_when_overdue_and_once_when_recovered(
    api: ApiClient,
    world: World,
    settings: Settings,
    database_server: PostgresServer,
    tmp_path: Path,
    temporal_client: Client,
    webhook: WebhookReceiver,
) -> None:
    app = await make_app(api, world, database_server, tmp_path)
    assert await notices(temporal_client, webhook, app) == []
    made = datetime.now(UTC) - timedelta(days=3)
    backdate(settings, "backup_policies", "application_id", app.id, made)
    webhook.fail_next = 1  # the first delivery fails: the step is retried, nothing is lost
    assert await notices(temporal_client, webhook, app, record="overdue-notices") == [
        "backup.overdue"
    ]
    told = next(e for e in reversed(webhook.events) if e.get("application_id") == app.id)
    shown = await expect(
        await api.get(f"/api/v1/applications/{app.id}", headers=world.auth("owner")), 200
    )
    since = datetime.fromisoformat(told["overdue_since"])
    assert since == datetime.fromisoformat(shown["overdue_since"])
    assert told["application"] and told["workspace_id"] == app.workspace
    assert await notices(temporal_client, webhook, app) == []  # once per overdue period
    assert (await run_backup(api, world, app))["status"] == "succeeded"
    assert await notices(temporal_client, webhook, app) == ["backup.recovered"]
    assert await notices(temporal_client, webhook, app) == []
    events = await expect(
        await api.get(
            f"/api/v1/workspaces/{app.workspace}/audit-events", headers=world.auth("ws_admin")
        ),
        200,
    )
    assert [e["action"] for e in events["items"] if e["target_id"] == app.id][:2] == [
        "application.backup_recovered",
        "application.backup_overdue",
    ]
