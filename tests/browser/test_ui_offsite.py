"""The web UI marks an application whose newest backups have no offsite copy within the
allowance (core/offsite_overdue.py), in Chromium, with a real rclone target that goes away;
the API's ``offsite.overdue`` and the metric the alert rule reads agree with the mark."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from playwright.async_api import Browser, expect
from temporalio.client import Client

from contracts.copy import copy_workflow_id
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.browser.ui_pages import signed_in
from tests.integration.test_offsite import sample, scrape_api, second_copy_waiting
from tests.support.api import ApiClient, World, wait_for
from tests.support.api import expect as expect_status
from tests.support.backups import make_app
from tests.support.database import libpq_url
from tests.support.offsite_servers import OffsiteSite

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("worker")]

LATE = timedelta(hours=7)  # past a daily schedule's 6 h grace


async def test_a_copy_past_its_allowance_is_marked_and_one_within_it_is_not(
    api: ApiClient,
    world: World,
    served: str,
    browser: Browser,
    screenshots: Path,
    database_server: PostgresServer,
    settings: Settings,
    temporal_client: Client,
    tmp_path: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path / "app")
    owner = world.auth("owner")
    site = OffsiteSite.started(tmp_path / "offsite")
    try:
        target_id, first, second = await second_copy_waiting(api, world, app, site)
    finally:
        site.stop()
    try:
        application = f"/api/v1/applications/{app.id}"
        # the copy's row is written by its workflow a moment after the backup ends
        lag = (
            await wait_for(api, application, owner, lambda a: a["offsite"]["copies_pending"] == 1)
        )["offsite"]
        assert lag["overdue"] is False, lag

        context, page = await signed_in(browser, served, world.tokens["owner"])
        try:
            # pending, but within the allowance: no mark
            await page.goto(f"/ui/applications/{app.id}")
            await expect(page.get_by_test_id("protection").first).to_be_visible()
            await expect(page.get_by_test_id("offsite-overdue")).to_have_count(0)

            # both backups completed 7 h earlier (their order kept): the second's copy is late
            with psycopg.connect(libpq_url(settings.database_url)) as conn:
                conn.execute(
                    "UPDATE backup_executions SET completed_at = completed_at - %s"
                    " WHERE id = ANY(%s)",
                    (LATE, [first["id"], second["id"]]),
                )
            lag = (await expect_status(await api.get(application, headers=owner), 200))["offsite"]
            completed = datetime.fromisoformat(second["completed_at"]) - LATE
            assert lag["overdue"] is True, lag
            assert datetime.fromisoformat(lag["overdue_since"]) == completed + timedelta(hours=6)

            for path, shot in (
                (f"/ui/applications/{app.id}", "ui-offsite-overdue-application.png"),
                (f"/ui/workspaces/{app.workspace}", "ui-offsite-overdue-overview.png"),
            ):
                await page.goto(path)
                mark = page.get_by_test_id("offsite-overdue")
                await expect(mark).to_have_count(1)
                await expect(mark).to_contain_text("offsite copy overdue since")
                await page.screenshot(path=screenshots / shot, full_page=True)
        finally:
            await context.close()

        scraped = await scrape_api(api, world)
        labels = {"workspace_id": app.workspace, "application_id": app.id, "target_id": target_id}
        assert sample(scraped, "cairn_offsite_copy_overdue", **labels) == 1
    finally:
        # the copy would retry against the stopped target for a day
        await temporal_client.get_workflow_handle(
            copy_workflow_id(second["id"], target_id)
        ).terminate("test over")
