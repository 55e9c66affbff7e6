"""Schemathesis against the OpenAPI the app serves: no 5xx, every answer as documented, no
input the schema refuses accepted, and a 405 with ``Allow`` for a method a path lacks.

Bounded and reproducible: a fixed number of examples per operation, a fixed seed,
derandomized generation and no example database on disk. Isolated: the suite has its own
metadata database (dropped afterwards) and its own Temporal namespace on the session's dev
server; real workers build the world (storages, a succeeded backup, a restore), then stop,
so the runs the fuzzer starts (backups, restores, storage deletions) stay queued and touch
nothing outside that namespace.

Path ids and the ids inside bodies are drawn mostly from the world's real objects, as
coherent sets (a backup of that application, in that workspace), so requests get past 404
into the route logic, and otherwise at random. Before each operation the world is put back
(workspace plans, the application's policy), so one operation's deletes do not starve the
next. It runs as a workspace admin first and a platform admin second, each aiming at a
storage of its own, since both may delete what they aim at.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client

from api.main import create_app
from api.openapi import install
from api.schemas.policies import PolicyIn
from core.settings import Settings
from core.temporal import register_search_attributes
from devstack.postgres import PostgresServer
from tests.support import database as dbsupport
from tests.support.api import ApiClient, World, build_world, expect, running_app, wait_for
from tests.support.backups import finished, make_app, run_backup
from tests.support.openapi import served_openapi
from tests.support.workers import running_workers

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

MAX_EXAMPLES = 30
SEED = 20_240_9
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    # an input the schema refuses (a bool for a number, a missing field...) is refused too
    negative_data_rejection,
    # a method the path lacks is a 405 that says which it has (Allow)
    unsupported_method,
]
# /readyz answers its documented 503 `not-ready` when no worker polled in the last 90 s, which
# is true here: the in-process workers share the session loop, idle while a synchronous
# fuzz pass runs. Its answers are still checked against the schema.
READINESS_CHECKS = [check for check in CHECKS if check is not not_a_server_error]
ROLES = {"test_as_workspace_admin": "ws_admin", "test_as_platform_admin": "platform_admin"}
# A five-field cron that fires daily: the schema cannot say so, so blind strings never pass.
SCHEDULES = ["0 3 * * *", "30 1 * * 1"]
SCHEDULE_MAX_LENGTH = PolicyIn.model_json_schema()["properties"]["schedule"]["maxLength"]


@dataclass
class FuzzWorld:
    world: World
    workspace: str
    app: str
    storage: str
    policy: dict[str, Any]
    scenes: list[dict[str, str]]
    """Coherent sets of real path ids; the first is the application with backups."""
    spare_storages: dict[str, str]
    """A storage per role, the one its storage_id path parameters aim at."""
    body_values: dict[str, list[str]]
    """Real values for body members that random strings would never get right."""
    statuses: dict[str, int] = field(default_factory=dict)


# What the current role aims at; set before each operation, read when examples are drawn.
TARGETS: dict[str, Any] = {"scenes": [], "body": {}}


async def _own_namespace(client: Client) -> str:
    """A namespace of the session's dev server that no worker polls once the world is built."""
    namespace = f"cairn-fuzz-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=timedelta(days=1)
        )
    )
    return namespace


@pytest.fixture(scope="module")
def fuzz_database(database_server: PostgresServer) -> Iterator[str]:
    """A metadata database of the suite's own, dropped afterwards with all the fuzzer wrote."""
    with dbsupport.fresh_database(database_server, f"cairn_fuzz_{uuid.uuid4().hex[:10]}") as url:
        yield url


@pytest.fixture(scope="module")
async def fuzz_settings(
    settings: Settings, fuzz_database: str, temporal_client: Client
) -> Settings:
    namespace = await _own_namespace(temporal_client)
    own = settings.model_copy(
        update={"temporal_namespace": namespace, "database_url": fuzz_database}
    )
    deadline = time.monotonic() + 30
    while True:  # a new namespace takes a moment to reach the dev server's cache
        try:
            await register_search_attributes(own)
            return own
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _storage(api: ApiClient, world: World, workspace: str, name: str) -> str:
    admin = world.auth("ws_admin")
    url = f"/api/v1/workspaces/{workspace}/backup-storages"
    body = {"name": name, "type": "local", "capacity_gb": 5}
    accepted = await expect(await api.post(url, json=body, headers=admin), 202)
    await wait_for(api, f"{url}/{accepted['id']}", admin, lambda s: s["status"] == "active")
    return str(accepted["id"])


