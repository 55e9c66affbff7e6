"""A workspace admin's whole journey through the web UI, in Chromium, against real workers:
storage, policy, a backup watched live, damage, and a restore that brings the data back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from playwright.async_api import Browser, ConsoleMessage, expect
from temporalio.client import Client

from contracts.task_queues import CONTROL_TASK_QUEUE
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.browser.ui_pages import RUN_MS, register_app, settles, signed_in
from tests.integration.test_alerts import backdate
from tests.support.api import ApiClient, World, new_workspace
from tests.support.backups import (
    CREATED_DATABASES,
    make_app,
    run_backup,
    table_hashes,
    tree_hashes,
)
from workflows.storage import RefreshStorageUsageWorkflow

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("worker")]


# Every chart image on the page loaded and was drawn (the server's SVG, no script involved).
def _problem(message: ConsoleMessage) -> bool:
    return message.type == "error" and not message.text.startswith("Failed to load resource")


# (a function, not an expression: Playwright would eval an expression, which the CSP forbids)
_CHART_DRAWN = (
    "() => Array.from(document.querySelectorAll('img.chart'))"
    ".every(img => img.complete && img.naturalWidth > 0)"
)


async def test_admin_protects_and_restores_an_application(
    api: ApiClient,
    world: World,
    served: str,
    browser: Browser,
    screenshots: Path,
    database_server: PostgresServer,
    tmp_path: Path,
    settings: Settings,
) -> None:
    ws = await new_workspace(api, world, members=("member", "owner"))
    app_id, app_name, db_url, volumes = await register_app(
        api, world, database_server, tmp_path, ws, owner="owner"
    )
    context, page = await signed_in(browser, served, world.tokens["ws_admin"])
    # script errors, what the pages' CSP refused and server errors, on any page; a 4xx answer
    # the test asks for (a refused form) is logged by Chromium as "Failed to load resource"
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if _problem(m) else None)
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 500 else None
    )
    try:
        # a local storage, created in the form, turns active on its own (htmx polling)
        await page.goto(f"/ui/workspaces/{ws}/storages")
        await page.fill("input[name=name]", "main")
        await page.select_option("select[name=type]", "local")
        await page.fill("input[name=capacity_gb]", "10")
        await page.click("text=Create storage")
        row = page.get_by_test_id("storage-row").filter(has_text="main")
        await expect(row.get_by_test_id("storage-status")).to_have_text("active", timeout=RUN_MS)
        await page.screenshot(path=screenshots / "ui-storages.png", full_page=True)
        await row.get_by_role("link", name="main").click()
        await expect(page.get_by_role("heading", name="Storage main")).to_be_visible()
        await page.screenshot(path=screenshots / "ui-storage.png", full_page=True)

        # the overview says the application is not protected yet
        await page.goto(f"/ui/workspaces/{ws}")
        app_row = page.get_by_test_id("app-row").filter(has_text=app_name)
        await expect(app_row.get_by_test_id("protection")).to_have_text("no policy")
        await page.screenshot(path=screenshots / "ui-overview-before.png", full_page=True)

        # a policy: the schedule in words and its next runs in the policy's time zone
        await app_row.get_by_role("link", name=app_name).click()
        await page.fill("input[name=timezone]", "Europe/Berlin")
        await page.fill("input[name=schedule]", "30 2 * * mon-fri")
        preview = page.get_by_test_id("schedule-preview")
        await expect(preview).to_contain_text("At 02:30, Monday through Friday")
        await expect(preview.locator("li")).to_have_count(5)
        await expect(preview.locator("li").first).to_contain_text("CET")
        await page.fill("input[name=schedule]", "* * * * *")
        await expect(preview).to_contain_text("backups may run at most every 15 minutes")
        await page.fill("input[name=schedule]", "30 2 * * mon-fri")
        await page.click("text=Save policy")
        await expect(page.get_by_test_id("policy-summary")).to_contain_text(
            "At 02:30, Monday through Friday (Europe/Berlin)"
        )
        await expect(page.get_by_test_id("schedule-preview").locator("li")).to_have_count(5)
        await page.screenshot(path=screenshots / "ui-application.png", full_page=True)

        # the schedule owed runs for a week and none ran (paused in Temporal, no worker): the
        # badge is the API's overdue verdict (core/overdue.py), since the same moment
        made = datetime.now(UTC) - timedelta(days=8)
        backdate(settings, "backup_policies", "application_id", app_id, made)
        shown = (
            await api.get(f"/api/v1/applications/{app_id}", headers=world.auth("ws_admin"))
        ).json()
        assert shown["overdue"] is True, shown
        for where in (f"/ui/applications/{app_id}", f"/ui/workspaces/{ws}"):  # its only app
            await page.goto(where)
            await expect(page.get_by_test_id("protection")).to_have_text("backup overdue")
            since = page.get_by_test_id("overdue-since").locator("time")
            moment = datetime.fromisoformat(await since.get_attribute("datetime") or "")
            assert moment == datetime.fromisoformat(shown["overdue_since"])
        await page.screenshot(path=screenshots / "ui-overview-overdue.png", full_page=True)
        await page.goto(f"/ui/applications/{app_id}")

        # Run now: the backup's page follows it to success without a reload
        await page.click("text=Run now")
        await page.wait_for_url("**/backups/**")
        live = page.get_by_test_id("backup-live")
        assert await live.get_attribute("data-status") == "running"
        await page.evaluate("window.cairnSamePage = true")
        outcome = await settles(live)
        assert outcome.startswith("succeeded"), outcome
        await expect(live).not_to_have_attribute("hx-trigger", "every 1s", timeout=RUN_MS)
        assert await page.evaluate("window.cairnSamePage") is True  # no reload happened
        await expect(live.locator("table.steps")).to_contain_text("record_success")
        link = page.get_by_role("link", name="open the run in the Temporal UI")
        assert "/workflows/backup-" in (await link.get_attribute("href") or "")
        await page.click("text=Protect from retention")
        await expect(page.get_by_test_id("protection-state")).to_contain_text("protected")
        await page.screenshot(path=screenshots / "ui-backup.png", full_page=True)
        await page.goto(f"/ui/applications/{app_id}")
        await page.click("text=What retention keeps")
        kept = page.get_by_test_id("retention-keep")
        await expect(kept).to_contain_text("protected")
        await page.go_back()
        await expect(page.locator("img.chart")).to_have_count(1)
        await page.wait_for_function(_CHART_DRAWN)

        backups = (
            await api.get(f"/api/v1/applications/{app_id}/backups", headers=world.auth("ws_admin"))
        ).json()["items"]
        assert [b["protected"] for b in backups] == [True]

        # damage the data
        tables, files = table_hashes(db_url), tree_hashes(volumes["uploads"])
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DELETE FROM items WHERE id % 2 = 0")
            conn.execute("""DROP TABLE "Odd Name\"""")
        (volumes["uploads"] / "file-3.txt").write_text("overwritten by mistake")
        (volumes["uploads"] / "file-4.txt").unlink()
        assert table_hashes(db_url) != tables
        assert tree_hashes(volumes["uploads"]) != files

        # the wizard: pick the backup, full restore in place, refused until the name is typed
        await page.goto(f"/ui/applications/{app_id}")
        await page.click("text=Restore…")
        await page.locator("input[name=backup]").first.check()
        await page.click("text=Choose this backup")
        form = page.get_by_test_id("restore-form")
        await expect(form).to_contain_text("A full restore in place overwrites")
        await page.screenshot(path=screenshots / "ui-restore-wizard.png", full_page=True)
        # the database elsewhere still puts the volumes back in place: the name is needed too
        await page.check("input[name=target][value=new_database]")
        await page.fill("input[name=database_name]", f"cairn_never_{uuid.uuid4().hex[:8]}")
        await page.click("text=Start the restore")
        await expect(page.get_by_test_id("restore-error")).to_contain_text(
            "type the application's name exactly"
        )
        await page.check("input[name=target][value=in_place]")
        await page.get_by_test_id("confirm").fill(app_name + "x")
        await page.click("text=Start the restore")
        await expect(page.get_by_test_id("restore-error")).to_contain_text(
            "type the application's name exactly"
        )
        assert table_hashes(db_url) != tables  # nothing was started
        restores = await api.get(
            f"/api/v1/applications/{app_id}/restores", headers=world.auth("ws_admin")
        )
        assert restores.json()["items"] == []
        await page.get_by_test_id("confirm").fill(app_name)
        await page.click("text=Start the restore")
        await page.wait_for_url("**/restores/**")
        restore = page.get_by_test_id("restore-live")
        outcome = await settles(restore)
        assert outcome.startswith("succeeded"), outcome
        await page.screenshot(path=screenshots / "ui-restore.png", full_page=True)

        # the data is back, in PostgreSQL and on disk
        assert table_hashes(db_url) == tables
        assert tree_hashes(volumes["uploads"]) == files

        await page.goto(f"/ui/workspaces/{ws}")
        app_row = page.get_by_test_id("app-row").filter(has_text=app_name)
        await expect(app_row.get_by_test_id("protection")).to_have_text("protected")
        await expect(app_row.get_by_test_id("overdue-since")).to_have_count(0)
        await page.screenshot(path=screenshots / "ui-overview-after.png", full_page=True)

        # the audit log, narrowed to restores, names who asked for it
        await page.click("text=Audit log")
        await page.select_option("select[name=action]", "restore.request")
        await page.click("text=Filter")
        events = page.get_by_test_id("audit-events").locator("tbody tr")
        await expect(events).to_have_count(1)
        await expect(events).to_contain_text("ws_admin-")
        await page.screenshot(path=screenshots / "ui-audit.png", full_page=True)
        assert problems == [], "\n".join(problems)
    finally:
        await context.close()


