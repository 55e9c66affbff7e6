"""Every registry route against every kind of caller; another workspace's ids answer 404."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.api import ApiClient, World

pytestmark = pytest.mark.integration

CALLERS = ("anonymous", "revoked", "platform_admin", "ws_admin", "member", "owner", "other_admin")


def _row(pa: int | None, ws_admin: int, member: int, owner: int, other: int) -> dict[str, Any]:
    return dict(zip(CALLERS, (401, 401, pa, ws_admin, member, owner, other), strict=True))


def routes(world: World) -> list[tuple[str, str, Any, dict[str, Any]]]:
    ws_a, app_a = world.workspaces["a"], world.apps["a"]
    fresh = uuid.uuid4().hex[:8]
    return [
        ("GET", "/api/v1/me", None, _row(200, 200, 200, 200, 200)),
        (
            "POST",
            "/api/v1/admin/users",
            {"email": f"u{fresh}@x.io", "name": "u"},
            _row(201, 403, 403, 403, 403),
        ),
        ("GET", "/api/v1/admin/users", None, _row(200, 403, 403, 403, 403)),
        (
            "POST",
            f"/api/v1/admin/users/{world.users['member']}/tokens",
            {"name": "t"},
            _row(201, 403, 403, 403, 403),
        ),
        ("DELETE", f"/api/v1/admin/tokens/{uuid.uuid4()}", None, _row(404, 403, 403, 403, 403)),
        ("POST", "/api/v1/admin/workspaces", {"name": f"w-{fresh}"}, _row(201, 403, 403, 403, 403)),
        ("GET", "/api/v1/admin/workspaces", None, _row(200, 403, 403, 403, 403)),
        ("GET", f"/api/v1/admin/workspaces/{ws_a}", None, _row(200, 403, 403, 403, 403)),
        ("PATCH", f"/api/v1/admin/workspaces/{ws_a}", {}, _row(200, 403, 403, 403, 403)),
        (
            "POST",
            f"/api/v1/workspaces/{ws_a}/members",
            {"user_id": world.users["member"], "role": "member"},
            _row(409, 409, 403, 403, 404),
        ),
        ("GET", f"/api/v1/workspaces/{ws_a}/members", None, _row(200, 200, 403, 403, 404)),
        (
            "POST",
            f"/api/v1/workspaces/{ws_a}/applications",
            {"name": "app-a", "owner_id": world.users["owner"], "platform": {"kind": "local"}},
            _row(409, 403, 403, 403, 404),
        ),
        ("GET", f"/api/v1/workspaces/{ws_a}/applications", None, _row(200, 200, 200, 200, 404)),
        ("GET", f"/api/v1/applications/{app_a}", None, _row(200, 200, 200, 200, 404)),
        # the platform admin's delete is exercised in test_registry (it removes the app)
        ("DELETE", f"/api/v1/applications/{app_a}", None, _row(None, 403, 403, 403, 404)),
        ("GET", f"/api/v1/workspaces/{ws_a}/audit-events", None, _row(200, 200, 403, 403, 404)),
    ]


@pytest.mark.parametrize("caller", CALLERS)
async def test_authorization_matrix(api: ApiClient, world: World, caller: str) -> None:
    failures = []
    for method, path, body, expected in routes(world):
        want = expected[caller]
        if want is None:
            continue
        response = await api.request(method, path, json=body, headers=world.auth(caller))
        if response.status_code != want:
            failures.append(f"{method} {path}: {response.status_code} != {want} {response.text}")
        elif want >= 400:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["status"] == want
    assert not failures, "\n".join(failures)


async def test_other_workspace_ids_look_unknown(api: ApiClient, world: World) -> None:
    """A foreign application answers exactly like an id that does not exist."""
    foreign = await api.get(f"/api/v1/applications/{world.apps['b']}", headers=world.auth("owner"))
    unknown = await api.get(f"/api/v1/applications/{uuid.uuid4()}", headers=world.auth("owner"))
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["type"] == unknown.json()["type"] == "/problems/not-found"
