"""Nothing a caller sends reaches outside its application (issue 9, part 3).

Each probe of the issue is here: a restore aimed at cairn's metadata database, a target URL
from an application owner, volume paths in system folders, the storage root or cairn's data
folder, an application database that is cairn's own, and an anonymous scrape of /metrics.
Each is refused with a problem naming the field, and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from core.boundaries import metadata_database
from core.database_url import database_url
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.support.api import ApiClient, World, expect, running_app
from tests.support.backups import App, make_app, run_backup
from tests.support.database import libpq_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


@pytest.fixture(scope="module")
async def backed_up(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
    worker: None,
) -> tuple[App, dict[str, Any]]:
    app = await make_app(api, world, database_server, tmp_path_factory.mktemp("boundaries"))
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup["error_message"]
    return app, backup


def metadata_url(settings: Settings, password: str | None = None) -> str:
    """cairn's own database as a caller would spell it (libpq URL)."""
    return database_url(metadata_database(settings), password)


def cairn_tables(settings: Settings) -> list[str]:
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


def server_databases(database_server: PostgresServer) -> set[str]:
    with psycopg.connect(database_server.url("postgres", driver="postgresql")) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database").fetchall()}


def restore_url(app: App, backup: dict[str, Any]) -> str:
    return f"/api/v1/applications/{app.id}/backups/{backup['id']}/restore"


def selective(target: dict[str, str]) -> dict[str, Any]:
    return {"restore_type": "selective", "database": True, "target": target}


async def test_restore_onto_the_metadata_database_by_an_owner_is_refused(
    api: ApiClient,
    world: World,
    settings: Settings,
    backed_up: tuple[App, dict[str, Any]],
    unchanged: None,
) -> None:
    """The probe that destroyed cairn: 202, then the metadata database was replaced."""
    app, backup = backed_up
    tables = cairn_tables(settings)
    body = selective({"database_url": metadata_url(settings, "meta-secret-pw")})
    problem = await expect(
        await api.post(restore_url(app, backup), json=body, headers=world.auth("owner")), 403
    )
    assert problem["type"] == "/problems/forbidden"
    assert "platform administrator" in problem["detail"] and "database_name" in problem["detail"]
    assert "meta-secret-pw" not in str(problem)
    assert cairn_tables(settings) == tables and "backup_executions" in tables
    restores = await expect(
        await api.get(f"/api/v1/applications/{app.id}/restores", headers=world.auth("owner")), 200
    )
    assert restores["items"] == []  # no run was started: nothing can touch a database later


@pytest.mark.parametrize(
    ("who", "target", "status", "mention"),
    [
        ("platform_admin", "metadata-url", 422, "metadata database"),
        ("owner", "metadata-name", 422, "metadata database"),
        ("ws_admin", "metadata-name", 422, "metadata database"),
        ("owner", {"database_name": "postgres"}, 422, "system database"),
        ("owner", {"database_name": "template1"}, 422, "system database"),
        ("owner", {"database_name": "cairn_old_0123"}, 422, "restore and drill copies"),
        ("platform_admin", "postgres-url", 422, "system database"),
        ("ws_admin", "elsewhere-url", 403, "platform administrator"),
        ("owner", "elsewhere-url", 403, "platform administrator"),
        ("owner", "other-app", 422, "another application"),
    ],
)
async def test_restore_targets_outside_the_application_are_refused(
    api: ApiClient,
    world: World,
    settings: Settings,
    database_server: PostgresServer,
    backed_up: tuple[App, dict[str, Any]],
    unchanged: None,
    who: str,
    target: Any,
    status: int,
    mention: str,
) -> None:
    app, backup = backed_up
    server = database_server.url("postgres", driver="postgresql")
    targets: dict[str, dict[str, str]] = {
        "metadata-url": {"database_url": metadata_url(settings)},
        "metadata-name": {"database_name": metadata_database(settings)["dbname"]},
        "postgres-url": {"database_url": server},
        "elsewhere-url": {"database_url": database_server.url("copy", driver="postgresql")},
        # the applications of the shared world (tests/support/api.py) use the database "shop"
        "other-app": {"database_name": "shop"},
    }
    body = selective(targets[target] if isinstance(target, str) else target)
    response = await api.post(restore_url(app, backup), json=body, headers=world.auth(who))
    problem = await expect(response, status)
    assert response.headers["content-type"] == "application/problem+json"
    assert mention in problem["detail"], problem
    if status == 422:
        assert problem["errors"][0]["field"].startswith("body.target.database_")
    # no row and no run (the unchanged fixture), so no database was made or touched either
    assert "copy" not in server_databases(database_server)