@pytest.fixture(scope="module")
async def fuzz_world(
    fuzz_settings: Settings,
    database_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> FuzzWorld:
    """Tenants, storages, a succeeded backup and a finished restore, made by real workers."""
    client = await Client.connect(
        fuzz_settings.temporal_address, namespace=fuzz_settings.temporal_namespace
    )
    async with running_app(fuzz_settings) as api, running_workers(fuzz_settings, client):
        world = await build_world(api)
        app = await make_app(api, world, database_server, tmp_path_factory.mktemp("fuzz-app"))
        backup = await run_backup(api, world, app)
        assert backup["status"] == "succeeded", backup
        owner = world.auth("owner")
        restore = await expect(
            await api.post(
                f"{app.backups}/{backup['id']}/restore",
                json={"restore_type": "selective", "database": True},
                headers=owner,
            ),
            202,
        )
        await wait_for(
            api, f"/api/v1/applications/{app.id}/restores/{restore['id']}", owner, finished
        )
        spares = {
            role: await _storage(api, world, app.workspace, f"spare-{role.replace('_', '-')}")
            for role in ROLES.values()
        }
        # Tokens of their own, so a DELETE /admin/tokens/{id} that hits one locks nobody out.
        tokens = [
            await expect(
                await api.post(
                    f"/api/v1/admin/users/{world.users['member']}/tokens",
                    json={"name": f"spare-{i}"},
                    headers=world.auth("platform_admin"),
                ),
                201,
            )
            for i in range(2)
        ]
    main = {
        "workspace_id": app.workspace,
        "app_id": app.id,
        "backup_id": backup["id"],
        "restore_id": restore["id"],
        "user_id": world.users["member"],
        "token_id": tokens[0]["id"],
    }
    others = [
        {
            "workspace_id": world.workspaces[key],
            "app_id": world.apps[key],
            "user_id": world.users[user],
            "token_id": tokens[1]["id"],
        }
        for key, user in (("a", "owner"), ("b", "other_admin"), ("free", "free_admin"))
    ]
    return FuzzWorld(
        world=world,
        workspace=app.workspace,
        app=app.id,
        storage=app.storage,
        policy={"storage_id": app.storage, "schedule": "0 3 * * *"},
        scenes=[main, *others],
        spare_storages=spares,
        body_values={
            "schedule": SCHEDULES,
            "storage_id": [app.storage, *spares.values()],
            # other_admin is no member of the application's workspace: a 422 of its own
            "owner_id": [world.users[u] for u in ("owner", "member", "ws_admin", "other_admin")],
            "user_id": list(world.users.values()),
        },
    )


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _well_formed(key: str, value: object) -> bool:
    """A value the schema accepts where a real one is swapped in: an id that is a UUID, a
    schedule of an allowed length. Aiming a malformed one would turn a negative case (which
    must be refused) into a valid request."""
    if not isinstance(value, str):
        return False
    if key.endswith("_id"):
        return _is_uuid(value)
    return key != "schedule" or 0 < len(value) <= SCHEDULE_MAX_LENGTH


def _aim_path(generated: dict[str, Any] | None) -> Any:
    """Keeps the generated ids (a third of the time) or swaps in a coherent set of real ones."""
    scenes: list[dict[str, str]] = TARGETS["scenes"]
    if not generated or not scenes:
        return st.just(generated)

    def fill(scene: dict[str, str]) -> dict[str, Any]:
        return {
            name: scene[name] if name in scene and _well_formed(name, value) else value
            for name, value in generated.items()
        }

    return st.one_of(
        st.just(generated), st.just(fill(scenes[0])), st.sampled_from(scenes).map(fill)
    )


def _aim_body(body: Any) -> Any:
    """Points ids (and schedules) inside a JSON object body at real ones, half of the time."""
    if not isinstance(body, dict):
        return st.just(body)
    real: dict[str, list[str]] = TARGETS["body"]
    return st.fixed_dictionaries(
        {
            key: st.one_of(st.just(value), st.sampled_from(real[key]))
            if key in real and _well_formed(key, value)
            else st.just(value)
            for key, value in body.items()
        }
    )


def _fuzz_schema() -> Any:
    """The served schema minus the Authorization header: each test sends its role's token."""
    document = copy.deepcopy(served_openapi())
    for item in document["paths"].values():
        for operation in item.values():
            operation["parameters"] = [
                p
                for p in operation.get("parameters", [])
                if (p["in"], p["name"].lower()) != ("header", "authorization")
            ]
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
        }
    )
    schema = schemathesis.openapi.from_dict(document, config=config)

    @schema.hook("flatmap_path_parameters")
    def aim_path(context: Any, path_parameters: dict[str, Any] | None) -> Any:
        return _aim_path(path_parameters)

    @schema.hook("flatmap_body")
    def aim_body(context: Any, body: Any) -> Any:
        return _aim_body(body)

    return schema


@pytest.fixture(scope="module")
def fuzz_app(fuzz_settings: Settings) -> FastAPI:
    """The app under fuzz; schemathesis runs its lifespan around each operation's test."""
    app = create_app(fuzz_settings)
    install(app)
    return app


