"""Backup storages through the API, provisioned by real workflows against the PVE fake."""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client

from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.fakes.pve import FakePVE
from tests.support import histories
from tests.support.api import ApiClient, World, expect, new_workspace, temporal_refresh, wait_for
from tests.support.backups import make_app, run_backup
from tests.support.database import libpq_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

KEYRING = "AQBkeyring-secret-value-0123456789=="
NFS = {"server": "10.0.0.5", "export": "/exports/backup", "options": "vers=4.2"}
CEPH = {
    "monhost": ["10.0.0.1", "10.0.0.2"],
    "username": "backup",
    "fs_name": "cephfs",
    "subdir": "/cairn",
    "keyring": KEYRING,
}


def storages_url(ws: str) -> str:
    return f"/api/v1/workspaces/{ws}/backup-storages"


async def create(
    api: ApiClient,
    world: World,
    ws: str,
    kind: str,
    connection: dict[str, Any] | None = None,
    capacity: int = 10,
    name: str | None = None,
    wait: str | None = "active",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name or f"{kind}-{uuid.uuid4().hex[:6]}",
        "type": kind,
        "capacity_gb": capacity,
    }
    if connection is not None:
        body["connection"] = connection
    accepted = await expect(
        await api.post(storages_url(ws), json=body, headers=world.auth("ws_admin")), 202
    )
    assert accepted["status"] == "pending"
    assert accepted["workflow_id"] == f"storage-provision-{accepted['id']}"
    assert accepted["temporal_ui_url"].endswith(f"/workflows/storage-provision-{accepted['id']}")
    if wait is None:
        return dict(accepted)
    return dict(
        await wait_for(
            api,
            f"{storages_url(ws)}/{accepted['id']}",
            world.auth("member"),
            lambda s: s["status"] in ("active", "error"),
        )
    )


@pytest.fixture
async def ws(api: ApiClient, world: World) -> str:
    return await new_workspace(api, world)


async def test_each_type_becomes_active_with_exact_pve_definition(
    api: ApiClient,
    world: World,
    ws: str,
    pve: FakePVE,
    settings: Settings,
    temporal_client: Client,
) -> None:
    local = await create(api, world, ws, "local")
    nfs = await create(api, world, ws, "nfs", NFS)
    ceph = await create(api, world, ws, "ceph", CEPH)
    for storage in (local, nfs, ceph):
        assert storage["status"] == "active", storage
    await histories.record(
        temporal_client, f"storage-provision-{ceph['id']}", "storage-provision-ceph"
    )
    assert pve.storages[local["proxmox_storage_id"]] == {
        "type": "dir",
        "path": str(settings.storage_mount_root / local["proxmox_storage_id"]),
        "content": "backup",
    }
    nfs_def = pve.storages[nfs["proxmox_storage_id"]]
    assert {k: nfs_def[k] for k in ("type", "server", "export", "options", "content")} == {
        "type": "nfs",
        "server": "10.0.0.5",
        "export": "/exports/backup",
        "options": "vers=4.2",
        "content": "backup",
    }
    ceph_def = pve.storages[ceph["proxmox_storage_id"]]
    assert ceph_def["type"] == "cephfs" and ceph_def["fs-name"] == "cephfs"
    assert ceph_def["username"] == "backup" and ceph_def["subdir"] == "/cairn"
    assert pve.secrets[ceph["proxmox_storage_id"]] == {"keyring": KEYRING}
    assert ceph["connection"] == {k: v for k, v in CEPH.items() if k != "keyring"}
    assert ceph["secrets_set"] == ["keyring"]
    listed = await expect(await api.get(storages_url(ws), headers=world.auth("member")), 200)
    shown = {s["proxmox_storage_id"] for s in listed["items"]}
    assert shown == {
        local["proxmox_storage_id"],
        nfs["proxmox_storage_id"],
        ceph["proxmox_storage_id"],
    }
    assert shown <= set(pve.storages)


async def test_transient_pve_failures_are_retried_to_one_storage(
    api: ApiClient, world: World, ws: str, pve: FakePVE
) -> None:
    before = set(pve.storages)
    pve.fail_next(3, status=500, message="proxy loop detected")
    storage = await create(api, world, ws, "nfs", NFS)
    assert storage["status"] == "active" and storage["status_message"] is None
    assert set(pve.storages) - before == {storage["proxmox_storage_id"]}


