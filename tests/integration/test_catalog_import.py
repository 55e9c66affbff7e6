"""Disaster recovery of cairn itself: the metadata database is lost, the master key and the
storage are enough to get every backup back.

One installation backs an application up and is dropped with its database; a fresh one (new
database, same master key) registers the workspace and application again, as the PaaS
would, and imports the storage. With a wrong master key the import says so and changes
nothing; with the right one the backups reappear, a restore brings the data back
byte-identical, and new backups go on in the same repository. Own Temporal and databases,
like the worker-crash tests: one database serves one Temporal namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.testing import WorkflowEnvironment

from core import crypto
from core.search_attributes import SEARCH_ATTRIBUTE_KEYS
from core.settings import Settings
from db import migrate
from devstack.postgres import PostgresServer
from devstack.temporal import cli_path
from repository.store import KEY_FILE
from tests.conftest import free_port
from tests.integration.test_restores import mutate, run_restore
from tests.support import database as dbsupport
from tests.support.api import ApiClient, World, build_world, expect, running_app
from tests.support.backups import App, make_app, run_backup, table_hashes, tree_hashes
from tests.support.workers import running_workers

pytestmark = pytest.mark.integration


@pytest.fixture
async def own_temporal() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=cli_path(),
        port=free_port(),
        search_attributes=SEARCH_ATTRIBUTE_KEYS,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


def installations(settings: Settings, env: WorkflowEnvironment, tmp_path: Path) -> Settings:
    """What every installation of a test shares: the Temporal server and the storages' mount."""
    return settings.model_copy(
        update={
            "temporal_address": env.client.service_client.config.target_host,
            "proxmox_host": None,
            "proxmox_token_id": None,
            "proxmox_token_secret": None,
            "storage_mount_root": tmp_path / "storages",
        }
    )


@contextlib.asynccontextmanager
async def metadata_database(server: PostgresServer, settings: Settings) -> AsyncIterator[Settings]:
    """A migrated metadata database of one installation, dropped in every outcome."""
    name = f"cairn_dr_{uuid.uuid4().hex[:10]}"
    server.create_database(name)
    try:
        url = server.url(name)
        await asyncio.to_thread(migrate.upgrade, url)  # alembic runs its own event loop
        yield settings.model_copy(update={"database_url": url})
    finally:
        server.drop_database(name)


@contextlib.asynccontextmanager
async def installation(settings: Settings, env: WorkflowEnvironment) -> AsyncIterator[ApiClient]:
    async with running_workers(settings, env.client), running_app(settings) as api:
        yield api


def catalog_import(
    settings: Settings, storage: str, master_key: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CAIRN_DATABASE_URL": settings.database_url,
        "CAIRN_MASTER_KEY": master_key,
        "CAIRN_STORAGE_MOUNT_ROOT": str(settings.storage_mount_root),
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "catalog", "import", "--storage", storage],
        env=env,
        capture_output=True,
        text=True,
    )


async def register_workspace(api: ApiClient, world: World, old: dict[str, Any]) -> str:
    """What the PaaS does on a fresh cairn: the same workspace name (a new id)."""
    root = world.auth("platform_admin")
    body = {"name": old["workspace"]["name"], "plan": "dedicated", "backup_quota_gb": 1000}
    workspace = await expect(
        await api.post("/api/v1/admin/workspaces", json=body, headers=root), 201
    )
    for user, role in (("ws_admin", "admin"), ("owner", "member")):
        await expect(
            await api.post(
                f"/api/v1/workspaces/{workspace['id']}/members",
                json={"user_id": world.users[user], "role": role},
                headers=root,
            ),
            201,
        )
    return str(workspace["id"])


async def register_application(
    api: ApiClient, world: World, old: dict[str, Any], workspace: str
) -> App:
    """... and the same application name in it."""
    root = world.auth("platform_admin")
    app: App = old["app"]
    created = await expect(
        await api.post(
            f"/api/v1/workspaces/{workspace}/applications",
            json={
                "name": old["application"]["name"],
                "owner_id": world.users["owner"],
                "platform": {
                    "kind": "local",
                    "database_url": app.db_url,
                    "volumes": {k: str(v) for k, v in app.volumes.items()},
                },
            },
            headers=root,
        ),
        201,
    )
    return App(
        created["id"],
        workspace,
        "",
        app.storage_pve_id,
        app.dbname,
        app.db_url,
        app.volumes,
        app.marker,
    )


