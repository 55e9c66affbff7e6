"""The whole service for a benchmark: Temporal dev server, a ``cairn worker`` process, the API
in-process, and one application whose database is the one under test."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
from temporalio.testing import WorkflowEnvironment

from core.search_attributes import SEARCH_ATTRIBUTE_KEYS
from core.settings import Settings
from devstack.temporal import cli_path
from tests.support.api import build_world, expect, new_workspace, running_app, wait_for


class PeakRss:
    """Peak resident memory of a process tree (the worker and its pg_dump/restic children)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                total = sum(p.memory_info().rss for p in tree if p.is_running())
            except psutil.Error:
                total = 0
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(label: str, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    print(f"  {label:<40} {elapsed:8.2f} s", flush=True)
    return elapsed


@dataclass
class Stack:
    api: httpx.AsyncClient
    owner: dict[str, str]
    app_id: str
    worker_pid: int

    async def until(self, path: str, done: Callable[[Any], bool]) -> Any:
        return await wait_for(self.api, path, self.owner, done, seconds=7200)


def finished(body: dict[str, Any]) -> bool:
    timeline = body.get("timeline") or {}
    return body["status"] in ("succeeded", "failed", "cancelled") and timeline.get(
        "workflow_status"
    ) not in (None, "running")


@contextlib.asynccontextmanager
async def cairn_stack(settings: Settings, database_url: str) -> AsyncIterator[Stack]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=cli_path(), search_attributes=SEARCH_ATTRIBUTE_KEYS,
        dev_server_log_level="error",
    )  # fmt: skip
    settings = settings.model_copy(
        update={"temporal_address": env.client.service_client.config.target_host}
    )
    worker_env = {
        **os.environ,
        "CAIRN_DATABASE_URL": settings.database_url,
        "CAIRN_TEMPORAL_ADDRESS": settings.temporal_address,
        "CAIRN_MASTER_KEY": settings.master_key_text or "",
        "CAIRN_STORAGE_MOUNT_ROOT": str(settings.storage_mount_root),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--log-level", "WARNING", "worker"], env=worker_env
    )
    try:
        async with running_app(settings) as api:
            world = await build_world(api)
            ws = await new_workspace(api, world, quota_gb=10_000, members=("owner",))
            admin, owner = world.auth("ws_admin"), world.auth("owner")
            storage = await expect(
                await api.post(
                    f"/api/v1/workspaces/{ws}/backup-storages",
                    json={"name": "bench", "type": "local", "capacity_gb": 5_000}, headers=admin,
                ),
                202,
            )  # fmt: skip
            await wait_for(
                api, f"/api/v1/workspaces/{ws}/backup-storages/{storage['id']}", admin,
                lambda s: s["status"] == "active", seconds=60,
            )  # fmt: skip
            app = await expect(
                await api.post(
                    f"/api/v1/workspaces/{ws}/applications",
                    json={"name": "bench", "owner_id": world.users["owner"],
                          "platform": {"kind": "local", "database_url": database_url}},
                    headers=world.auth("platform_admin"),
                ),
                201,
            )  # fmt: skip
            await expect(
                await api.post(
                    f"/api/v1/applications/{app['id']}/backup-policy",
                    json={"storage_id": storage["id"], "schedule": "0 3 * * *",
                          "include_volumes": False},
                    headers=owner,
                ),
                201,
            )  # fmt: skip
            yield Stack(api, owner, app["id"], worker.pid)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        await env.shutdown()