async def test_admin_manages_storages(
    api: ApiClient,
    world: World,
    served: str,
    browser: Browser,
    screenshots: Path,
    temporal_client: Client,
) -> None:
    ws = await new_workspace(api, world, quota_gb=50)
    context, page = await signed_in(browser, served, world.tokens["ws_admin"])
    try:
        await page.goto(f"/ui/workspaces/{ws}/storages")
        # an error in words, and nothing created
        await page.fill("input[name=name]", "huge")
        await page.fill("input[name=capacity_gb]", "60")
        await page.click("text=Create storage")
        await expect(page.get_by_role("alert")).to_contain_text(
            "the workspace's backup quota is 50 GB"
        )
        assert await page.get_by_test_id("storage-row").count() == 0
        # an NFS storage's fields appear with its type; a server PVE would refuse, in words
        assert not await page.locator("input[name=nfs_server]").is_visible()
        await page.select_option("select[name=type]", "nfs")
        await page.fill("input[name=capacity_gb]", "5")
        await page.fill("input[name=nfs_server]", "nas.example:2049")
        await page.fill("input[name=nfs_export]", "/srv/backups")
        await page.click("text=Create storage")
        await expect(page.get_by_role("alert")).to_contain_text(
            "connection server: Value error, must be an IP address or a DNS name"
        )
        assert await page.get_by_test_id("storage-row").count() == 0
        await page.select_option("select[name=type]", "local")
        await page.fill("input[name=name]", "spare")
        await page.fill("input[name=capacity_gb]", "20")
        await page.click("text=Create storage")
        row = page.get_by_test_id("storage-row").filter(has_text="spare")
        await expect(row.get_by_test_id("storage-status")).to_have_text("active", timeout=RUN_MS)

        # two usage readings (the refresh the schedule runs every few minutes) make a chart
        for _ in range(2):
            await temporal_client.execute_workflow(
                RefreshStorageUsageWorkflow.run,
                id=f"ui-usage-{uuid.uuid4()}",
                task_queue=CONTROL_TASK_QUEUE,
                execution_timeout=timedelta(seconds=60),
            )
        await row.get_by_role("link", name="spare").click()
        await expect(page.locator("img.chart")).to_have_count(1)
        await page.wait_for_function(_CHART_DRAWN)
        await page.screenshot(path=screenshots / "ui-storage-usage.png", full_page=True)
        await page.fill("input[name=capacity_gb]", "40")
        await page.click("text=Save")
        await expect(page.get_by_test_id("storage-row")).to_contain_text("of 40 GB")
        await page.fill("input[name=capacity_gb]", "51")
        await page.click("text=Save")
        await expect(page.get_by_role("alert")).to_contain_text("at most 50 GB can be allocated")
        await page.screenshot(path=screenshots / "ui-storage-error.png", full_page=True)

        await page.click("text=Delete storage")
        await page.wait_for_url(f"**/ui/workspaces/{ws}/storages")
        await expect(page.get_by_test_id("storage-row")).to_have_count(0, timeout=RUN_MS)
        listed = await api.get(
            f"/api/v1/workspaces/{ws}/backup-storages", headers=world.auth("ws_admin")
        )
        assert listed.json()["items"] == []
    finally:
        await context.close()


