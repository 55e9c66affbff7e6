"""A worker killed (SIGKILL) in the middle of an upload or a restore: after a restart the same
run completes, with exactly one snapshot per part, and a restored application is resumed.

Runs its own Temporal dev server so that only the ``cairn worker`` process under test
serves the task queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.search_attributes import SEARCH_ATTRIBUTE_KEYS
from core.settings import Settings
from db import migrate
from devstack.postgres import PostgresServer
from devstack.temporal import cli_path
from repository.store import read_password
from tests.conftest import free_port
from tests.support import histories
from tests.support.api import (
    ApiClient,
    World,
    build_world,
    expect,
    new_workspace,
    running_app,
    wait_for,
)
from tests.support.backups import finished, random_file

pytestmark = pytest.mark.integration

VOLUME_MB = 400


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CAIRN_DATABASE_URL": settings.database_url,
        "CAIRN_TEMPORAL_ADDRESS": settings.temporal_address,
        "CAIRN_MASTER_KEY": settings.master_key_text or "",
        "CAIRN_STORAGE_MOUNT_ROOT": str(settings.storage_mount_root),
        "CAIRN_VOLUME_ROOTS": ":".join(str(root) for root in settings.volume_roots),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def restic_lock_held(storage_root: Path) -> bool:
    """Whether a restic process holds a lock in a repository under ``storage_root``; a
    repository being created (written beside, then renamed) may vanish under the search."""
    try:
        return any(storage_root.glob("*/workspaces/*/applications/*/locks/*"))
    except OSError:
        return False


@pytest.fixture(scope="module")
async def isolated(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, database_server: PostgresServer
) -> AsyncIterator[Settings]:
    """Its own Temporal and its own metadata database: one database serves one Temporal
    namespace (the session's run reconciler would rightly settle rows it cannot find)."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=cli_path(),
        port=free_port(),
        search_attributes=SEARCH_ATTRIBUTE_KEYS,
        dev_server_log_level="error",
    )
    try:
        address = env.client.service_client.config.target_host
        async with isolated_settings(settings, address, tmp_path_factory, database_server) as it:
            yield it
    finally:
        await env.shutdown()


@contextlib.asynccontextmanager
async def isolated_settings(
    settings: Settings,
    temporal_address: str,
    tmp_path_factory: pytest.TempPathFactory,
    database_server: PostgresServer,
) -> AsyncIterator[Settings]:
    """``settings`` on the Temporal server at ``temporal_address`` with a metadata database of
    their own (dropped on leaving), no Proxmox and their own storages."""
    name = f"cairn_crash_{uuid.uuid4().hex[:10]}"
    database_server.create_database(name)
    try:
        url = database_server.url(name)
        await asyncio.to_thread(migrate.upgrade, url)  # alembic runs its own event loop
        yield settings.model_copy(
            update={
                "database_url": url,
                "temporal_address": temporal_address,
                "proxmox_host": None,
                "proxmox_token_id": None,
                "proxmox_token_secret": None,
                "storage_mount_root": tmp_path_factory.mktemp("crash-storages"),
            }
        )
    finally:
        database_server.drop_database(name)


async def test_sigkill_mid_upload_then_restart_completes_the_same_backup(
    isolated: Settings, tmp_path: Path
) -> None:
    volume = tmp_path / "bulk"
    volume.mkdir()
    random_file(volume / "random.bin", VOLUME_MB)
    log = tmp_path / "worker.log"
    worker = start_worker(isolated, log)
    try:
        async with running_app(isolated) as client:
            base, owner = await _bulk_app(client, await build_world(client), volume)
            accepted = await expect(await client.post(f"{base}/backups", headers=owner), 202)
            path = f"{base}/backups/{accepted['id']}"

            # restic holds a lock file in the repository while it uploads: the ground truth
            # of "mid-upload" (a 400 MB upload takes about 2 s here, less than the worker's
            # heartbeats take to carry its first byte count)
            deadline = time.monotonic() + 60
            while not restic_lock_held(isolated.storage_mount_root):
                assert time.monotonic() < deadline, "restic never started the upload"
                await asyncio.sleep(0.02)
            os.killpg(worker.pid, signal.SIGKILL)  # the worker and its restic child
            worker.wait()
            worker = start_worker(isolated, log)
            done = await wait_for(client, path, owner, finished, seconds=180)
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
    assert done["status"] == "succeeded", (done["error_message"], log.read_text()[-3000:])
    upload = next(s for s in done["timeline"]["steps"] if s["step"] == "upload_volume")
    assert upload["attempts"] >= 2
    from sqlalchemy import select

    from db.models import BackupRepository
    from db.session import make_engine, make_sessionmaker

    engine = make_engine(isolated.database_url)
    async with make_sessionmaker(engine)() as session:
        row = await session.scalar(
            select(BackupRepository).where(
                BackupRepository.application_id == uuid.UUID(base.rsplit("/", 1)[1])
            )
        )
    await engine.dispose()
    assert row is not None
    listed = subprocess.run(
        ["restic", "-r", row.path, "snapshots", "--json"],
        env={**os.environ, "RESTIC_PASSWORD": read_password(isolated, row)},
        capture_output=True,
        check=True,
    )
    parts = sorted(t for s in json.loads(listed.stdout) for t in s["tags"] if t.startswith("part="))
    assert parts == ["part=manifest", "part=volume:bulk"]
    await histories.record(
        await client.app.state.temporal.get(), done["workflow_id"], "backup-worker-killed"
    )


