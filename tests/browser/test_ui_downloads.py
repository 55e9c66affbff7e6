"""Downloads from the web UI (issue 26), in Chromium: the owner downloads a backup's database
from its page and gets a real ``pg_dump`` custom archive; a member sees no download and a
forged form post of theirs is refused, both audited as the API's are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.async_api import Browser, expect

from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.browser.ui_pages import csrf_of, signed_in
from tests.support.api import ApiClient, World
from tests.support.backups import make_app, run_backup
from tests.support.database import libpq_url

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("worker")]


def _audited(settings: Settings, workspace: str, action: str) -> list[tuple[Any, ...]]:
    """(who, details) of the workspace's audit events of one action, oldest first."""
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        return conn.execute(
            "SELECT actor_user_id::text, details FROM audit_events"
            " WHERE workspace_id = %s AND action = %s ORDER BY occurred_at",
            (workspace, action),
        ).fetchall()


async def test_owner_downloads_the_database_and_a_member_cannot(
    api: ApiClient,
    world: World,
    served: str,
    browser: Browser,
    screenshots: Path,
    database_server: PostgresServer,
    settings: Settings,
    tmp_path: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path)
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup
    page_url = f"/ui/applications/{app.id}/backups/{backup['id']}"

    context, page = await signed_in(browser, served, world.tokens["owner"])
    try:
        await page.goto(page_url)
        parts = page.get_by_test_id("backup-part")
        # one action per part the backup holds: the database and each of the two volumes
        await expect(parts).to_have_count(3)
        await expect(page.get_by_role("button", name="Download")).to_have_count(3)
        await page.screenshot(path=screenshots / "ui-backup-downloads.png", full_page=True)
        async with page.expect_download() as started:
            await parts.filter(has_text="database").get_by_role("button", name="Download").click()
        download = await started.value
        assert download.suggested_filename.endswith(".dump"), download.suggested_filename
        dump = tmp_path / download.suggested_filename
        await download.save_as(dump)
        assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
        assert page.url.endswith(page_url)  # the page stays; the file arrived beside it
    finally:
        await context.close()
    made = _audited(settings, app.workspace, "download.create")
    used = _audited(settings, app.workspace, "download.use")
    assert [(who, d["part"]) for who, d in made] == [(world.users["owner"], "database")]
    assert [d["part"] for _, d in used] == ["database"]

    context, page = await signed_in(browser, served, world.tokens["member"])
    try:
        await page.goto(page_url)
        await expect(page.get_by_test_id("backup-part")).to_have_count(3)
        assert await page.get_by_role("button", name="Download").count() == 0
        forged = await context.request.post(
            f"{page_url}/download",
            form={"part": "database"},
            headers={"X-CSRF-Token": await csrf_of(page)},
            max_redirects=0,
        )
        assert forged.status == 403, await forged.text()
    finally:
        await context.close()
    assert len(_audited(settings, app.workspace, "download.create")) == 1
    refused = _audited(settings, app.workspace, "download.refused")
    assert [who for who, _ in refused] == [world.users["member"]]
