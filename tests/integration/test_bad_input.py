"""Bad input on every route: a precise 4xx problem and not one row changed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import ApiClient, World

pytestmark = pytest.mark.integration

LONG = "x" * 300


def cases(world: World) -> list[tuple[str, str, Any, int, str]]:
    ws, user = world.workspaces["a"], world.users["member"]
    owner = world.users["owner"]

    def app_body(**platform: Any) -> dict[str, Any]:
        return {"name": "new-app", "owner_id": owner, "platform": {"kind": "local", **platform}}

    return [
        ("POST", "/api/v1/admin/users", b'{"email": ', 400, "malformed-json"),
        ("POST", "/api/v1/admin/users", {"email": "nope", "name": "n"}, 422, "body.email"),
        ("POST", "/api/v1/admin/users", {"email": "a@b.io", "name": LONG}, 422, "body.name"),
        (
            "POST",
            "/api/v1/admin/users",
            {"email": "a@b.io", "name": "n", "role": "x"},
            422,
            "body.role",
        ),
        (
            "POST",
            "/api/v1/admin/users",
            {"email": "a@b.io", "name": "n", "is_platform_admin": "maybe"},
            422,
            "is_platform_admin",
        ),
        ("POST", "/api/v1/admin/users", [1, 2], 422, "body"),
        ("GET", "/api/v1/admin/users?limit=0", None, 422, "query.limit"),
        ("GET", "/api/v1/admin/users?cursor=%%%", None, 400, "invalid-cursor"),
        ("POST", "/api/v1/admin/users/not-a-uuid/tokens", {}, 422, "path.user_id"),
        ("POST", f"/api/v1/admin/users/{user}/tokens", {"name": LONG}, 422, "body.name"),
        ("DELETE", "/api/v1/admin/tokens/42", None, 422, "path.token_id"),
        ("POST", "/api/v1/admin/workspaces", {"name": "Bad Name!"}, 422, "body.name"),
        ("POST", "/api/v1/admin/workspaces", {"name": "../etc"}, 422, "body.name"),
        ("POST", "/api/v1/admin/workspaces", {"name": LONG}, 422, "body.name"),
        ("POST", "/api/v1/admin/workspaces", {"name": "ok", "plan": "gold"}, 422, "body.plan"),
        (
            "POST",
            "/api/v1/admin/workspaces",
            {"name": "ok", "backup_quota_gb": -1},
            422,
            "backup_quota_gb",
        ),
        (
            "POST",
            "/api/v1/admin/workspaces",
            {"name": "ok", "backup_quota_gb": "ten"},
            422,
            "backup_quota_gb",
        ),
        ("GET", "/api/v1/admin/workspaces/123", None, 422, "path.workspace_id"),
        (
            "PATCH",
            f"/api/v1/admin/workspaces/{ws}",
            {"backup_quota_gb": -5},
            422,
            "backup_quota_gb",
        ),
        ("PATCH", f"/api/v1/admin/workspaces/{ws}", {"name": "rename"}, 422, "body.name"),
        ("PATCH", f"/api/v1/admin/workspaces/{ws}", b"not json", 400, "malformed-json"),
        (
            "POST",
            f"/api/v1/workspaces/{ws}/members",
            {"user_id": user, "role": "owner"},
            422,
            "body.role",
        ),
        (
            "POST",
            f"/api/v1/workspaces/{ws}/members",
            {"user_id": "x", "role": "member"},
            422,
            "body.user_id",
        ),
        (
            "POST",
            f"/api/v1/workspaces/{ws}/members",
            {"user_id": "00000000-0000-0000-0000-000000000000", "role": "member"},
            404,
            "not-found",
        ),
        ("POST", f"/api/v1/workspaces/{ws}/applications", app_body(kind="k8s"), 422, "kind"),
        (
            "POST",
            f"/api/v1/workspaces/{ws}/applications",
            app_body(database_url="mysql://u@h/db"),
            422,
            "database_url",
        ),
        (
            "POST",
            f"/api/v1/workspaces/{ws}/applications",
            app_body(database_url="postgresql://u@h/"),
            422,
            "database_url",
        ),
        (
            "POST",
            f"/api/v1/workspaces/{ws}/applications",
            app_body(volumes={"data": "relative/dir"}),
            422,
            "volumes",
        ),
        (
            "POST",
            f"/api/v1/workspaces/{ws}/applications",
            app_body(volumes={"data": "/srv/../etc"}),
            422,
            "volumes",
        ),
        (
            "POST",
            f"/api/v1/workspaces/{ws}/applications",
            app_body(volumes={"../x": "/srv/x"}),
            422,
            "volumes",
        ),
        (
            "POST",
            f"/api/v1/workspaces/{ws}/applications",
            app_body(volumes={"data": "/"}),
            422,
            "volumes",
        ),
        (
            "POST",
            f"/api/v1/workspaces/{ws}/applications",
            {**app_body(), "owner_id": world.users["other_admin"]},
            422,
            "owner_id",
        ),
        (
            "POST",
            f"/api/v1/workspaces/{ws}/applications",
            {**app_body(), "name": LONG},
            422,
            "body.name",
        ),
        ("GET", "/api/v1/applications/abc", None, 422, "path.app_id"),
        (
            "DELETE",
            "/api/v1/applications/00000000-0000-0000-0000-000000000000",
            None,
            404,
            "not-found",
        ),
        ("GET", f"/api/v1/workspaces/{ws}/audit-events?limit=1000", None, 422, "query.limit"),
        ("GET", "/api/v1/nowhere", None, 404, "no route"),
        ("PUT", "/api/v1/me", None, 405, "method-not-allowed"),
    ]


async def test_bad_input_is_refused_and_changes_nothing(
    api: ApiClient, world: World, unchanged: None
) -> None:
    failures = []
    for method, path, body, status, mention in cases(world):
        kwargs: dict[str, Any] = (
            {"content": body, "headers": {"Content-Type": "application/json"}}
            if isinstance(body, bytes)
            else {"json": body}
        )
        kwargs["headers"] = {**kwargs.get("headers", {}), **world.auth("platform_admin")}
        response = await api.request(method, path, **kwargs)
        problem = response.json()
        if (
            response.status_code != status
            or response.headers["content-type"] != "application/problem+json"
            or mention not in response.text
            or not problem.get("detail")
        ):
            failures.append(f"{method} {path} {body!r}: {response.status_code} {response.text}")
    assert not failures, "\n".join(failures)


async def test_validation_problem_lists_each_field(api: ApiClient, world: World) -> None:
    response = await api.post(
        "/api/v1/admin/workspaces",
        json={"name": "Bad!", "plan": "gold", "backup_quota_gb": -1},
        headers=world.auth("platform_admin"),
    )
    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"body.name", "body.plan", "body.backup_quota_gb"}
