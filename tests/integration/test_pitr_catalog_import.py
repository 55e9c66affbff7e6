"""Disaster recovery of cairn with continuous archiving (docs/recovery.md, docs/pitr.md): the
metadata database is lost while an application archives, and ``cairn catalog import`` brings
its recovery window back from the storage.

One installation archives a PostgreSQL server of the test's own under a writer and is dropped
with its metadata database; a fresh one (same master key, same Temporal and storage) registers
the workspace and application again and imports the storage. The window is the one the lost
installation showed, a restore to a moment inside it gives exactly the rows committed by then,
and archiving, which lives only in the lost policy, is turned on again by the operator.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.archive import spool_of
from adapters.pg_archive import stream
from adapters.pg_archive.window import stamp
from core.settings import Settings
from devstack.postgres import PostgresServer
from repository.names import KEY_FILE
from tests.integration import test_catalog_import, test_pitr_api
from tests.integration.test_catalog_import import (
    catalog_import,
    installation,
    installations,
    metadata_database,
    register_workspace,
)
from tests.integration.test_pitr_api import (
    App,
    Archived,
    at,
    on_instance,
    policy,
    register,
    restored_rows,
    slot_exists,
    until_closed,
    window_when,
)
from tests.integration.test_pitr_drills import commit_rows
from tests.support import pg_instance
from tests.support.api import ApiClient, World, build_world, expect, running_app

pytestmark = pytest.mark.integration

# a server of the module's own (test_pitr_api's) and a Temporal server of the test's own
instance = test_pitr_api.instance
own_temporal = test_catalog_import.own_temporal


def the_window(shown: dict[str, Any]) -> tuple[datetime, datetime, list[tuple[datetime, ...]]]:
    """What a window says: from, until and its gaps, as moments."""
    gaps = [(at(g["from"]), at(g["to"])) for g in shown["gaps"]]
    return at(shown["earliest"]), at(shown["latest"]), gaps


async def shown(api: ApiClient, world: World, archived: Archived) -> dict[str, Any]:
    return dict(await expect(await api.get(archived.window, headers=world.auth("owner")), 200))


async def register_again(
    api: ApiClient, world: World, old: Archived, name: str, workspace: str, storage_id: str
) -> Archived:
    """The application registered again as the PaaS would: its name, a new id."""
    created = await expect(
        await api.post(
            f"/api/v1/workspaces/{workspace}/applications",
            json={
                "name": name,
                "owner_id": world.users["owner"],
                "platform": on_instance(old.instance),
            },
            headers=world.auth("platform_admin"),
        ),
        201,
    )
    again = Archived(App(workspace, str(created["id"]), storage_id), old.instance)
    again.commits = old.commits
    return again


async def test_the_import_brings_the_window_back_and_a_moment_restores_from_it(
    settings: Settings,
    database_server: PostgresServer,
    own_temporal: WorkflowEnvironment,
    instance: pg_instance.Instance,
    tmp_path: Path,
) -> None:
    base = installations(settings, own_temporal, tmp_path)
    with contextlib.ExitStack() as spools:
        # -- the first installation archives under a writer; then its database is lost -------
        async with metadata_database(database_server, base) as first:
            async with installation(first, own_temporal) as api:
                world = await build_world(api)
                lost = Archived(await register(api, world, on_instance(instance)), instance)
                spools.callback(shutil.rmtree, spool_of(first, lost.app.id), True)
                owner = world.auth("owner")
                on = policy(lost.app, continuous_archiving=True)
                await expect(await api.post(lost.app.policy, json=on, headers=owner), 201)
                await window_when(api, world, lost, lambda w: w["earliest"] is not None)
                half = await commit_rows(lost, range(1, 16))
                with instance.connect(test_pitr_api.DB) as conn:
                    conn.execute("SELECT pg_switch_wal()")
                last = await commit_rows(lost, range(16, 31))
                await window_when(
                    api, world, lost, lambda w: w["latest"] and at(w["latest"]) >= last
                )
                root = world.auth("platform_admin")
                old = {
                    "workspace": await expect(
                        await api.get(f"/api/v1/admin/workspaces/{lost.app.ws}", headers=root),
                        200,
                    ),
                    "application": await expect(
                        await api.get(f"/api/v1/applications/{lost.app.id}", headers=root), 200
                    ),
                    "storage": await expect(
                        await api.get(
                            f"/api/v1/workspaces/{lost.app.ws}/backup-storages/{lost.app.storage}",
                            headers=root,
                        ),
                        200,
                    ),
                }
            # the workers are gone: the archive holds what it held when the metadata was lost
            async with running_app(first) as api:
                before = await shown(api, world, lost)
        assert before["continuous_archiving"] is True and before["gaps"] == []
        earliest, latest, _ = the_window(before)
        assert earliest <= min(lost.commits.values()) and latest >= last
        storage_root = base.storage_mount_root / old["storage"]["proxmox_storage_id"]
        repositories = list(storage_root.glob(f"workspaces/*/applications/{lost.app.id}"))
        assert len(repositories) == 1 and (repositories[0] / KEY_FILE).exists()

        # -- a fresh installation, the same master key: register, import ---------------------
        async with (
            metadata_database(database_server, base) as fresh,
            installation(fresh, own_temporal) as api,
        ):
            world = await build_world(api)
            workspace = await register_workspace(api, world, old)
            await expect(
                await api.post(
                    f"/api/v1/workspaces/{workspace}/members",
                    json={"user_id": world.users["member"], "role": "member"},
                    headers=world.auth("platform_admin"),
                ),
                201,
            )
            imported = catalog_import(fresh, str(storage_root), fresh.master_key_text or "")
            assert imported.returncode == 0, imported.stderr
            report = json.loads(imported.stdout)
            assert report["repositories"] == 0 and len(report["skipped"]) == 1  # not registered
            again = await register_again(
                api, world, lost, old["application"]["name"], workspace, report["storage_id"]
            )
            spools.callback(shutil.rmtree, spool_of(fresh, again.app.id), True)
            imported = catalog_import(fresh, str(storage_root), fresh.master_key_text or "")
            assert imported.returncode == 0, imported.stderr
            report = json.loads(imported.stdout)
            assert report["repositories"] == 1 and report["skipped"] == []
            assert report["backups_imported"] == []  # an archive only: no dump, no manifest

            # the window as the lost installation showed it; archiving is not (no policy)
            after = await shown(api, world, again)
            assert the_window(after) == the_window(before), (before, after)
            assert after["continuous_archiving"] is False

            # a restore to a moment inside it, before any policy: exactly the rows by then
            body = {"target_time": stamp(half), "target": {"database_name": "shop_imported"}}
            done, ids = await restored_rows(
                api, world, own_temporal.client, fresh, again, body, policy=False
            )
            assert ids == {i for i, c in lost.commits.items() if c <= half} == set(range(1, 16))
            assert done["target_time"] == stamp(half)

            # archiving lived in the lost policy only: the operator turns it on again; a new
            # archiver (new slot, base backup at once) goes on in the imported repository, and
            # the window keeps its old part with a gap up to that base backup
            owner = world.auth("owner")
            on = policy(again.app, continuous_archiving=True)
            await expect(await api.post(again.app.policy, json=on, headers=owner), 201)
            later = await commit_rows(again, range(31, 36))
            grown = await window_when(
                api, world, again, lambda w: w["latest"] and at(w["latest"]) >= later
            )
            start, end, gaps = the_window(grown)
            assert start == earliest and end >= later
            # WAL the new slot did not hold is a gap from the old window's end; none when the
            # old slot still held the segment the new stream starts in
            assert len(gaps) <= 1 and all(gap[0] == latest for gap in gaps), grown
            assert slot_exists(instance, again.app)
            _, ids = await restored_rows(
                api, world, own_temporal.client, fresh, again, {"target_time": "latest"}
            )
            assert ids == set(range(1, 36))

            # the lost installation's archiver is no longer cairn's: its run finds no such
            # application in this database, and its slot stays on the server until dropped
            old_run = own_temporal.client.get_workflow_handle(f"archiver-{lost.app.id}")
            if (await old_run.describe()).status == WorkflowExecutionStatus.RUNNING:
                await old_run.terminate("the metadata database it belonged to is gone")
            assert slot_exists(instance, lost.app)
            with instance.connect("postgres") as conn:
                conn.execute(
                    "SELECT pg_drop_replication_slot(%s)", (stream.slot_name(lost.app.id),)
                )
            off = policy(again.app, continuous_archiving=False)
            await expect(await api.post(again.app.policy, json=off, headers=owner), 200)
            await until_closed(own_temporal.client, again.app)
            assert not slot_exists(instance, again.app)
