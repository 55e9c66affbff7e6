"""Point in time in the web UI (docs/pitr.md), in Chromium: the application's page shows the
recovery window of an application with continuous archiving on (a PostgreSQL server of the
test's own), and the restore wizard restores the database to a moment, into a new database by
default and over the live one only once the application's name is typed."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from adapters import pg_databases
from tests.browser.ui_pages import RUN_MS, signed_in
from tests.integration.test_pitr_api import (  # noqa: F401  (archived, instance: the fixtures)
    DB,
    Archived,
    archived,
    instance,
)
from tests.support.api import ApiClient, World, wait_for
from tests.support.api import expect as expect_status

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("worker")]


def ids_in(archived: Archived, dbname: str) -> set[int]:  # noqa: F811
    with archived.instance.connect(dbname) as conn:
        return {int(row[0]) for row in conn.execute("SELECT id FROM orders").fetchall()}


async def finished(api: ApiClient, world: World, archived: Archived, url: str) -> dict[str, object]:  # noqa: F811
    restore_id = url.rstrip("/").rsplit("/", 1)[-1]
    done = await wait_for(
        api,
        f"{archived.restores}/{restore_id}",
        world.auth("member"),
        lambda r: r["status"] not in ("pending", "running"),
        seconds=RUN_MS // 1000,
    )
    assert done["status"] == "succeeded", done["error_message"]
    return dict(done)


async def test_the_window_is_shown_and_the_wizard_restores_to_a_moment(
    api: ApiClient,
    world: World,
    served: str,
    browser: Browser,
    screenshots: Path,
    archived: Archived,  # noqa: F811
) -> None:
    app = archived.app.id
    name = (
        await expect_status(
            await api.get(f"/api/v1/applications/{app}", headers=world.auth("owner")), 200
        )
    )["name"]
    context, page = await signed_in(browser, served, world.tokens["owner"])
    try:
        await page.goto(f"/ui/applications/{app}")
        card = page.get_by_test_id("recovery-window")
        await expect(card).to_be_visible()
        await expect(page.get_by_test_id("window-from")).to_contain_text("UTC")
        await expect(page.get_by_test_id("window-until")).to_contain_text("UTC")
        await expect(page.get_by_test_id("window-gaps")).to_have_text("No gaps.")
        await expect(page.get_by_test_id("archiver")).to_contain_text("streaming")
        await card.screenshot(path=str(screenshots / "pitr-window.png"))

        # into a new database (the default), named in the form
        moment = sorted(archived.commits.values())[7]
        await page.get_by_role("link", name="Restore to a moment…").click()
        form = page.get_by_test_id("moment-form")
        await expect(form).to_be_visible()
        await page.get_by_test_id("target-time").fill(moment.isoformat())
        await page.get_by_test_id("moment-database-name").fill("shop_ui")
        await form.get_by_role("button", name="Restore to this moment").click()
        await page.wait_for_url("**/restores/*")
        done = await finished(api, world, archived, page.url)
        assert done["target"] == {"database_name": "shop_ui"}
        try:
            assert ids_in(archived, "shop_ui") == {
                i for i, c in archived.commits.items() if c <= moment
            }
        finally:
            pg_databases.drop(archived.instance.target("shop_ui"), "shop_ui")
        assert ids_in(archived, DB) == set(archived.commits)  # the live one untouched

        # over the live database: refused until the name is typed, and nothing starts
        listed = await expect_status(
            await api.get(archived.restores, headers=world.auth("owner")), 200
        )
        moment = sorted(archived.commits.values())[19]
        await page.goto(f"/ui/applications/{app}/restore")
        await page.get_by_test_id("target-time").fill(moment.isoformat())
        await page.get_by_test_id("moment-in-place").check()
        await page.get_by_test_id("moment-confirm").fill(name.upper())
        await (
            page.get_by_test_id("moment-form")
            .get_by_role("button", name="Restore to this moment")
            .click()
        )
        await expect(page.get_by_test_id("moment-error")).to_contain_text(
            "type the application's name exactly to confirm"
        )
        # the form keeps what was asked
        await expect(page.get_by_test_id("target-time")).to_have_value(moment.isoformat())
        await expect(page.get_by_test_id("moment-in-place")).to_be_checked()
        again = await expect_status(
            await api.get(archived.restores, headers=world.auth("owner")), 200
        )
        assert again["items"] == listed["items"]
        assert ids_in(archived, DB) == set(archived.commits)

        await page.get_by_test_id("moment-confirm").fill(name)
        await (
            page.get_by_test_id("moment-form")
            .get_by_role("button", name="Restore to this moment")
            .click()
        )
        await page.wait_for_url("**/restores/*")
        done = await finished(api, world, archived, page.url)
        assert done["target"] is None
        assert ids_in(archived, DB) == {i for i, c in archived.commits.items() if c <= moment}
        assert len(ids_in(archived, DB)) == 20
    finally:
        await context.close()
