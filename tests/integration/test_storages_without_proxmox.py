"""The embedded default: no Proxmox, ``local`` storages are folders under the mount root.

Runs its own Temporal dev server and worker, because the session's worker drives the PVE fake.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.storage import StorageActivities
from adapters.storage_backend import BackendError, backend_for
from core.search_attributes import SEARCH_ATTRIBUTE_KEYS
from core.settings import Settings
from db.session import make_engine, make_sessionmaker
from devstack.temporal import cli_path
from tests.conftest import free_port
from tests.support.api import ApiClient, World, expect, new_workspace, running_app, wait_for
from tests.support.workers import running_workers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def local_api(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ApiClient, Settings]]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=cli_path(),
        port=free_port(),
        search_attributes=SEARCH_ATTRIBUTE_KEYS,
        dev_server_log_level="error",
    )
    local = settings.model_copy(
        update={
            "temporal_address": env.client.service_client.config.target_host,
            "proxmox_host": None,
            "proxmox_token_id": None,
            "proxmox_token_secret": None,
            "storage_mount_root": tmp_path_factory.mktemp("local-storages"),
        }
    )
    try:
        async with running_workers(local, env.client), running_app(local) as client:
            yield client, local
    finally:
        await env.shutdown()


async def test_local_storage_is_a_folder_and_remote_types_are_refused(
    local_api: tuple[ApiClient, Settings], api: ApiClient, world: World
) -> None:
    client, local = local_api
    ws = await new_workspace(api, world)
    admin = world.auth("ws_admin")
    url = f"/api/v1/workspaces/{ws}/backup-storages"
    accepted = await expect(
        await client.post(
            url, json={"name": "disk", "type": "local", "capacity_gb": 5}, headers=admin
        ),
        202,
    )
    storage = await wait_for(
        client, f"{url}/{accepted['id']}", admin, lambda s: s["status"] == "active"
    )
    folder = Path(local.storage_mount_root) / storage["proxmox_storage_id"]
    assert folder.is_dir()
    body = {
        "name": "share",
        "type": "nfs",
        "capacity_gb": 5,
        "connection": {"server": "nas", "export": "/backup"},
    }
    problem = await expect(await client.post(url, json=body, headers=admin), 422)
    assert problem["type"] == "/problems/proxmox-not-configured"
    assert "CAIRN_PROXMOX" in problem["detail"]
    await expect(await client.delete(f"{url}/{accepted['id']}", headers=admin), 202)
    await wait_for(client, f"{url}/{accepted['id']}", admin, None)
    assert not folder.exists()


async def test_a_storage_whose_folder_vanished_is_reported_unavailable(
    local_api: tuple[ApiClient, Settings], api: ApiClient, world: World
) -> None:
    """The usage refresh of one storage (the activity, so other tests' storages are left alone)."""
    client, local = local_api
    ws = await new_workspace(api, world)
    admin = world.auth("ws_admin")
    url = f"/api/v1/workspaces/{ws}/backup-storages"
    accepted = await expect(
        await client.post(
            url, json={"name": "disk", "type": "local", "capacity_gb": 5}, headers=admin
        ),
        202,
    )
    storage = await wait_for(
        client, f"{url}/{accepted['id']}", admin, lambda s: s["status"] == "active"
    )
    folder = Path(local.storage_mount_root) / storage["proxmox_storage_id"]
    backend = backend_for(local)
    folder.rename(folder.with_name(folder.name + ".unmounted"))
    with pytest.raises(BackendError) as missing:
        backend.status(storage["proxmox_storage_id"])
    assert not missing.value.retryable and "does not exist" in missing.value.message
    engine = make_engine(local.database_url)
    try:
        activities = StorageActivities(make_sessionmaker(engine), local, backend)
        usage = await ActivityEnvironment().run(activities.refresh_storage_usage, storage["id"])
        assert usage.status == "unavailable"
        body = await expect(await client.get(f"{url}/{storage['id']}", headers=admin), 200)
        assert body["status"] == "unavailable"
        assert "does not exist" in body["status_message"] and str(folder) in body["status_message"]
        assert not folder.exists(), "the refresh recreated the vanished folder"
        folder.with_name(folder.name + ".unmounted").rename(folder)
        usage = await ActivityEnvironment().run(activities.refresh_storage_usage, storage["id"])
        assert usage.status == "active"
    finally:
        await engine.dispose()


async def test_local_storage_usage_is_its_repositories_and_the_disk_is_shown_beside(
    local_api: tuple[ApiClient, Settings], api: ApiClient, world: World
) -> None:
    """The local backend answers like PVE (the file system's figures); cairn counts its own."""
    client, local = local_api
    ws = await new_workspace(api, world)
    admin = world.auth("ws_admin")
    url = f"/api/v1/workspaces/{ws}/backup-storages"
    accepted = await expect(
        await client.post(
            url, json={"name": "disk", "type": "local", "capacity_gb": 5}, headers=admin
        ),
        202,
    )
    storage = await wait_for(
        client, f"{url}/{accepted['id']}", admin, lambda s: s["status"] == "active"
    )
    pve_id = storage["proxmox_storage_id"]
    folder = Path(local.storage_mount_root) / pve_id
    (folder / "not-cairns.bin").write_bytes(b"o" * 9000)
    repo = folder / "workspaces" / ws / "applications" / "app"
    repo.mkdir(parents=True)
    (repo / "pack").write_bytes(b"r" * 3000)
    backend = backend_for(local)
    status = backend.status(pve_id)
    disk = shutil.disk_usage(folder)
    assert status.total_bytes == disk.total and status.used_bytes > 9000
    engine = make_engine(local.database_url)
    try:
        activities = StorageActivities(make_sessionmaker(engine), local, backend)
        usage = await ActivityEnvironment().run(activities.refresh_storage_usage, storage["id"])
        assert (usage.status, usage.used_bytes, usage.total_bytes) == ("active", 3000, disk.total)
        body = await expect(await client.get(f"{url}/{storage['id']}", headers=admin), 200)
        assert body["used_bytes"] == 3000 and body["used_gb"] == 1
        assert body["filesystem_total_bytes"] == disk.total
        assert body["filesystem_used_bytes"] > body["used_bytes"]
        assert body["available_bytes"] > 0
    finally:
        await engine.dispose()
