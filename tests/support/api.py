"""The API under test, served in-process, and a world of tenants built through it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio.client import Client

from api.main import create_app
from contracts.task_queues import CONTROL_TASK_QUEUE
from core.settings import Settings
from db.bootstrap import create_admin
from tests.support import histories
from workflows.storage import RefreshStorageUsageWorkflow

ApiClient = httpx.AsyncClient


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cairn.test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@dataclass
class World:
    """Named identities and objects: two dedicated workspaces (a, b) and a free one."""

    tokens: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    workspaces: dict[str, str] = field(default_factory=dict)
    apps: dict[str, str] = field(default_factory=dict)
    revoked_token: str = ""

    def auth(self, who: str) -> dict[str, str]:
        if who == "anonymous":
            return {}
        token = self.revoked_token if who == "revoked" else self.tokens[who]
        return {"Authorization": f"Bearer {token}"}


async def expect(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if response.content else None


async def admin_token(client: httpx.AsyncClient) -> str:
    app: Any = client.app  # type: ignore[attr-defined]
    async with app.state.sessions() as session:
        return await create_admin(session, f"root-{uuid.uuid4().hex[:8]}@cairn.test")


async def build_world(client: httpx.AsyncClient) -> World:
    world = World()
    world.tokens["platform_admin"] = await admin_token(client)
    root = world.auth("platform_admin")
    tag = uuid.uuid4().hex[:6]

    async def user(name: str) -> None:
        body = {"email": f"{name}-{tag}@example.com", "name": name}
        created = await expect(
            await client.post("/api/v1/admin/users", json=body, headers=root), 201
        )
        world.users[name] = created["id"]
        issued = await expect(
            await client.post(f"/api/v1/admin/users/{created['id']}/tokens", json={}, headers=root),
            201,
        )
        world.tokens[name] = issued["token"]

    for name in ("ws_admin", "member", "owner", "other_admin", "free_admin", "gone"):
        await user(name)

    for key, plan in (("a", "dedicated"), ("b", "dedicated"), ("free", "free")):
        body = {"name": f"ws-{key}-{tag}", "plan": plan, "backup_quota_gb": 100}
        created = await expect(
            await client.post("/api/v1/admin/workspaces", json=body, headers=root), 201
        )
        world.workspaces[key] = created["id"]

    memberships = [
        ("a", "ws_admin", "admin"),
        ("a", "member", "member"),
        ("a", "owner", "member"),
        ("b", "other_admin", "admin"),
        ("free", "free_admin", "admin"),
    ]
    for ws, name, role in memberships:
        await expect(
            await client.post(
                f"/api/v1/workspaces/{world.workspaces[ws]}/members",
                json={"user_id": world.users[name], "role": role},
                headers=root,
            ),
            201,
        )

    volumes: Any = client.app.state.settings.volume_roots[0]  # type: ignore[attr-defined]
    for key, ws, owner in (
        ("a", "a", "owner"),
        ("b", "b", "other_admin"),
        ("free", "free", "free_admin"),
    ):
        body = {
            "name": f"app-{key}",
            "owner_id": world.users[owner],
            "platform": {
                "kind": "local",
                "database_url": "postgresql://shop:s3cret-pw@127.0.0.1:5432/shop",
                "volumes": {"uploads": f"{volumes}/world-{tag}/{key}/uploads"},
            },
        }
        created = await expect(
            await client.post(
                f"/api/v1/workspaces/{world.workspaces[ws]}/applications", json=body, headers=root
            ),
            201,
        )
        world.apps[key] = created["id"]

    world.revoked_token = world.tokens.pop("gone")
    tokens = await expect(
        await client.post(
            f"/api/v1/admin/users/{world.users['gone']}/tokens", json={"name": "x"}, headers=root
        ),
        201,
    )
    world.revoked_token = tokens["token"]
    await expect(await client.delete(f"/api/v1/admin/tokens/{tokens['id']}", headers=root), 204)
    return world


async def new_workspace(
    client: httpx.AsyncClient,
    world: World,
    *,
    plan: str = "dedicated",
    quota_gb: int = 1000,
    admin: str = "ws_admin",
    members: tuple[str, ...] = ("member",),
) -> str:
    """A fresh workspace, so a test's quota arithmetic starts from zero."""
    root = world.auth("platform_admin")
    body = {"name": f"ws-{uuid.uuid4().hex[:12]}", "plan": plan, "backup_quota_gb": quota_gb}
    workspace = await expect(
        await client.post("/api/v1/admin/workspaces", json=body, headers=root), 201
    )
    for name, role in ((admin, "admin"), *((m, "member") for m in members)):
        await expect(
            await client.post(
                f"/api/v1/workspaces/{workspace['id']}/members",
                json={"user_id": world.users[name], "role": role},
                headers=root,
            ),
            201,
        )
    return str(workspace["id"])


async def wait_for(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str],
    done: Any,
    seconds: float = 30,
) -> Any:
    """Polls ``path`` until ``done(body)`` holds (or the resource is gone, when done is None)."""
    import asyncio
    import time

    deadline = time.monotonic() + seconds
    body = None
    while time.monotonic() < deadline:
        response = await client.get(path, headers=headers)
        if done is None and response.status_code == 404:
            return None
        body = response.json()
        if done is not None and response.status_code == 200 and done(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} did not reach the expected state in {seconds}s: {body}")


async def temporal_refresh(api: ApiClient) -> None:
    """Runs one storage usage refresh now, as the schedule would."""
    client: Client = await api.app.state.temporal.get()  # type: ignore[attr-defined]
    refresh_id = f"test-usage-refresh-{uuid.uuid4()}"
    await client.execute_workflow(
        RefreshStorageUsageWorkflow.run, id=refresh_id, task_queue=CONTROL_TASK_QUEUE
    )
    await histories.record(client, refresh_id, "storage-usage-refresh")
