"""The whole service for a benchmark, as it runs in production: the Temporal dev server, a
``cairn worker`` process and a ``cairn api`` process (uvicorn, real HTTP), plus a workspace
with one local storage to which applications are added."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from core.search_attributes import SEARCH_ATTRIBUTE_KEYS
from core.settings import Settings
from db.bootstrap import create_admin
from db.session import make_engine, make_sessionmaker
from devstack.temporal import cli_path

FINAL = ("succeeded", "failed", "cancelled")


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


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ok(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise SystemExit(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json() if response.content else None


@dataclass
class Stack:
    api: httpx.AsyncClient
    temporal: Client
    admin: dict[str, str]
    owner: dict[str, str]
    owner_id: str
    workspace_id: str
    storage_id: str
    worker_pid: int
    volume_root: Path

    async def new_app(
        self,
        name: str,
        database_url: str | None,
        volume: Path | None = None,
        databases: dict[str, str] | None = None,
    ) -> str:
        """An application of the local platform with a daily policy on the bench storage;
        ``databases``: its named databases (MariaDB, Redis), beside or instead of the main."""
        platform: dict[str, Any] = {"kind": "local", "database_url": database_url}
        if volume is not None:
            platform["volumes"] = {"files": str(volume)}
        if databases:
            platform["databases"] = databases
        app = await _ok(
            await self.api.post(
                f"/api/v1/workspaces/{self.workspace_id}/applications",
                json={"name": name, "owner_id": self.owner_id, "platform": platform},
                headers=self.admin,
            ),
            201,
        )
        await _ok(
            await self.api.post(
                f"/api/v1/applications/{app['id']}/backup-policy",
                json={
                    "storage_id": self.storage_id,
                    "schedule": "0 3 * * *",
                    "include_volumes": volume is not None,
                },
                headers=self.owner,
            ),
            201,
        )
        return str(app["id"])

    async def start_backup(self, app_id: str) -> str:
        """POSTs a backup; a connection the overloaded API dropped is retried with the same
        Idempotency-Key, so a retry never starts a second run."""
        headers = {**self.owner, "Idempotency-Key": uuid.uuid4().hex}
        for attempt in range(5):
            try:
                response = await self.api.post(
                    f"/api/v1/applications/{app_id}/backups", headers=headers
                )
                return str((await _ok(response, 202))["id"])
            except httpx.TransportError:
                await asyncio.sleep(1 + attempt)
        raise SystemExit(f"the API did not accept a backup of {app_id}")

    async def until_final(self, path: str, poll: float = 0.1) -> dict[str, Any]:
        """Polls a backup or restore until its row has a final status."""
        while True:
            try:
                response = await self.api.get(path, headers=self.owner)
            except httpx.TransportError:  # a connection the overloaded API dropped
                await asyncio.sleep(poll)
                continue
            if response.status_code == 200 and response.json()["status"] in FINAL:
                return dict(response.json())
            await asyncio.sleep(poll)

    async def backup(self, app_id: str) -> tuple[float, dict[str, Any]]:
        """One backup, POST to a final status; fails the bench unless it succeeded."""
        start = time.perf_counter()
        backup_id = await self.start_backup(app_id)
        done = await self.until_final(f"/api/v1/applications/{app_id}/backups/{backup_id}")
        elapsed = time.perf_counter() - start
        if done["status"] != "succeeded":
            raise SystemExit(f"backup failed: {done['error_message']}")
        return elapsed, done

    async def restore(self, app_id: str, backup_id: str) -> tuple[float, dict[str, Any]]:
        start = time.perf_counter()
        restore = await _ok(
            await self.api.post(
                f"/api/v1/applications/{app_id}/backups/{backup_id}/restore",
                json={"restore_type": "full"},
                headers=self.owner,
            ),
            202,
        )
        done = await self.until_final(f"/api/v1/applications/{app_id}/restores/{restore['id']}")
        elapsed = time.perf_counter() - start
        if done["status"] != "succeeded":
            raise SystemExit(f"restore failed: {done['error_message']}")
        return elapsed, done

    async def workflow_closed(self, workflow_id: str) -> None:
        """Waits until the run's workflow has ended (a row succeeds before its last steps)."""
        await self.temporal.get_workflow_handle(workflow_id).result()


def _service(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--log-level", "WARNING", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def cairn_stack(settings: Settings, work: Path) -> AsyncIterator[Stack]:
    """Temporal, worker and API for ``settings``' metadata database; stopped on exit."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=cli_path(),
        search_attributes=SEARCH_ATTRIBUTE_KEYS,
        dev_server_log_level="error",
    )
    port = _free_port()
    volume_root = work / "apps"
    volume_root.mkdir(parents=True, exist_ok=True)
    service_env = {
        **os.environ,
        "CAIRN_DATABASE_URL": settings.database_url,
        "CAIRN_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "CAIRN_MASTER_KEY": settings.master_key_text or "",
        "CAIRN_STORAGE_MOUNT_ROOT": str(settings.storage_mount_root),
        "CAIRN_VOLUME_ROOTS": str(volume_root),
        "CAIRN_DATA_DIR": str(work / "cairn-data"),
        "CAIRN_API_PORT": str(port),
    }
    worker = _service(["worker"], service_env, work / "worker.log")
    api = _service(["api"], service_env, work / "api.log")
    engine = make_engine(settings.database_url)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=120,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        ) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or api.poll() is not None:
                    raise SystemExit(f"the API did not start; see {work / 'api.log'}")
                await asyncio.sleep(0.3)
            async with make_sessionmaker(engine)() as session:
                admin = {
                    "Authorization": f"Bearer {await create_admin(session, 'bench@cairn.test')}"
                }
            tag = uuid.uuid4().hex[:6]
            user = await _ok(
                await client.post(
                    "/api/v1/admin/users",
                    json={"email": f"owner-{tag}@cairn.test", "name": "owner"},
                    headers=admin,
                ),
                201,
            )
            token = await _ok(
                await client.post(
                    f"/api/v1/admin/users/{user['id']}/tokens", json={}, headers=admin
                ),
                201,
            )
            owner = {"Authorization": f"Bearer {token['token']}"}
            ws = await _ok(
                await client.post(
                    "/api/v1/admin/workspaces",
                    json={"name": f"bench-{tag}", "plan": "dedicated", "backup_quota_gb": 10_000},
                    headers=admin,
                ),
                201,
            )
            await _ok(
                await client.post(
                    f"/api/v1/workspaces/{ws['id']}/members",
                    json={"user_id": user["id"], "role": "admin"},
                    headers=admin,
                ),
                201,
            )
            storage = await _ok(
                await client.post(
                    f"/api/v1/workspaces/{ws['id']}/backup-storages",
                    json={"name": "bench", "type": "local", "capacity_gb": 5_000},
                    headers=owner,
                ),
                202,
            )
            while True:
                body = await _ok(
                    await client.get(
                        f"/api/v1/workspaces/{ws['id']}/backup-storages/{storage['id']}",
                        headers=owner,
                    ),
                    200,
                )
                if body["status"] == "active":
                    break
                await asyncio.sleep(0.3)
            yield Stack(
                client,
                env.client,
                admin,
                owner,
                user["id"],
                ws["id"],
                storage["id"],
                worker.pid,
                volume_root,
            )
    finally:
        _stop(api)
        _stop(worker)
        await engine.dispose()
        await env.shutdown()
