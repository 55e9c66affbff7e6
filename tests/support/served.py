"""cairn's app served over real HTTP (uvicorn on a free port), for clients outside the process.

The browser tests and the CLI tests (which run ``cairn`` as a subprocess) need a real URL;
the server runs on the session's event loop, beside the in-process workers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvicorn

from api.main import create_app
from core.settings import Settings
from tests.conftest import free_port


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
