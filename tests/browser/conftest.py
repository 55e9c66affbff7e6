"""Debian's Chromium driven by Playwright, against cairn served over real HTTP.

Playwright's own browser download does not work here, so the browser is the system one
(``CAIRN_CHROMIUM``, default ``/usr/bin/chromium``). Screenshots go to ``CAIRN_SCREENSHOTS``
(default ``test-artifacts/screenshots``) so a run leaves pictures of every page it checked.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.support.served import served  # noqa: F401  (the fixture, shared with the CLI tests)

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