async def test_pve_rejection_ends_in_error_without_endless_retries(
    api: ApiClient, world: World, ws: str, pve: FakePVE, temporal_client: Client
) -> None:
    pve.fail_next(1, status=400, message="Parameter verification failed.")
    storage = await create(api, world, ws, "nfs", NFS)
    assert storage["status"] == "error"
    assert "Parameter verification failed" in storage["status_message"]
    handle = temporal_client.get_workflow_handle(f"storage-provision-{storage['id']}")
    assert await handle.result() == "error"
    await histories.record(temporal_client, handle.id, "storage-provision-rejected")
    attempts = [
        e.activity_task_started_event_attributes.attempt
        async for e in handle.fetch_history_events()
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert max(attempts) == 1


async def test_quota_counts_every_storage_of_the_workspace(
    api: ApiClient, world: World, pve: FakePVE, settings: Settings
) -> None:
    ws = await new_workspace(api, world, quota_gb=30)
    await create(api, world, ws, "local", capacity=20)
    calls = len(pve.calls)
    from tests.support.database import snapshot

    before = snapshot(settings.database_url)
    problem = await expect(
        await api.post(
            storages_url(ws),
            json={"name": "big", "type": "local", "capacity_gb": 11},
            headers=world.auth("ws_admin"),
        ),
        409,
    )
    assert problem["type"] == "/problems/quota-exceeded"
    assert (problem["quota_gb"], problem["allocated_gb"], problem["requested_gb"]) == (30, 20, 11)
    assert "30 GB" in problem["detail"] and "20 GB" in problem["detail"]
    assert snapshot(settings.database_url) == before and len(pve.calls) == calls
    await create(api, world, ws, "local", capacity=10)


async def test_plan_and_roles(api: ApiClient, world: World, ws: str) -> None:
    body = {"name": "x", "type": "local", "capacity_gb": 1}
    free = world.workspaces["free"]
    problem = await expect(
        await api.post(storages_url(free), json=body, headers=world.auth("free_admin")), 403
    )
    assert problem["type"] == "/problems/plan-required"
    await expect(await api.get(storages_url(free), headers=world.auth("free_admin")), 403)
    problem = await expect(
        await api.post(storages_url(ws), json=body, headers=world.auth("member")), 403
    )
    assert problem["type"] == "/problems/forbidden"
    await expect(
        await api.post(storages_url(ws), json=body, headers=world.auth("other_admin")), 404
    )
    await expect(await api.get(storages_url(ws), headers=world.auth("other_admin")), 404)
    await expect(await api.get(storages_url(ws), headers=world.auth("member")), 200)
    storage = await create(api, world, ws, "local")
    path = f"{storages_url(ws)}/{storage['id']}"
    await expect(await api.get(path, headers=world.auth("other_admin")), 404)
    foreign = f"{storages_url(world.workspaces['b'])}/{storage['id']}"
    await expect(await api.get(foreign, headers=world.auth("other_admin")), 404)
    await expect(await api.put(path, json={"capacity_gb": 2}, headers=world.auth("member")), 403)
    await expect(await api.delete(path, headers=world.auth("member")), 403)
    await expect(await api.delete(path, headers=world.auth("other_admin")), 404)


def bad_bodies() -> list[tuple[dict[str, Any] | bytes, int, str]]:
    ok = {"name": "fine", "type": "nfs", "capacity_gb": 5, "connection": NFS}
    return [
        (b"{", 400, "malformed-json"),
        ({**ok, "name": "Has Spaces"}, 422, "body.name"),
        ({**ok, "name": "../../etc"}, 422, "body.name"),
        ({**ok, "name": "a" * 64}, 422, "body.name"),
        ({**ok, "type": "s3"}, 422, "type"),
        ({**ok, "capacity_gb": 0}, 422, "capacity_gb"),
        ({**ok, "capacity_gb": -5}, 422, "capacity_gb"),
        ({**ok, "capacity_gb": 10**9}, 422, "capacity_gb"),
        ({**ok, "capacity_gb": "ten"}, 422, "capacity_gb"),
        ({**ok, "connection": {"server": "10.0.0.5"}}, 422, "export"),
        ({**ok, "connection": {**NFS, "export": "/exports/../etc"}}, 422, "export"),
        ({**ok, "connection": {**NFS, "export": "relative"}}, 422, "export"),
        ({**ok, "connection": {**NFS, "server": "a b;rm -rf"}}, 422, "server"),
        # what PVE itself would refuse (400) or store differently, caught before it is asked
        ({**ok, "connection": {**NFS, "server": "10.0.0.5:2049"}}, 422, "server"),
        ({**ok, "connection": {**NFS, "server": "nas.example:2049"}}, 422, "server"),
        ({**ok, "connection": {**NFS, "server": "[fd00::5]"}}, 422, "server"),
        ({**ok, "connection": {**NFS, "export": "/exports//backup"}}, 422, "export"),
        ({**ok, "connection": {**NFS, "export": "/exports/backup/"}}, 422, "export"),
        ({**ok, "type": "ceph", "connection": {**CEPH, "fs_name": "1cephfs"}}, 422, "fs_name"),
        ({**ok, "type": "ceph", "connection": {**CEPH, "fs_name": "c"}}, 422, "fs_name"),
        ({**ok, "type": "ceph", "connection": {**CEPH, "fs_name": "ceph.fs"}}, 422, "fs_name"),
        ({**ok, "type": "ceph", "connection": {**CEPH, "monhost": ["[10.0.0.1"]}}, 422, "monhost"),
        ({**ok, "type": "ceph", "connection": {**CEPH, "monhost": ["mon:port"]}}, 422, "monhost"),
        ({**ok, "type": "ceph", "connection": {**CEPH, "subdir": "/cairn/./x"}}, 422, "subdir"),
        ({**ok, "type": "ceph", "connection": {**CEPH, "keyring": "not-a-key"}}, 422, "keyring"),
        ({**ok, "type": "ceph", "connection": {**CEPH, "keyring": "AQB key=="}}, 422, "keyring"),
        ({**ok, "connection": {**NFS, "options": "vers=4,$(reboot)"}}, 422, "options"),
        ({**ok, "connection": {**NFS, "path": "/mnt/x"}}, 422, "path"),
        ({**ok, "type": "ceph", "connection": {**CEPH, "keyring": ""}}, 422, "keyring"),
        (
            {**ok, "type": "ceph", "connection": {k: v for k, v in CEPH.items() if k != "keyring"}},
            422,
            "keyring",
        ),
        ({**ok, "type": "ceph", "connection": {**CEPH, "monhost": []}}, 422, "monhost"),
        ({**ok, "type": "local", "connection": {"path": "/etc"}}, 422, "path"),
        ({**ok, "extra": 1}, 422, "extra"),
    ]


async def test_bad_input_changes_neither_database_nor_pve(
    api: ApiClient, world: World, ws: str, pve: FakePVE, unchanged: None
) -> None:
    calls = len(pve.calls)
    failures = []
    for body, status, mention in bad_bodies():
        kwargs: dict[str, Any] = (
            {"content": body, "headers": {"Content-Type": "application/json"}}
            if isinstance(body, bytes)
            else {"json": body}
        )
        kwargs["headers"] = {**kwargs.get("headers", {}), **world.auth("ws_admin")}
        response = await api.post(storages_url(ws), **kwargs)
        if response.status_code != status or mention not in response.text:
            failures.append(f"{body!r}: {response.status_code} {response.text}")
        assert response.headers["content-type"] == "application/problem+json"
    assert not failures, "\n".join(failures)
    for path in ("not-a-uuid", str(uuid.uuid4())):
        response = await api.get(f"{storages_url(ws)}/{path}", headers=world.auth("ws_admin"))
        assert response.status_code in (404, 422)
    assert len(pve.calls) == calls


async def test_bad_connection_updates_change_neither_database_nor_pve(
    api: ApiClient, world: World, ws: str, pve: FakePVE
) -> None:
    admin = world.auth("ws_admin")
    nfs = await create(api, world, ws, "nfs", NFS)
    ceph = await create(api, world, ws, "ceph", CEPH)
    bad = [
        (nfs, {**NFS, "server": "10.0.0.5:2049"}, "server"),
        (ceph, {**CEPH, "fs_name": "9lives"}, "fs_name"),
        (ceph, {**CEPH, "keyring": "plain-password"}, "keyring"),
        (ceph, {**CEPH, "monhost": ["[fd00::1]:x"]}, "monhost"),
    ]
    calls = len(pve.calls)
    for storage, connection, field in bad:
        url = f"{storages_url(ws)}/{storage['id']}"
        problem = await expect(
            await api.put(url, json={"connection": connection}, headers=admin), 422
        )
        assert field in json.dumps(problem), problem
        body = await expect(await api.get(url, headers=admin), 200)
        assert body["status"] == "active" and body["updated_at"] == storage["updated_at"]
    assert len(pve.calls) == calls


async def test_duplicate_name_is_a_conflict(api: ApiClient, world: World, ws: str) -> None:
    await create(api, world, ws, "local", name="primary")
    body = {"name": "primary", "type": "local", "capacity_gb": 1}
    problem = await expect(
        await api.post(storages_url(ws), json=body, headers=world.auth("ws_admin")), 409
    )
    assert "primary" in problem["detail"]


async def test_update_rename_resize_and_reprovision(
    api: ApiClient, world: World, ws: str, pve: FakePVE, settings: Settings
) -> None:
    storage = await create(api, world, ws, "nfs", NFS, capacity=10)
    path = f"{storages_url(ws)}/{storage['id']}"
    admin = world.auth("ws_admin")
    updated = await expect(
        await api.put(path, json={"name": "renamed", "capacity_gb": 12}, headers=admin), 200
    )
    assert (updated["name"], updated["capacity_gb"]) == ("renamed", 12)
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE backup_storages SET used_bytes = %s WHERE id = %s",
            (5 * 1024**3 + 1, storage["id"]),
        )
    problem = await expect(await api.put(path, json={"capacity_gb": 5}, headers=admin), 409)
    assert problem["type"] == "/problems/capacity-below-usage" and problem["used_gb"] == 6
    problem = await expect(
        await api.put(path, json={"connection": {**NFS, "server": "10.9.9.9"}}, headers=admin), 422
    )
    assert problem["type"] == "/problems/fixed-connection-setting"
    accepted = await expect(
        await api.put(path, json={"connection": {**NFS, "options": "vers=3"}}, headers=admin), 200
    )
    assert accepted["status"] == "pending" and accepted["workflow_id"]
    await wait_for(api, path, admin, lambda s: s["status"] == "active")
    assert pve.storages[storage["proxmox_storage_id"]]["options"] == "vers=3"