async def test_master_key_and_storage_bring_every_backup_back(
    settings: Settings,
    database_server: PostgresServer,
    own_temporal: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    base = installations(settings, own_temporal, tmp_path)
    # -- the first installation: two backups, then its database is lost ------------------------
    async with metadata_database(database_server, base) as first:
        async with installation(first, own_temporal) as api:
            world = await build_world(api)
            app = await make_app(api, world, database_server, tmp_path / "app")
            backups = [await run_backup(api, world, app)]
            key_file = Path(backups[0]["backup_path"]) / KEY_FILE
            assert key_file.exists()  # written with the repository
            key_file.unlink()  # as for a repository made before key files: the next backup
            backups.append(await run_backup(api, world, app))  # writes it (backfill)
            assert key_file.exists()
            assert [b["status"] for b in backups] == ["succeeded", "succeeded"], backups
            root = world.auth("platform_admin")
            old = {
                "app": app,
                "workspace": await expect(
                    await api.get(f"/api/v1/admin/workspaces/{app.workspace}", headers=root), 200
                ),
                "application": await expect(
                    await api.get(f"/api/v1/applications/{app.id}", headers=root), 200
                ),
            }
        with psycopg.connect(dbsupport.libpq_url(first.database_url)) as conn:
            row = conn.execute(
                "SELECT path, password_sealed, application_id, storage_id FROM backup_repositories"
            ).fetchone()
        assert row is not None
        password = crypto.open_sealed(
            row[1],
            master_key=first.master_key_text,
            context=f"backup_repositories/{row[2]}/{row[3]}/password",
        ).decode()
    storage_root = base.storage_mount_root / app.storage_pve_id
    assert key_file.parent == Path(row[0]) and key_file.parents[4] == storage_root
    assert password not in key_file.read_text()  # sealed, never in plain text
    tables = table_hashes(app.db_url)
    files = {name: tree_hashes(path) for name, path in app.volumes.items()}

    # -- a fresh installation with the same master key ----------------------------------------
    async with (
        metadata_database(database_server, base) as fresh,
        installation(fresh, own_temporal) as api,
    ):
        world = await build_world(api)
        workspace = await register_workspace(api, world, old)
        owner = world.auth("owner")
        before = dbsupport.snapshot(fresh.database_url)
        wrong = catalog_import(fresh, str(storage_root), crypto.generate_master_key())
        assert wrong.returncode == 1
        assert "master key does not open" in wrong.stderr and "Nothing was imported" in wrong.stderr
        assert dbsupport.snapshot(fresh.database_url) == before

        # the application is not registered yet: its repository is reported, not guessed
        early = json.loads(
            catalog_import(fresh, str(storage_root), fresh.master_key_text or "").stdout
        )
        assert early["storage_created"] is True and early["warnings"] == []
        assert early["repositories"] == 0 and early["backups_imported"] == []
        assert len(early["skipped"]) == 1 and old["application"]["name"] in early["skipped"][0]

        again = await register_application(api, world, old, workspace)
        done = catalog_import(fresh, str(storage_root), fresh.master_key_text or "")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["storage_id"] == early["storage_id"] and report["storage_created"] is False
        assert report["repositories"] == 1 and report["skipped"] == []
        assert sorted(report["backups_imported"]) == sorted(b["id"] for b in backups)
        listed = (
            await expect(
                await api.get(f"/api/v1/applications/{again.id}/backups", headers=owner), 200
            )
        )["items"]
        assert {b["id"]: b["status"] for b in listed} == {b["id"]: "succeeded" for b in backups}
        by_id = {b["id"]: b for b in listed}
        for backup in backups:
            mine = by_id[backup["id"]]
            assert mine["metadata"]["parts"] == backup["metadata"]["parts"]
            assert mine["size_bytes"] == backup["size_bytes"]
        # a second import finds everything in place and changes nothing
        settled = dbsupport.snapshot(fresh.database_url)
        repeat = json.loads(
            catalog_import(fresh, report["storage_id"], fresh.master_key_text or "").stdout
        )
        assert repeat["backups_imported"] == [] and repeat["backups_present"] == 2
        after_repeat = dbsupport.snapshot(fresh.database_url)
        assert {k: v for k, v in after_repeat.items() if k != "audit_events"} == {
            k: v for k, v in settled.items() if k != "audit_events"
        }

        mutate(again)
        assert table_hashes(again.db_url) != tables
        restore = await run_restore(api, world, again, backups[-1]["id"], {"restore_type": "full"})
        assert restore["status"] == "succeeded", restore["error_message"]
        assert table_hashes(again.db_url) == tables
        assert {name: tree_hashes(path) for name, path in again.volumes.items()} == files

        # backups go on in the same repository, beside the imported ones
        policy = {"storage_id": report["storage_id"], "schedule": "0 3 * * *"}
        await expect(await api.post(again.policy, json=policy, headers=owner), 201)
        later = await run_backup(api, world, again)
        assert later["status"] == "succeeded", later["error_message"]
        assert later["backup_path"] == row[0]
