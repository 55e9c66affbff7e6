"""Issue 21, strict inputs: JSON types are taken as sent, a plan change never strands backups,
every 405 says what is allowed, every problem is the documented shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from core.settings import Settings
from tests.support.api import ApiClient, World, expect, new_workspace, running_app, wait_for
from tests.support.database import snapshot
from tests.support.openapi import assert_documented

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

SCHEDULE = "0 3 * * *"


@dataclass
class Backed:
    """A dedicated workspace with an active storage and an application with a policy."""

    workspace: str
    storage: str
    app: str

    @property
    def storages(self) -> str:
        return f"/api/v1/workspaces/{self.workspace}/backup-storages"

    @property
    def policy(self) -> str:
        return f"/api/v1/applications/{self.app}/backup-policy"


async def _storage(api: ApiClient, world: World, workspace: str, name: str, **extra: Any) -> str:
    url = f"/api/v1/workspaces/{workspace}/backup-storages"
    body = {"name": name, "type": "local", "capacity_gb": 5, **extra}
    admin = world.auth("ws_admin")
    accepted = await expect(await api.post(url, json=body, headers=admin), 202)
    await wait_for(api, f"{url}/{accepted['id']}", admin, lambda s: s["status"] == "active")
    return str(accepted["id"])


async def _backed(api: ApiClient, world: World, app_name: str) -> Backed:
    workspace = await new_workspace(api, world, members=("member", "owner"))
    storage = await _storage(api, world, workspace, "main")
    app = await expect(
        await api.post(
            f"/api/v1/workspaces/{workspace}/applications",
            json={
                "name": app_name,
                "owner_id": world.users["owner"],
                "platform": {"kind": "local", "database_url": "postgresql://u:p@127.0.0.1/shop"},
            },
            headers=world.auth("platform_admin"),
        ),
        201,
    )
    backed = Backed(workspace, storage, app["id"])
    policy = {"storage_id": storage, "schedule": SCHEDULE}
    await expect(await api.post(backed.policy, json=policy, headers=world.auth("owner")), 201)
    return backed


@pytest.fixture(scope="module")
async def backed(api: ApiClient, world: World) -> Backed:
    return await _backed(api, world, "strict")


def mixups(backed: Backed, world: World) -> list[tuple[str, str, dict[str, Any], str, str]]:
    """(method, path, body, refused field, pydantic's code): a bool where a number goes, a
    number (or a string) where a bool goes; each would have changed something if accepted."""
    workspace = f"/api/v1/admin/workspaces/{backed.workspace}"
    storage = f"{backed.storages}/{backed.storage}"
    policy = {"storage_id": backed.storage, "schedule": SCHEDULE}
    kube = {
        "kind": "kubernetes",
        "namespace": "shop",
        "database": {
            "host": "db",
            "port": True,
            "dbname": "shop",
            "user": "shop",
            "password_secret": {"name": "db", "key": "password"},
        },
    }
    return [
        ("PATCH", workspace, {"backup_quota_gb": False}, "backup_quota_gb", "int_type"),
        ("PATCH", workspace, {"backup_quota_gb": True}, "backup_quota_gb", "int_type"),
        ("PATCH", workspace, {"backup_quota_gb": "500"}, "backup_quota_gb", "int_type"),
        ("PATCH", workspace, {"backup_quota_gb": 500.0}, "backup_quota_gb", "int_type"),
        (
            "POST",
            "/api/v1/admin/workspaces",
            {"name": "strict-quota", "backup_quota_gb": True},
            "backup_quota_gb",
            "int_type",
        ),
        (
            "POST",
            "/api/v1/admin/users",
            {"email": "strict@example.com", "name": "s", "is_platform_admin": 1},
            "is_platform_admin",
            "bool_type",
        ),
        (
            "POST",
            "/api/v1/admin/users",
            {"email": "strict@example.com", "name": "s", "is_platform_admin": "true"},
            "is_platform_admin",
            "bool_type",
        ),
        (
            "POST",
            backed.storages,
            {"name": "more", "type": "local", "capacity_gb": True},
            "capacity_gb",
            "int_type",
        ),
        ("PUT", storage, {"capacity_gb": False}, "capacity_gb", "int_type"),
        ("PUT", storage, {"capacity_gb": "7"}, "capacity_gb", "int_type"),
        ("POST", backed.policy, {**policy, "retention_days": True}, "retention_days", "int_type"),
        ("POST", backed.policy, {**policy, "keep_last": False}, "keep_last", "int_type"),
        ("POST", backed.policy, {**policy, "enabled": 0}, "enabled", "bool_type"),
        ("POST", backed.policy, {**policy, "enabled": "no"}, "enabled", "bool_type"),
        ("POST", backed.policy, {**policy, "include_database": 1}, "include_database", "bool_type"),
        (
            "PUT",
            f"/api/v1/applications/{backed.app}/drill-policy",
            {"schedule": "0 4 * * 0", "enabled": 1},
            "enabled",
            "bool_type",
        ),
        (
            "POST",
            f"/api/v1/applications/{backed.app}/backups/{backed.storage}/restore",
            {"restore_type": "selective", "database": 1},
            "database",
            "bool_type",
        ),
        (
            "POST",
            f"/api/v1/workspaces/{backed.workspace}/applications",
            {"name": "kube", "owner_id": world.users["owner"], "platform": kube},
            "port",
            "int_type",
        ),
    ]


async def test_bools_and_numbers_are_never_each_other(
    api: ApiClient, world: World, backed: Backed, unchanged: None
) -> None:
    failures = []
    for method, path, body, field, code in mixups(backed, world):
        response = await api.request(method, path, json=body, headers=world.auth("platform_admin"))
        problem = response.json()
        refused = [(e["field"].rsplit(".", 1)[-1], e["code"]) for e in problem.get("errors", [])]
        if (
            response.status_code != 422
            or problem.get("type") != "/problems/validation-error"
            or refused != [(field, code)]
        ):
            failures.append(f"{method} {path} {body}: {response.status_code} {response.text}")
    assert not failures, "\n".join(failures)


async def test_the_same_fields_take_their_own_types(
    api: ApiClient, world: World, backed: Backed
) -> None:
    """The refusals above are about types, not the fields: real numbers and flags pass."""
    root = world.auth("platform_admin")
    workspace = f"/api/v1/admin/workspaces/{backed.workspace}"
    updated = await expect(
        await api.patch(workspace, json={"backup_quota_gb": 900}, headers=root), 200
    )
    assert updated["backup_quota_gb"] == 900
    policy = {"storage_id": backed.storage, "schedule": SCHEDULE, "enabled": False, "keep_last": 3}
    saved = await expect(await api.post(backed.policy, json=policy, headers=root), 200)
    assert (saved["enabled"], saved["keep_last"]) == (False, 3)


async def test_leaving_the_dedicated_plan_waits_until_nothing_is_stranded(
    api: ApiClient, world: World, settings: Settings
) -> None:
    backed = await _backed(api, world, "stranded")
    spare = await _storage(api, world, backed.workspace, "spare")
    root = world.auth("platform_admin")
    workspace = f"/api/v1/admin/workspaces/{backed.workspace}"

    before = snapshot(settings.database_url)
    for plan in ("free", "pro"):
        response = await api.patch(workspace, json={"plan": plan}, headers=root)
        problem = await expect(response, 409)
        assert_documented(response, "PATCH", "/api/v1/admin/workspaces/{workspace_id}")
        assert problem["type"] == "/problems/plan-in-use"
        assert (problem["storage_count"], problem["policy_count"]) == (2, 1)
        assert [s["name"] for s in problem["storages"]] == ["main", "spare"]
        assert problem["policies"][0]["application_name"] == "stranded"
        assert "main, spare" in problem["detail"] and "stranded" in problem["detail"]
    assert snapshot(settings.database_url) == before, "a refused plan change changed something"

    await expect(await api.delete(backed.policy, headers=world.auth("owner")), 204)
    problem = await expect(await api.patch(workspace, json={"plan": "free"}, headers=root), 409)
    assert (problem["storage_count"], problem["policy_count"]) == (2, 0)

    admin = world.auth("ws_admin")
    for storage in (backed.storage, spare):
        await expect(await api.delete(f"{backed.storages}/{storage}", headers=admin), 202)
        await wait_for(api, f"{backed.storages}/{storage}", admin, None)
    moved = await expect(await api.patch(workspace, json={"plan": "free"}, headers=root), 200)
    assert moved["plan"] == "free"
    problem = await expect(await api.get(backed.storages, headers=admin), 403)
    assert problem["type"] == "/problems/plan-required"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/api/v1/me", "GET"),
        ("FOO", "/healthz", "GET"),
        ("PUT", "/api/v1/admin/workspaces/{workspace}", "GET, PATCH"),
        ("TRACE", "/api/v1/applications/{app}/backup-policy", "GET, POST, DELETE"),
        ("DELETE", "/api/v1/workspaces/{workspace}/backup-storages", "GET, POST"),
        ("POST", "/ui/static/app.css", "GET, HEAD"),
    ],
)
async def test_every_405_names_the_methods_the_path_allows(
    api: ApiClient, world: World, method: str, path: str, allow: str
) -> None:
    url = path.format(workspace=world.workspaces["a"], app=world.apps["a"])
    response = await api.request(method, url, headers=world.auth("platform_admin"))
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/method-not-allowed"


@pytest.fixture(scope="module")
async def without_proxmox(settings: Settings) -> AsyncIterator[ApiClient]:
    """The API of an installation without Proxmox VE (the refusal starts no workflow)."""
    local = settings.model_copy(
        update={"proxmox_host": None, "proxmox_token_id": None, "proxmox_token_secret": None}
    )
    async with running_app(local) as client:
        yield client


async def test_unsupported_requests_are_documented_problems_naming_the_field(
    api: ApiClient, without_proxmox: ApiClient, world: World, unchanged: None
) -> None:
    """proxmox-not-configured is a 422 like any other: `errors` names the field the
    installation cannot serve, as the schema's ValidationProblem says."""
    workspace = world.workspaces["a"]
    body = {
        "name": "share",
        "type": "nfs",
        "capacity_gb": 5,
        "connection": {"server": "nas", "export": "/backup"},
    }
    response = await without_proxmox.post(
        f"/api/v1/workspaces/{workspace}/backup-storages", json=body, headers=world.auth("ws_admin")
    )
    problem = await expect(response, 422)
    assert problem["type"] == "/problems/proxmox-not-configured"
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [
        ("body.type", "proxmox-not-configured")
    ]
    assert_documented(response, "POST", "/api/v1/workspaces/{workspace_id}/backup-storages")


async def test_a_fixed_setting_names_each_field_it_refuses(
    api: ApiClient, world: World, settings: Settings
) -> None:
    workspace = await new_workspace(api, world)
    nfs = {"server": "10.0.0.5", "export": "/exports/backup"}
    storage = await _storage(api, world, workspace, "share", type="nfs", connection=nfs)
    path = f"/api/v1/workspaces/{workspace}/backup-storages/{storage}"
    moved = {"server": "10.0.0.6", "export": "/exports/other"}
    before = snapshot(settings.database_url)
    response = await api.put(path, json={"connection": moved}, headers=world.auth("ws_admin"))
    problem = await expect(response, 422)
    assert snapshot(settings.database_url) == before
    assert problem["type"] == "/problems/fixed-connection-setting"
    assert [e["field"] for e in problem["errors"]] == [
        "body.connection.server",
        "body.connection.export",
    ]
    assert_documented(
        response, "PUT", "/api/v1/workspaces/{workspace_id}/backup-storages/{storage_id}"
    )