async def test_delete_rules_and_forced_delete(
    api: ApiClient, world: World, ws: str, pve: FakePVE, settings: Settings
) -> None:
    storage = await create(api, world, ws, "local")
    pve_id, path = storage["proxmox_storage_id"], f"{storages_url(ws)}/{storage['id']}"
    admin = world.auth("ws_admin")
    repo = settings.storage_mount_root / pve_id / "workspaces" / ws / "applications" / "x"
    repo.mkdir(parents=True)
    (repo / "data").write_bytes(b"x" * 4096)
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "INSERT INTO backup_policies (application_id, storage_id, schedule) VALUES (%s, %s,"
            " '0 3 * * *')",
            (world.apps["a"], storage["id"]),
        )
    problem = await expect(await api.delete(path, headers=admin), 409)
    assert problem["application_ids"] == [world.apps["a"]]
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute("DELETE FROM backup_policies WHERE storage_id = %s", (storage["id"],))
    await temporal_refresh(api)
    problem = await expect(await api.delete(path, headers=admin), 409)
    assert "force=true" in problem["detail"] and problem["used_bytes"] >= 4096
    accepted = await expect(await api.delete(f"{path}?force=true", headers=admin), 202)
    assert accepted["status"] == "deleting"
    await wait_for(api, path, admin, None)
    assert pve_id not in pve.storages
    await histories.record(
        await api.app.state.temporal.get(),  # type: ignore[attr-defined]
        f"storage-delete-{storage['id']}",
        "storage-delete-forced",
    )
    assert not (settings.storage_mount_root / pve_id / "workspaces").exists()
    events = await expect(
        await api.get(f"/api/v1/workspaces/{ws}/audit-events", headers=admin), 200
    )
    actions = [
        (e["action"], e["details"].get("force"))
        for e in events["items"]
        if e["target_id"] == storage["id"]
    ]
    assert ("storage.delete", True) in actions and ("storage.deleted", None) in actions