@pytest.fixture
async def data_dir_api(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ApiClient, Path]]:
    """The API as ``cairn dev`` runs it: a data folder of its own inside the volume root."""
    data = tmp_path_factory.getbasetemp() / f"cairn-data-{uuid.uuid4().hex[:6]}"
    (data / "apps").mkdir(parents=True)
    async with running_app(settings.model_copy(update={"data_dir": data})) as client:
        yield client, data


async def test_volume_paths_outside_the_allowed_roots_are_refused(
    world: World,
    settings: Settings,
    data_dir_api: tuple[ApiClient, Path],
    tmp_path: Path,
    unchanged: None,
) -> None:
    api, data = data_dir_api
    (tmp_path / "etc-link").symlink_to("/etc")
    probes = {
        "/etc": "system folder",
        "/root": "system folder",
        "/proc": "system folder",
        "/": "normalised path below /",
        str(settings.storage_mount_root): "storage mount root",
        f"{settings.storage_mount_root}/cairn-0123/workspaces": "storage mount root",
        str(data): "data folder",
        f"{data}/pg": "data folder",
        str(tmp_path / "etc-link"): "a link to /etc",
        f"{tmp_path}/../../etc": "normalised",
        f"/{tmp_path}/app": "normalised",
        "/srv/shop/uploads": "not inside an allowed volume root",
    }
    ws = world.workspaces["a"]
    for path, mention in probes.items():
        body = {
            "name": f"probe-{uuid.uuid4().hex[:6]}",
            "owner_id": world.users["owner"],
            "platform": {"kind": "local", "volumes": {"data": path}},
        }
        response = await api.post(
            f"/api/v1/workspaces/{ws}/applications",
            json=body,
            headers=world.auth("platform_admin"),
        )
        problem = await expect(response, 422)
        assert problem["type"] == "/problems/validation-error", (path, problem)
        assert mention in problem["detail"], (path, problem)
        assert [e["field"] for e in problem["errors"]] == ["body.platform.volumes.data"], path


async def test_a_volume_in_the_data_folders_apps_area_is_accepted(
    world: World, data_dir_api: tuple[ApiClient, Path]
) -> None:
    api, data = data_dir_api
    body = {
        "name": f"apps-{uuid.uuid4().hex[:6]}",
        "owner_id": world.users["owner"],
        "platform": {"kind": "local", "volumes": {"data": f"{data}/apps/shop/data"}},
    }
    ws, root = world.workspaces["a"], world.auth("platform_admin")
    created = await expect(
        await api.post(f"/api/v1/workspaces/{ws}/applications", json=body, headers=root), 201
    )
    await expect(await api.delete(f"/api/v1/applications/{created['id']}", headers=root), 204)


@pytest.mark.parametrize(
    ("dbname", "mention"),
    [
        ("metadata", "metadata database"),
        ("postgres", "system database"),
        ("template0", "system database"),
    ],
)
async def test_an_application_database_that_is_cairns_own_is_refused(
    api: ApiClient, world: World, settings: Settings, unchanged: None, dbname: str, mention: str
) -> None:
    parts = metadata_database(settings)
    if dbname != "metadata":
        parts = {**parts, "dbname": dbname}
    body = {
        "name": f"probe-{uuid.uuid4().hex[:6]}",
        "owner_id": world.users["owner"],
        "platform": {"kind": "local", "database_url": database_url(parts, "secret-pw")},
    }
    problem = await expect(
        await api.post(
            f"/api/v1/workspaces/{world.workspaces['a']}/applications",
            json=body,
            headers=world.auth("platform_admin"),
        ),
        422,
    )
    assert mention in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == ["body.platform.database_url"]
    assert "secret-pw" not in str(problem)


async def test_metrics_need_a_token(api: ApiClient, world: World, settings: Settings) -> None:
    problem = await expect(await api.get("/metrics"), 401)
    assert (
        problem["type"] == "/problems/unauthorized" and "CAIRN_METRICS_TOKEN" in problem["detail"]
    )
    await expect(await api.get("/metrics", headers={"Authorization": "Bearer nope"}), 401)
    await expect(await api.get("/metrics", headers=world.auth("revoked")), 401)
    await expect(await api.get("/metrics", headers=world.auth("ws_admin")), 403)
    text = (await api.get("/metrics", headers=world.auth("platform_admin"))).text
    assert "cairn_storage_capacity_bytes" in text
    scrape = SecretStr(f"scrape-{uuid.uuid4().hex}")
    async with running_app(settings.model_copy(update={"metrics_token": scrape})) as client:
        bearer = {"Authorization": f"Bearer {scrape.get_secret_value()}"}
        response = await client.get("/metrics", headers=bearer)
        assert response.status_code == 200 and "cairn_backups" in response.text
        await expect(await client.get("/metrics", headers={"Authorization": "Bearer x"}), 401)
        await expect(await client.get("/metrics"), 401)
