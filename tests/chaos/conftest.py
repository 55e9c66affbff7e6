"""A whole cairn per test for the chaos suite: its own metadata database, its own Temporal dev
server (restartable with its state), a ``cairn worker`` subprocess that may be SIGKILLed, the
API in-process, a webhook receiver, and a restic the suite can break."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters import pg_databases
from core.crypto import generate_master_key
from core.settings import Settings
from db import migrate
from devstack.postgres import PostgresServer
from tests.support.api import build_world, running_app
from tests.support.backups import CREATED_DATABASES
from tests.support.chaos import REPORTS, ResticSwitch, Stack, TemporalDevServer, WorkerProcess
from tests.support.webhook import WebhookReceiver


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTS:
        terminalreporter.section("chaos figures")
        for figures in REPORTS:
            terminalreporter.write_line(figures.text())


@pytest.fixture
def seed() -> int:
    """``CAIRN_CHAOS_SEED`` replays a run; otherwise a fresh seed, printed with the figures."""
    value = int(os.environ.get("CAIRN_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"chaos seed: {value} (replay with CAIRN_CHAOS_SEED={value})")
    return value


@pytest.fixture
async def stack(
    database_server: PostgresServer, application_databases: None
) -> AsyncIterator[Stack]:
    folder = Path(tempfile.mkdtemp(prefix="cairn-chaos-"))
    dbname = f"cairn_chaos_{uuid.uuid4().hex[:10]}"
    created_before = len(CREATED_DATABASES)
    webhook = WebhookReceiver()
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, folder, True)
        cleanup.enter_context(webhook)
        database_server.create_database(dbname)
        cleanup.callback(database_server.drop_database, dbname)
        url = database_server.url(dbname)
        await asyncio.to_thread(migrate.upgrade, url)  # alembic runs its own event loop
        temporal = TemporalDevServer(folder)
        cleanup.callback(temporal.stop)
        temporal.start()
        (folder / "storages").mkdir()
        (folder / "apps").mkdir()
        (folder / "bin").mkdir()
        restic = ResticSwitch(folder / "bin")
        settings = Settings(
            database_url=url,
            temporal_address=temporal.address,
            temporal_namespace="default",
            master_key=generate_master_key(),
            storage_mount_root=folder / "storages",
            worker_shutdown_grace_seconds=2,
            failure_webhook_url=webhook.url,
            restic_bin=str(restic.path),
            volume_roots=[folder / "apps"],
        )
        worker = WorkerProcess(settings, folder / "worker.log")
        it = Stack(database_server, dbname, folder, settings, temporal, restic, webhook, worker)

        def drop_application_databases() -> None:
            for name in CREATED_DATABASES[created_before:]:
                database_server.drop_database(name)
            for restore_id in it.restore_ids:
                for name in pg_databases.staging_names(restore_id):
                    database_server.drop_database(name)

        cleanup.callback(drop_application_databases)
        cleanup.callback(lambda: it.worker.stop())
        worker.start()
        it.api = await cleanup.enter_async_context(running_app(settings))
        it.world = await build_world(it.api)
        yield it