async def test_usage_refresh_records_numbers_and_flips_availability(
    api: ApiClient, world: World, ws: str, pve: FakePVE, settings: Settings
) -> None:
    storage = await create(api, world, ws, "nfs", NFS, capacity=50)
    pve_id, path = storage["proxmox_storage_id"], f"{storages_url(ws)}/{storage['id']}"
    reader = world.auth("member")
    repo = settings.storage_mount_root / pve_id / "workspaces" / ws / "applications" / "a"
    repo.mkdir(parents=True)
    (repo / "pack").write_bytes(b"x" * 5000)
    (settings.storage_mount_root / pve_id / "someone-elses.bin").write_bytes(b"y" * 7000)
    # the share holds 3 GiB in all: other data, not this storage's
    pve.set_usage(pve_id, total=100 * 1024**3, used=3 * 1024**3)
    await temporal_refresh(api)
    body = await expect(await api.get(path, headers=reader), 200)
    assert (body["status"], body["used_bytes"], body["used_gb"]) == ("active", 5000, 1)
    assert (body["filesystem_total_bytes"], body["filesystem_used_bytes"]) == (
        100 * 1024**3,
        3 * 1024**3,
    )
    assert body["available_bytes"] == 97 * 1024**3 and body["usage_read_at"]
    pve.set_active(pve_id, False)
    await temporal_refresh(api)
    body = await expect(await api.get(path, headers=reader), 200)
    assert body["status"] == "unavailable" and "inactive" in body["status_message"]
    pve.set_active(pve_id, True)
    pve.set_usage(pve_id, total=100 * 1024**3, used=4 * 1024**3)
    (repo / "pack2").write_bytes(b"x" * 1000)
    await temporal_refresh(api)
    body = await expect(await api.get(path, headers=reader), 200)
    assert body["status"] == "active" and body["used_bytes"] == 6000
    assert body["filesystem_used_bytes"] == 4 * 1024**3
    usage = await expect(
        await api.get(f"/api/v1/workspaces/{ws}/backup-usage", headers=reader), 200
    )
    entry = next(s for s in usage["storages"] if s["storage_id"] == storage["id"])
    assert [h["active"] for h in entry["history"]] == [True, False, True]
    assert [h["used_bytes"] for h in entry["history"]] == [5000, 5000, 6000]
    assert [h["filesystem_used_bytes"] for h in entry["history"]] == [3 * 1024**3, 0, 4 * 1024**3]
    assert entry["used_bytes"] == 6000 and entry["filesystem_total_bytes"] == 100 * 1024**3
    assert usage["quota_gb"] == 1000 and usage["allocated_gb"] >= 50