async def test_owner_restores_only_the_database_into_another_one(
    api: ApiClient,
    world: World,
    served: str,
    browser: Browser,
    screenshots: Path,
    database_server: PostgresServer,
    tmp_path: Path,
) -> None:
    """Selective, into a new database on the same server: no name to type, the original and
    the volumes stay as they are."""
    app = await make_app(api, world, database_server, tmp_path)
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup
    copy = f"cairn_copy_{uuid.uuid4().hex[:8]}"
    CREATED_DATABASES.append(copy)
    tables, files = table_hashes(app.db_url), tree_hashes(app.volumes["uploads"])
    context, page = await signed_in(browser, served, world.tokens["owner"])
    try:
        await page.goto(f"/ui/applications/{app.id}/restore?backup={backup['id']}")
        await page.check("input[name=restore_type][value=selective]")
        await page.check("input[name=database]")
        await page.check("input[name=target][value=new_database]")
        await page.fill("input[name=database_name]", copy)
        await page.click("text=Start the restore")
        await page.wait_for_url("**/restores/**")
        restore = page.get_by_test_id("restore-live")
        outcome = await settles(restore)
        assert outcome.startswith("succeeded"), outcome
        await expect(page.get_by_text(f"the database into {copy}")).to_be_visible()
        await page.screenshot(path=screenshots / "ui-restore-selective.png", full_page=True)
    finally:
        await context.close()
    assert table_hashes(database_server.url(copy, driver="postgresql")) == tables
    assert table_hashes(app.db_url) == tables
    assert tree_hashes(app.volumes["uploads"]) == files


