"""Helpers of the web UI's browser tests: sign in through the real form, read the page's CSRF
token, register an application with a real database and volumes (without storage or policy,
which the journey creates through the UI)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from devstack.postgres import PostgresServer
from tests.support.api import ApiClient, World
from tests.support.api import expect as expect_status
from tests.support.backups import filled_data

# Every wait in these tests is bounded; a run that hangs fails instead.
STEP_MS = 15_000
RUN_MS = 180_000


async def signed_in(browser: Browser, served: str, token: str) -> tuple[BrowserContext, Page]:
    """A fresh browser context (its own cookies) signed in with ``token`` through the form."""
    context = await browser.new_context(base_url=served)
    context.set_default_timeout(STEP_MS)
    page = await context.new_page()
    await page.goto("/ui")
    assert "/ui/sign-in" in page.url
    await page.fill("input[name=token]", token)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert "/ui/sign-in" not in page.url, await page.content()
    return context, page


async def csrf_of(page: Page) -> str:
    """The session's CSRF token, as htmx sends it (``hx-headers`` on ``<body>``)."""
    headers = await page.get_attribute("body", "hx-headers")
    assert headers
    token: str = json.loads(headers)["X-CSRF-Token"]
    return token


async def register_app(
    api: ApiClient, world: World, pg: PostgresServer, tmp: Path, workspace: str, owner: str
) -> tuple[str, str, str, dict[str, Path]]:
    """An application with a filled PostgreSQL database and two filled volume folders.

    Returns its id, name, the database's libpq URL and the volumes.
    """
    marker = f"CAIRN-UI-{uuid.uuid4().hex}"
    _, libpq, volumes = filled_data(pg, tmp, marker)
    name = f"shop-{uuid.uuid4().hex[:6]}"
    app = await expect_status(
        await api.post(
            f"/api/v1/workspaces/{workspace}/applications",
            json={
                "name": name,
                "owner_id": world.users[owner],
                "platform": {
                    "kind": "local",
                    "database_url": libpq.replace("postgres@", "postgres:app-pw@", 1),
                    "volumes": {k: str(v) for k, v in volumes.items()},
                },
            },
            headers=world.auth("platform_admin"),
        ),
        201,
    )
    return str(app["id"]), name, libpq, volumes


async def settles(live: Locator) -> str:
    """Waits for a run's live part to reach a final status; returns its text (for messages)."""
    final = re.compile("^(succeeded|failed|cancelled)$")
    await expect(live).to_have_attribute("data-status", final, timeout=RUN_MS)
    return f"{await live.get_attribute('data-status')}: {await live.inner_text()}"