async def test_sigkill_mid_restore_then_restart_finishes_and_resumes_the_application(
    isolated: Settings, tmp_path: Path
) -> None:
    volume, hooks_log = tmp_path / "bulk", tmp_path / "hooks.log"
    volume.mkdir()
    random_file(volume / "random.bin", VOLUME_MB)
    original = hashlib.sha256((volume / "random.bin").read_bytes()).hexdigest()
    log = tmp_path / "worker.log"
    worker = start_worker(isolated, log)
    try:
        async with running_app(isolated) as client:
            hooks = {
                "stop": ["sh", "-c", f"echo stop >> {hooks_log}"],
                "start": ["sh", "-c", f"echo start >> {hooks_log}"],
            }
            base, owner = await _bulk_app(client, await build_world(client), volume, hooks)
            accepted = await expect(await client.post(f"{base}/backups", headers=owner), 202)
            backup = await wait_for(
                client, f"{base}/backups/{accepted['id']}", owner, finished, seconds=120
            )
            assert backup["status"] == "succeeded"
            (volume / "random.bin").write_bytes(b"changed after the backup")
            started = await expect(
                await client.post(
                    f"{base}/backups/{backup['id']}/restore",
                    json={"restore_type": "full"},
                    headers=owner,
                ),
                202,
            )
            staging = list(tmp_path.glob(".bulk.cairn-restore-*"))
            for _ in range(600):
                staging = list(tmp_path.glob(".bulk.cairn-restore-*"))
                if staging and any(p.is_file() for p in staging[0].rglob("*")):
                    break
                await asyncio.sleep(0.05)
            assert staging, "the restore never reached its volume step"
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            worker = start_worker(isolated, log)
            done = await wait_for(
                client,
                f"{base}/restores/{started['id']}",
                owner,
                lambda r: (
                    r["status"] in ("succeeded", "failed", "cancelled")
                    and (r.get("timeline") or {}).get("workflow_status") != "running"
                ),
                seconds=180,
            )
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
    assert done["status"] == "succeeded", (done["error_message"], log.read_text()[-3000:])
    assert hashlib.sha256((volume / "random.bin").read_bytes()).hexdigest() == original
    assert hooks_log.read_text().split() == ["stop", "start"]
    assert not list(tmp_path.glob(".bulk.cairn-*"))


async def _bulk_app(
    client: ApiClient, world: World, volume: Path, hooks: dict[str, list[str]] | None = None
) -> tuple[str, dict[str, str]]:
    """A workspace, an active local storage, an application with one volume, and a policy."""
    ws = await new_workspace(client, world, members=("owner",))
    admin, owner = world.auth("ws_admin"), world.auth("owner")
    storage = await expect(
        await client.post(
            f"/api/v1/workspaces/{ws}/backup-storages",
            json={"name": "disk", "type": "local", "capacity_gb": 10},
            headers=admin,
        ),
        202,
    )
    await wait_for(
        client,
        f"/api/v1/workspaces/{ws}/backup-storages/{storage['id']}",
        admin,
        lambda s: s["status"] == "active",
    )
    app = await expect(
        await client.post(
            f"/api/v1/workspaces/{ws}/applications",
            json={
                "name": "bulk",
                "owner_id": world.users["owner"],
                "platform": {"kind": "local", "volumes": {"bulk": str(volume)}, "hooks": hooks},
            },
            headers=world.auth("platform_admin"),
        ),
        201,
    )
    base = f"/api/v1/applications/{app['id']}"
    await expect(
        await client.post(
            f"{base}/backup-policy",
            json={"storage_id": storage["id"], "schedule": "0 3 * * *", "include_database": False},
            headers=owner,
        ),
        201,
    )
    return base, owner