async def _put_back(settings: Settings, fuzz_world: FuzzWorld) -> None:
    """Workspace plans and the application's policy as built, through the API."""
    root = fuzz_world.world.auth("platform_admin")
    async with running_app(settings) as api:
        for workspace in (fuzz_world.workspace, *fuzz_world.world.workspaces.values()):
            plan = "free" if workspace == fuzz_world.world.workspaces["free"] else "dedicated"
            url = f"/api/v1/admin/workspaces/{workspace}"
            await expect(await api.patch(url, json={"plan": plan}, headers=root), 200)
        response = await api.post(
            f"/api/v1/applications/{fuzz_world.app}/backup-policy",
            json=fuzz_world.policy,
            headers=fuzz_world.world.auth("owner"),
        )
        assert response.status_code in (200, 201), response.text


@pytest.fixture(scope="module")
def fuzz_report(fuzz_world: FuzzWorld) -> Iterator[None]:
    yield
    TARGETS.update(scenes=[], body={})
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(fuzz_world.statuses.items()))
    print(f"\nfuzz responses by role and status: {counts}")


@pytest.fixture
def world_as_built(
    request: pytest.FixtureRequest,
    fuzz_settings: Settings,
    fuzz_world: FuzzWorld,
    fuzz_report: None,
) -> FuzzWorld:
    """The world put back before each operation, and the targets of this test's role."""
    # A loop of its own: the test is synchronous and the session's loop is idle meanwhile.
    asyncio.run(_put_back(fuzz_settings, fuzz_world))
    role = ROLES[request.function.__name__]
    storage = fuzz_world.spare_storages[role]
    scenes = [{**fuzz_world.scenes[0], "storage_id": storage}, *fuzz_world.scenes[1:]]
    TARGETS.update(scenes=scenes, body=fuzz_world.body_values)
    return fuzz_world


def _aim_coverage(case: Any) -> None:
    """Coverage cases vary one input at a time around placeholder ids, which only ever meet
    404; every other well-formed id is pointed at the application with backups instead."""
    meta = case.meta
    if meta is None or meta.phase.name != "coverage":
        return
    data = meta.phase.data
    varied = f"{data.parameter or ''} {data.location or ''}"
    scene = TARGETS["scenes"][0]
    for name, value in (case.path_parameters or {}).items():
        if name not in varied and name in scene and _is_uuid(value):
            case.path_parameters[name] = scene[name]
    if isinstance(case.body, dict):
        for key, real in TARGETS["body"].items():
            value = case.body.get(key)
            if key not in varied and _well_formed(key, value):
                case.body[key] = real[0]


def _fuzz(case: Any, app: FastAPI, fuzz_world: FuzzWorld, who: str) -> None:
    _aim_coverage(case)
    checks = READINESS_CHECKS if case.path == "/readyz" else CHECKS
    response = case.call_and_validate(app=app, headers=fuzz_world.world.auth(who), checks=checks)
    key = f"{who} {response.status_code}"
    fuzz_world.statuses[key] = fuzz_world.statuses.get(key, 0) + 1


# Workspace admin first: the platform admin's run deletes applications it can reach.
as_workspace_admin = _fuzz_schema()
as_platform_admin = _fuzz_schema()


# The world is put back per operation, not per example: that is the intent.
ONE_WORLD_PER_OPERATION = hypothesis_settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@as_workspace_admin.parametrize()
@ONE_WORLD_PER_OPERATION
def test_as_workspace_admin(case: Any, fuzz_app: FastAPI, world_as_built: FuzzWorld) -> None:
    _fuzz(case, fuzz_app, world_as_built, "ws_admin")


@as_platform_admin.parametrize()
@ONE_WORLD_PER_OPERATION
def test_as_platform_admin(case: Any, fuzz_app: FastAPI, world_as_built: FuzzWorld) -> None:
    _fuzz(case, fuzz_app, world_as_built, "platform_admin")


def test_served_schema_documents_problems() -> None:
    """Every operation documents its problems as problem+json, never FastAPI's 422 shape."""
    schema = served_openapi()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            errors = {s: r for s, r in operation["responses"].items() if s >= "400"}
            assert "500" in errors, (method, path)
            for status, response in errors.items():
                content = list(response["content"])
                assert content == ["application/problem+json"], (method, path, status)


async def test_problems_built_by_routes_match_the_schema(
    fuzz_settings: Settings, fuzz_world: FuzzWorld
) -> None:
    """A 422 a route raises itself (not the validation handler) keeps the documented shape;
    the fuzzer rarely builds a body valid enough to reach one."""
    world = fuzz_world.world
    path = "/api/v1/workspaces/{workspace_id}/applications"
    body = {
        "name": "stranger-owned",
        "owner_id": world.users["other_admin"],
        "platform": {"kind": "local"},
    }
    async with running_app(fuzz_settings) as api:
        response = await api.post(
            path.format(workspace_id=fuzz_world.workspace),
            json=body,
            headers=world.auth("platform_admin"),
        )
    assert response.status_code == 422, response.text
    as_platform_admin[path]["POST"].validate_response(response)