async def test_a_storage_restricted_to_other_nodes_is_unavailable(
    api: ApiClient, world: World, ws: str, pve: FakePVE
) -> None:
    """PVE answers such a storage with enabled 0 (not an error): cairn says why."""
    storage = await create(api, world, ws, "nfs", NFS)
    path = f"{storages_url(ws)}/{storage['id']}"
    pve.storages[storage["proxmox_storage_id"]]["nodes"] = "pve9"
    try:
        await temporal_refresh(api)
    finally:
        del pve.storages[storage["proxmox_storage_id"]]["nodes"]
    body = await expect(await api.get(path, headers=world.auth("member")), 200)
    assert body["status"] == "unavailable" and "disabled" in body["status_message"]
    await temporal_refresh(api)
    body = await expect(await api.get(path, headers=world.auth("member")), 200)
    assert body["status"] == "active"


async def test_usage_and_quota_count_cairns_bytes_not_the_file_systems(
    api: ApiClient,
    world: World,
    pve: FakePVE,
    settings: Settings,
    database_server: PostgresServer,
    tmp_path: Path,
) -> None:
    """A storage on a file system that already holds other data (issue 16's acceptance)."""
    app = await make_app(api, world, database_server, tmp_path, capacity_gb=1)
    folder = settings.storage_mount_root / app.storage_pve_id
    other = folder / "other-data.bin"
    with other.open("wb") as handle:
        handle.truncate(2 * 1024**3)  # sparse: 2 GiB of someone else's data, costs nothing
    url = f"{storages_url(app.workspace)}/{app.storage}"
    owner = world.auth("owner")
    try:
        backup = await run_backup(api, world, app)
        assert backup["status"] == "succeeded", backup  # not refused: the 2 GiB are not ours
        await temporal_refresh(api)
        body = await expect(await api.get(url, headers=owner), 200)
        repository = folder / "workspaces" / app.workspace / "applications" / app.id
        size = sum(f.stat().st_size for f in repository.rglob("*") if f.is_file())
        assert body["used_bytes"] == size > 0
        assert body["used_bytes"] < 1024**3 and body["used_gb"] == 1
        disk = shutil.disk_usage(folder)
        assert body["filesystem_total_bytes"] == disk.total
        assert body["filesystem_used_bytes"] > body["used_bytes"]

        # the file system (shared with other data) is nearly full: its own refusal
        pve.set_usage(app.storage_pve_id, total=50 * 1024**3, used=50 * 1024**3 - 1024**2)
        full = await run_backup(api, world, app)
        assert full["status"] == "failed", full
        assert "file system of storage main is nearly full" in full["error_message"]
        assert "1.0 MiB free of 50.00 GiB" in full["error_message"]
        assert "this backup needs about" in full["error_message"]
        assert "GB quota" not in full["error_message"]  # nor the capacity's wording:
        assert "Grow the storage" not in full["error_message"]
        steps = [s["step"] for s in full["timeline"]["steps"]]
        assert "dump_database" not in steps and "upload_volume" not in steps
    finally:
        other.unlink()
        pve.reset_usage(app.storage_pve_id)


