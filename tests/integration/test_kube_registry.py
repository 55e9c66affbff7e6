"""Registering a kubernetes application: stored as agreed with the platform, no password kept,
bad names and an unknown namespace refused with a 422 that names the field."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from kubernetes import client, config

from core.settings import Settings
from tests.fakes.kube import FakeKube
from tests.support.api import ApiClient, World, expect, running_app
from tests.support.database import libpq_url
from tests.support.kube import core

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        yield fake


@pytest.fixture(scope="module")
def shop(kube: FakeKube) -> str:
    """A namespace that exists in the cluster."""
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kube.kubeconfig)
    )
    name = f"shop-{uuid.uuid4().hex[:6]}"
    core(api).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(scope="module")
async def kube_api(settings: Settings, kube: FakeKube) -> AsyncIterator[ApiClient]:
    """The API of an installation that reaches the cluster (CAIRN_KUBECONFIG set)."""
    async with running_app(settings.model_copy(update={"kubeconfig": kube.kubeconfig})) as api:
        yield api


def body(world: World, name: str, **platform: Any) -> dict[str, Any]:
    return {
        "name": name,
        "owner_id": world.users["owner"],
        "platform": {"kind": "kubernetes", **platform},
    }


def stored_row(settings: Settings, app_id: str) -> tuple[dict[str, Any], str, str | None]:
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        row = conn.execute(
            "SELECT platform_settings, platform_kind, platform_secrets FROM applications"
            " WHERE id = %s",
            (app_id,),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


async def test_a_kubernetes_application_is_stored_as_the_platform_reads_it(
    kube_api: ApiClient, world: World, settings: Settings, shop: str
) -> None:
    root = world.auth("platform_admin")
    platform = {
        "namespace": shop,
        "workloads": {"names": ["deployment/web", "statefulset/db"]},
        "volumes": {"uploads": "web-uploads", "pgdata": "data-db-0"},
        "snapshot_class": "csi-snapclass",
        "database": {
            "host": "db.shop.svc",
            "dbname": "shop",
            "user": "shop",
            "password_secret": {"name": "db-credentials", "key": "password"},
        },
        "config": {"include": "selector", "selector": "app.kubernetes.io/part-of=shop"},
    }
    created = await expect(
        await kube_api.post(
            f"/api/v1/workspaces/{world.workspaces['a']}/applications",
            json=body(world, f"k8s-{uuid.uuid4().hex[:6]}", **platform),
            headers=root,
        ),
        201,
    )
    try:
        expected = {
            "namespace": shop,
            "context": None,
            "workloads": {"names": ["deployment/web", "statefulset/db"]},
            "volumes": {"uploads": "web-uploads", "pgdata": "data-db-0"},
            "snapshot_class": "csi-snapclass",
            "database": {
                "host": "db.shop.svc",
                "port": 5432,
                "dbname": "shop",
                "user": "shop",
                "password_secret": {"name": "db-credentials", "key": "password"},
            },
            "config": {"include": "selector", "selector": "app.kubernetes.io/part-of=shop"},
        }
        assert created["platform"] == {"kind": "kubernetes", **expected}
        settings_row, kind, secrets = stored_row(settings, created["id"])
        assert (settings_row, kind, secrets) == (expected, "kubernetes", None)
        shown = await expect(
            await kube_api.get(f"/api/v1/applications/{created['id']}", headers=root), 200
        )
        assert shown["platform"] == created["platform"]
    finally:
        await expect(
            await kube_api.delete(f"/api/v1/applications/{created['id']}", headers=root), 204
        )


async def test_defaults_and_a_selector_of_workloads(
    kube_api: ApiClient, world: World, settings: Settings, shop: str
) -> None:
    root = world.auth("platform_admin")
    created = await expect(
        await kube_api.post(
            f"/api/v1/workspaces/{world.workspaces['a']}/applications",
            json=body(
                world,
                f"k8s-{uuid.uuid4().hex[:6]}",
                namespace=shop,
                workloads={"selector": "app=shop"},
            ),
            headers=root,
        ),
        201,
    )
    try:
        settings_row, _, secrets = stored_row(settings, created["id"])
        assert settings_row == {
            "namespace": shop,
            "context": None,
            "workloads": {"selector": "app=shop"},
            "volumes": {},
            "snapshot_class": None,
            "database": None,
            "config": {"include": "all", "selector": None},
        }
        assert secrets is None
    finally:
        await expect(
            await kube_api.delete(f"/api/v1/applications/{created['id']}", headers=root), 204
        )


@pytest.mark.parametrize(
    ("platform", "field", "mention"),
    [
        ({"namespace": "Shop"}, "body.platform.namespace", "DNS-1123 label"),
        ({"namespace": "x" * 64}, "body.platform.namespace", "at most 63"),
        ({"volumes": {"data": "bad_pvc"}}, "body.platform.volumes.data", "DNS-1123 subdomain"),
        ({"volumes": {"../x": "data"}}, "body.platform.volumes.../x.[key]", "pattern"),
        (
            {"workloads": {"names": ["job/nightly"]}},
            "body.platform.workloads.names.0",
            "deployment/",
        ),
        (
            {"workloads": {"names": ["deployment/Web"]}},
            "body.platform.workloads.names.0",
            "DNS-1123",
        ),
        ({"workloads": {"selector": "app in ()"}}, "body.platform.workloads.selector", "empty"),
        ({"workloads": {"selector": "app shop"}}, "body.platform.workloads.selector", "key=value"),
        ({"workloads": {"names": [], "selector": "a=b"}}, "body.platform.workloads", "either"),
        ({"config": {"include": "selector"}}, "body.platform.config", "selector"),
        ({"config": {"include": "some"}}, "body.platform.config.include", "all"),
        ({"snapshot_class": "Fast_SSD"}, "body.platform.snapshot_class", "DNS-1123"),
        (
            {
                "database": {
                    "host": "db",
                    "port": 0,
                    "dbname": "d",
                    "user": "u",
                    "password_secret": {"name": "db", "key": "pw"},
                }
            },
            "body.platform.database.port",
            "greater than or equal to 1",
        ),
        (
            {
                "database": {
                    "host": "db",
                    "dbname": "d",
                    "user": "u",
                    "password_secret": {"name": "Db_Secret", "key": "pw"},
                }
            },
            "body.platform.database.password_secret.name",
            "DNS-1123",
        ),
        (
            {
                "database": {
                    "host": "db",
                    "dbname": "d",
                    "user": "u",
                    "password": "s3cret",
                    "password_secret": {"name": "db", "key": "pw"},
                }
            },
            "body.platform.database.password",
            "Extra inputs",
        ),
        (
            {
                "database": {
                    "host": "db",
                    "dbname": "template1",
                    "user": "u",
                    "password_secret": {"name": "db", "key": "pw"},
                }
            },
            "body.platform.database",
            "system database",
        ),
        ({"namespace": "nowhere"}, "body.platform.namespace", "does not exist in the cluster"),
    ],
)
async def test_bad_kubernetes_settings_are_a_precise_422(
    kube_api: ApiClient,
    world: World,
    shop: str,
    unchanged: None,
    platform: dict[str, Any],
    field: str,
    mention: str,
) -> None:
    response = await kube_api.post(
        f"/api/v1/workspaces/{world.workspaces['a']}/applications",
        json=body(world, "bad-k8s", **{"namespace": shop, **platform}),
        headers=world.auth("platform_admin"),
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == [field], problem
    assert mention in problem["detail"], problem
    assert "s3cret" not in response.text
