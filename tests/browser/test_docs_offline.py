"""The API docs render with no network beyond cairn itself (issue 15)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, expect

pytestmark = pytest.mark.browser


async def _offline_page(browser: Browser, blocked: list[str]) -> Page:
    """A page whose every request to anything but localhost fails, as on a machine offline."""
    page = await browser.new_page(viewport={"width": 1280, "height": 1600})

    async def only_localhost(route: Route) -> None:
        if urlparse(route.request.url).hostname in {"127.0.0.1", "localhost"}:
            await route.continue_()
        else:
            blocked.append(f"{route.request.resource_type} {route.request.url}")
            await route.abort("internetdisconnected")

    await page.route("**/*", only_localhost)
    return page


async def test_swagger_ui_renders_the_operations_offline(
    browser: Browser, served: str, screenshots: Path
) -> None:
    blocked: list[str] = []
    page = await _offline_page(browser, blocked)
    try:
        await page.goto(f"{served}/docs")
        trigger = page.locator(".opblock-post", has_text="Trigger Backup").first
        await expect(trigger).to_be_visible(timeout=60_000)
        await expect(page.locator(".opblock").first).to_be_visible()
        assert await page.locator(".opblock").count() > 20
        await page.screenshot(path=screenshots / "docs-offline.png", full_page=False)
    finally:
        await page.close()
    assert blocked == []  # nothing was even asked of another host


async def test_redoc_renders_offline(browser: Browser, served: str, screenshots: Path) -> None:
    blocked: list[str] = []
    page = await _offline_page(browser, blocked)
    try:
        await page.goto(f"{served}/redoc")
        await expect(page.get_by_role("heading", name="Trigger Backup").first).to_be_visible(
            timeout=60_000
        )
        await page.screenshot(path=screenshots / "redoc-offline.png")
    finally:
        await page.close()
    # ReDoc's bundle links its "API docs by Redocly" badge to their CDN; nothing else leaves
    assert blocked == ["image https://cdn.redoc.ly/redoc/logo-mini.svg"]


async def test_root_redirects_to_a_page(served: str) -> None:
    """``/`` (the URL ``cairn dev`` prints) leads to the UI or the docs, not a 404 problem."""
    async with httpx.AsyncClient(base_url=served) as client:
        response = await client.get("/")
        assert response.status_code == 307
        landed = await client.get(response.headers["location"], follow_redirects=True)
    assert landed.status_code == 200
    assert landed.headers["content-type"].startswith("text/html")
