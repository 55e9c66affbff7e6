"""Volumes registered or restored by the folder on disk, not its path text (issue 21).

An application in one workspace may not register a folder that is, lies inside, contains or
leads by symlink to another workspace's registered volume; and a folder that became another
application's volume after registration (a bind mount here) is refused by the worker right
before the restore would rename it, with the API bypassed.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.support.api import ApiClient, World, expect
from tests.support.backups import App, make_app, run_backup, tree_hashes
from tests.support.bypass import restore_bypassing_the_api

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


@pytest.fixture(scope="module")
async def two_apps(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
    worker: None,
) -> tuple[App, App, dict[str, Any]]:
    first = await make_app(api, world, database_server, tmp_path_factory.mktemp("tenant-a"))
    second = await make_app(api, world, database_server, tmp_path_factory.mktemp("tenant-b"))
    backup = await run_backup(api, world, second)
    assert backup["status"] == "succeeded", backup["error_message"]
    return first, second, backup


@pytest.mark.parametrize("shape", ["equal", "inside", "above", "symlink", "symlink-above"])
async def test_a_volume_overlapping_another_tenants_is_refused(
    api: ApiClient,
    world: World,
    two_apps: tuple[App, App, dict[str, Any]],
    tmp_path: Path,
    unchanged: None,
    shape: str,
) -> None:
    first, second, _ = two_apps
    uploads = first.volumes["uploads"]
    link = tmp_path / "link"
    paths = {
        "equal": uploads,
        "inside": uploads / "nested",
        "above": uploads.parent,
        "symlink": link,
        "symlink-above": link,
    }
    if shape == "symlink":
        link.symlink_to(uploads)
    elif shape == "symlink-above":
        link.symlink_to(uploads.parent)
    body = {
        "name": f"overlap-{uuid.uuid4().hex[:6]}",
        "owner_id": world.users["owner"],
        "platform": {"kind": "local", "volumes": {"files": str(paths[shape])}},
    }
    problem = await expect(
        await api.post(
            f"/api/v1/workspaces/{second.workspace}/applications",
            json=body,
            headers=world.auth("platform_admin"),
        ),
        422,
    )
    assert "a volume of another application" in problem["detail"], problem
    assert [e["field"] for e in problem["errors"]] == ["body.platform.volumes.files"]


async def test_a_folder_that_became_another_tenants_is_refused_by_the_worker(
    api: ApiClient,
    world: World,
    settings: Settings,
    temporal_client: Client,
    two_apps: tuple[App, App, dict[str, Any]],
) -> None:
    """After registration, the second application's folder is made the first one's by a bind
    mount; a restore of it would rename the first tenant's files."""
    first, second, backup = two_apps
    theirs = first.volumes["uploads"]
    before = tree_hashes(theirs)
    target = second.volumes["uploads"]
    subprocess.run(["mount", "--bind", str(theirs), str(target)], check=True)
    try:
        problem = await expect(
            await api.post(
                f"/api/v1/applications/{second.id}/backups/{backup['id']}/restore",
                json={"restore_type": "selective", "volumes": ["uploads"]},
                headers=world.auth("owner"),
            ),
            409,
        )
        assert "a volume of another application" in problem["detail"]
        done = await restore_bypassing_the_api(
            api, world, settings, temporal_client, second, backup, volumes=("uploads",)
        )
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert done["status"] == "failed"
    assert "a volume of another application" in done["error_message"], done["error_message"]
    assert tree_hashes(theirs) == before
