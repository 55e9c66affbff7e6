"""The project's workers run in-process, exactly as ``cairn worker`` builds them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio.client import Client

from core.settings import Settings
from db.session import make_engine, make_sessionmaker
from worker.main import build_workers


@contextlib.asynccontextmanager
async def running_workers(settings: Settings, client: Client) -> AsyncIterator[None]:
    engine = make_engine(settings.database_url)
    workers = build_workers(client, settings, make_sessionmaker(engine))
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)
        await engine.dispose()
