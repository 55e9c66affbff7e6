"""The restore wizard offers an application's named databases (issue 24) as parts of a
selective restore, like its volumes: ticking the MariaDB alone brings it back and leaves the
PostgreSQL database, the Redis and the volume as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from adapters.engines.mariadb import MariaTarget
from adapters.engines.redis import RedisTarget
from tests.browser.ui_pages import settles, signed_in
from tests.integration.test_app_databases import (  # noqa: F401  (fixtures)
    backed_up,
    cache,
    cache_server,
    damage_all,
    everything,
    maria,
    shop,
)
from tests.support.api import World
from tests.support.backups import App

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("worker")]


async def test_owner_restores_only_the_mariadb_from_the_wizard(
    world: World,
    served: str,
    browser: Browser,
    screenshots: Path,
    backed_up: tuple[App, dict[str, Any]],  # noqa: F811
    shop: MariaTarget,  # noqa: F811
    cache: RedisTarget,  # noqa: F811
) -> None:
    app, backup = backed_up
    before = everything(app, shop, cache)
    damage_all(app, shop, cache)
    damaged = everything(app, shop, cache)
    context, page = await signed_in(browser, served, world.tokens["owner"])
    try:
        await page.goto(f"/ui/applications/{app.id}/restore?backup={backup['id']}")
        await expect(
            page.get_by_text("the named databases cache (redis), shop (mariadb)")
        ).to_be_visible()
        form = page.get_by_test_id("restore-form")
        await expect(form).to_contain_text("its named databases cache, shop")
        await page.check("input[name=restore_type][value=selective]")
        await page.check("input[name=databases][value=shop]")
        await page.screenshot(path=screenshots / "ui-restore-named-database.png", full_page=True)
        await page.click("text=Start the restore")
        await page.wait_for_url("**/restores/**")
        outcome = await settles(page.get_by_test_id("restore-live"))
        assert outcome.startswith("succeeded"), outcome
        await expect(page.get_by_text("named databases shop")).to_be_visible()
    finally:
        await context.close()
    after = everything(app, shop, cache)
    assert after["mariadb"] == before["mariadb"]
    others = ("postgresql", "redis", "volumes")
    assert {k: after[k] for k in others} == {k: damaged[k] for k in others}
