"""Debian's Chromium driven by Playwright, against cairn served over real HTTP.

Playwright's own browser download does not work here, so the browser is the system one
(``CAIRN_CHROMIUM``, default ``/usr/bin/chromium``). Screenshots go to ``CAIRN_SCREENSHOTS``
(default ``test-artifacts/screenshots``) so a run leaves pictures of every page it checked.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, async_playwright

from api.main import create_app
from core.settings import Settings
from tests.conftest import free_port

CHROMIUM = os.environ.get("CAIRN_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("CAIRN_SCREENSHOTS", "test-artifacts/screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: run ./scripts/system-deps.sh (installs chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
async def served(settings: Settings) -> AsyncIterator[str]:
    """The API (and whatever else ``create_app`` serves) on a real port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