async def test_owner_sets_retention_and_pauses_the_policy(
    api: ApiClient,
    world: World,
    served: str,
    browser: Browser,
    screenshots: Path,
    database_server: PostgresServer,
    tmp_path: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path)
    context, page = await signed_in(browser, served, world.tokens["owner"])
    try:
        await page.goto(f"/ui/applications/{app.id}")
        # a rule that keeps nothing is refused in words; then daily backups for a week instead
        await page.fill("input[name=retention_days]", "")
        await page.click("text=Save policy")
        await expect(page.get_by_test_id("policy-error")).to_contain_text("the rule keeps nothing")
        await page.fill("input[name=keep_daily]", "7")
        await page.click("text=Save policy")
        await expect(page.locator("input[name=keep_daily]")).to_have_value("7")
        await expect(page.locator("input[name=retention_days]")).to_have_value("")
        policy = (await api.get(app.policy, headers=world.auth("owner"))).json()
        assert (policy["retention_days"], policy["keep_daily"]) == (None, 7)

        await page.check("input[name=paused]")
        await page.click("text=Save policy")
        await expect(page.get_by_test_id("policy-summary")).to_contain_text("paused")
        await page.click("text=What retention keeps")
        await expect(page.get_by_text("no age rule, keep daily 7")).to_be_visible()
        await page.screenshot(path=screenshots / "ui-retention.png", full_page=True)
        await page.go_back()
        state = page.get_by_test_id("schedule-state")
        await expect(state).to_contain_text("paused by owner-")
        policy = (await api.get(app.policy, headers=world.auth("owner"))).json()
        assert policy["enabled"] is False and policy["schedule_state"]["paused"] is True

        await page.goto(f"/ui/workspaces/{app.workspace}")
        row = page.get_by_test_id("app-row")
        await expect(row).to_contain_text("paused")
        await page.screenshot(path=screenshots / "ui-overview-paused.png", full_page=True)

        await page.goto(f"/ui/applications/{app.id}")
        await page.uncheck("input[name=paused]")
        await page.click("text=Save policy")
        await expect(page.get_by_test_id("schedule-state")).to_contain_text("running")
        policy = (await api.get(app.policy, headers=world.auth("owner"))).json()
        assert policy["enabled"] is True and policy["schedule_state"]["paused"] is False
    finally:
        await context.close()
