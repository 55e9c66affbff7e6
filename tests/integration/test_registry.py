"""The registry API: users, tokens, workspaces, members, applications, me, audit."""

from __future__ import annotations

import pytest

from tests.support.api import ApiClient, World, expect

pytestmark = pytest.mark.integration


async def test_me_lists_memberships(api: ApiClient, world: World) -> None:
    body = await expect(await api.get("/api/v1/me", headers=world.auth("ws_admin")), 200)
    assert body["user"]["id"] == world.users["ws_admin"]
    assert [m["role"] for m in body["memberships"]] == ["admin"]
    assert body["memberships"][0]["workspace_id"] == world.workspaces["a"]


async def test_application_password_is_write_only_and_encrypted(
    api: ApiClient, world: World, settings
) -> None:
    body = await expect(
        await api.get(f"/api/v1/applications/{world.apps['a']}", headers=world.auth("owner")), 200
    )
    assert body["platform"]["database_url"] == "postgresql://shop@127.0.0.1:5432/shop"
    assert body["platform"]["database_password_set"] is True
    assert "s3cret-pw" not in str(body)
