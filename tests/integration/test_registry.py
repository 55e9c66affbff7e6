"""The registry API: users, tokens, workspaces, members, applications, me, audit."""

from __future__ import annotations

import psycopg
import pytest

from core import crypto
from core.settings import Settings
from core.tokens import hash_token
from tests.support.api import ApiClient, World, expect
from tests.support.database import libpq_url

pytestmark = pytest.mark.integration


async def test_me_lists_memberships(api: ApiClient, world: World) -> None:
    body = await expect(await api.get("/api/v1/me", headers=world.auth("ws_admin")), 200)
    assert body["user"]["id"] == world.users["ws_admin"]
    roles = {m["workspace_id"]: m["role"] for m in body["memberships"]}
    assert roles[world.workspaces["a"]] == "admin"
    assert world.workspaces["b"] not in roles


async def test_application_password_is_write_only_and_encrypted(
    api: ApiClient, world: World
) -> None:
    body = await expect(
        await api.get(f"/api/v1/applications/{world.apps['a']}", headers=world.auth("owner")), 200
    )
    assert body["platform"]["database_url"] == "postgresql://shop@127.0.0.1:5432/shop"
    assert body["platform"]["database_password_set"] is True
    assert "s3cret-pw" not in str(body)


async def test_token_is_shown_once_stored_hashed_and_revocable(
    api: ApiClient, world: World, settings: Settings
) -> None:
    root = world.auth("platform_admin")
    issued = await expect(
        await api.post(
            f"/api/v1/admin/users/{world.users['member']}/tokens", json={"name": "ci"}, headers=root
        ),
        201,
    )
    token = issued["token"]
    headers = {"Authorization": f"Bearer {token}"}
    await expect(await api.get("/api/v1/me", headers=headers), 200)
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        stored = conn.execute(
            "SELECT token_hash FROM api_tokens WHERE id = %s", (issued["id"],)
        ).fetchone()
    assert stored is not None and stored[0] == hash_token(token) and token not in stored[0]
    await expect(await api.delete(f"/api/v1/admin/tokens/{issued['id']}", headers=root), 204)
    problem = await expect(await api.get("/api/v1/me", headers=headers), 401)
    assert problem["type"] == "/problems/unauthorized"


async def test_secrets_are_sealed_in_the_database(world: World, settings: Settings) -> None:
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        row = conn.execute(
            "SELECT platform_settings::text, platform_secrets FROM applications WHERE id = %s",
            (world.apps["a"],),
        ).fetchone()
    assert row is not None
    assert "s3cret-pw" not in row[0] and "s3cret-pw" not in row[1]
    opened = crypto.open_json(
        row[1],
        master_key=settings.master_key_text,
        context=f"applications/{world.apps['a']}/platform_secrets",
    )
    assert opened == {"database_password": "s3cret-pw"}


async def test_lowering_quota_below_allocation_is_refused(
    api: ApiClient, world: World, settings: Settings
) -> None:
    ws = world.workspaces["b"]
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "INSERT INTO backup_storages (workspace_id, name, type, proxmox_storage_id,"
            " capacity_gb, status) VALUES (%s, 'q', 'local', %s, 40, 'active')",
            (ws, f"cairn-q-{ws[:8]}"),
        )
    root = world.auth("platform_admin")
    problem = await expect(
        await api.patch(
            f"/api/v1/admin/workspaces/{ws}", json={"backup_quota_gb": 30}, headers=root
        ),
        409,
    )
    assert problem["allocated_gb"] == 40 and problem["quota_gb"] == 30
    updated = await expect(
        await api.patch(
            f"/api/v1/admin/workspaces/{ws}", json={"backup_quota_gb": 40}, headers=root
        ),
        200,
    )
    assert updated["backup_quota_gb"] == 40
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute("DELETE FROM backup_storages WHERE name = 'q' AND workspace_id = %s", (ws,))


async def test_delete_application_as_platform_admin(api: ApiClient, world: World) -> None:
    root = world.auth("platform_admin")
    created = await expect(
        await api.post(
            f"/api/v1/workspaces/{world.workspaces['a']}/applications",
            json={
                "name": "doomed",
                "owner_id": world.users["owner"],
                "platform": {"kind": "local"},
            },
            headers=root,
        ),
        201,
    )
    await expect(await api.delete(f"/api/v1/applications/{created['id']}", headers=root), 204)
    await expect(await api.get(f"/api/v1/applications/{created['id']}", headers=root), 404)


async def test_lists_are_paginated_newest_first(api: ApiClient, world: World) -> None:
    root = world.auth("platform_admin")
    seen: list[str] = []
    cursor = None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = await expect(await api.get(f"/api/v1/admin/users{query}", headers=root), 200)
        assert len(page["items"]) <= 2
        seen += [u["created_at"] for u in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) >= len(world.users)


async def test_every_mutation_is_audited(api: ApiClient, world: World, settings: Settings) -> None:
    events = await expect(
        await api.get(
            f"/api/v1/workspaces/{world.workspaces['a']}/audit-events?limit=200",
            headers=world.auth("ws_admin"),
        ),
        200,
    )
    actions = {(e["action"], e["target_id"]) for e in events["items"]}
    assert ("workspace.create", world.workspaces["a"]) in actions
    assert ("member.add", world.users["member"]) in actions
    assert ("application.create", world.apps["a"]) in actions
    assert all(e["request_id"] for e in events["items"])
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        global_actions = {
            r[0] for r in conn.execute("SELECT DISTINCT action FROM audit_events").fetchall()
        }
    assert {"user.create", "token.issue", "token.revoke"} <= global_actions