async def test_unreachable_pve_marks_storage_unavailable(
    api: ApiClient, world: World, ws: str, pve: FakePVE
) -> None:
    storage = await create(api, world, ws, "nfs", NFS)
    path = f"{storages_url(ws)}/{storage['id']}"
    pve.reject_auth(True)
    try:
        await temporal_refresh(api)
    finally:
        pve.reject_auth(False)
    body = await expect(await api.get(path, headers=world.auth("member")), 200)
    assert body["status"] == "unavailable" and "invalid token" in body["status_message"]
    await temporal_refresh(api)
    body = await expect(await api.get(path, headers=world.auth("member")), 200)
    assert body["status"] == "active"


async def test_keyring_never_leaves_in_clear(
    api: ApiClient,
    world: World,
    ws: str,
    settings: Settings,
    temporal_client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = await create(api, world, ws, "ceph", CEPH)
    assert KEYRING not in json.dumps(storage)
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        dump = conn.execute(
            "SELECT row_to_json(s)::text FROM backup_storages s WHERE id = %s", (storage["id"],)
        ).fetchone()
        audit = conn.execute("SELECT string_agg(details::text, ' ') FROM audit_events").fetchone()
    assert dump and KEYRING not in dump[0] and audit and KEYRING not in (audit[0] or "")
    history = await temporal_client.get_workflow_handle(
        f"storage-provision-{storage['id']}"
    ).fetch_history()
    assert KEYRING not in history.to_json()
    assert KEYRING not in caplog.text


@contextlib.contextmanager
def folder_gone(folder: Path) -> Iterator[None]:
    """The storage's folder disappears (as when its disk is unmounted) and comes back after."""
    hidden = folder.with_name(f".{folder.name}.unmounted")
    folder.rename(hidden)
    try:
        yield
    finally:
        if folder.exists():  # recreated by someone: keep the evidence out of the way
            shutil.rmtree(folder)
        hidden.rename(folder)


async def test_a_local_storage_whose_folder_vanished_is_unavailable_and_backups_fail(
    api: ApiClient,
    world: World,
    pve: FakePVE,
    settings: Settings,
    database_server: PostgresServer,
    tmp_path: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path)
    folder = Path(settings.storage_mount_root) / app.storage_pve_id
    assert folder.is_dir() and pve.storages[app.storage_pve_id]["type"] == "dir"
    url = f"{storages_url(app.workspace)}/{app.storage}"
    owner = world.auth("owner")
    with folder_gone(folder):
        # Before any refresh: the quota check itself finds the folder missing, at once.
        early = await run_backup(api, world, app)
        assert early["status"] == "failed", early
        assert app.storage_pve_id in early["error_message"]
        assert "does not exist" in early["error_message"]
        quota = next(s for s in early["timeline"]["steps"] if s["step"] == "check_quota")
        assert quota["attempts"] == 1
        await temporal_refresh(api)
        body = await expect(await api.get(url, headers=owner), 200)
        assert body["status"] == "unavailable", body
        assert "does not exist" in body["status_message"]
        assert "not mounted" in body["status_message"]
        failed = await run_backup(api, world, app)
        assert failed["status"] == "failed", failed
        assert f"backup storage {body['name']} is unavailable" in failed["error_message"]
        assert "does not exist" in failed["error_message"]
        assert not folder.exists(), "the vanished folder was recreated"
    await temporal_refresh(api)
    body = await expect(await api.get(url, headers=owner), 200)
    assert body["status"] == "active" and body["status_message"] is None
