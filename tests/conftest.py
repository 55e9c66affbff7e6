"""Fixtures: a fresh migrated database per run, a Temporal dev server, an API client."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from core.crypto import generate_master_key
from core.search_attributes import SEARCH_ATTRIBUTE_KEYS
from core.settings import Settings
from devstack.postgres import PostgresServer
from devstack.temporal import cli_path
from tests.fakes.pve import FakePVE
from tests.support import database as dbsupport
from tests.support.api import ApiClient, World, build_world, running_app
from tests.support.backups import CREATED_DATABASES
from tests.support.webhook import WebhookReceiver
from tests.support.workers import running_workers


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: each socket is held until all are picked, so the system
    cannot hand the same port out twice (as one free_port() after another may)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


@pytest.fixture(scope="session")
def database_server() -> Iterator[PostgresServer]:
    with dbsupport.server() as pg:
        yield pg


@pytest.fixture(scope="session")
def application_databases(database_server: PostgresServer) -> Iterator[None]:
    """Drops the applications' databases the tests created, so runs leave the server clean."""
    yield
    for name in CREATED_DATABASES:
        database_server.drop_database(name)


@pytest.fixture(scope="session")
def database_url(database_server: PostgresServer, application_databases: None) -> Iterator[str]:
    with dbsupport.fresh_database(database_server, f"cairn_test_{uuid.uuid4().hex[:10]}") as url:
        yield url


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=cli_path(),
        port=free_port(),
        search_attributes=SEARCH_ATTRIBUTE_KEYS,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def pve() -> Iterator[FakePVE]:
    with FakePVE() as fake:
        yield fake


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def settings(
    database_url: str,
    temporal_client: Client,
    pve: FakePVE,
    webhook: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """The API and the worker of the tests: real database and Temporal, Proxmox is the fake."""
    mount_root = tmp_path_factory.mktemp("storages")
    return Settings(
        database_url=database_url,
        temporal_address=temporal_client.service_client.config.target_host,
        temporal_namespace=temporal_client.namespace,
        master_key=generate_master_key(),
        storage_mount_root=mount_root,
        volume_roots=[tmp_path_factory.getbasetemp()],
        proxmox_host=pve.host,
        proxmox_port=pve.port,
        proxmox_token_id=pve.token_id,
        proxmox_token_secret=pve.token_secret,
        proxmox_node=pve.node,
        proxmox_verify=pve.ca_path,
        # the fake is "the node": its dir storages are folders the worker sees directly
        proxmox_dir_root=str(mount_root),
        worker_shutdown_grace_seconds=2,
        failure_webhook_url=webhook.url,
    )


@pytest.fixture(scope="session")
async def worker(settings: Settings, temporal_client: Client) -> AsyncIterator[None]:
    """The project's real workers, in-process, for the whole session."""
    async with running_workers(settings, temporal_client):
        yield


@pytest.fixture(scope="session")
async def api(settings: Settings) -> AsyncIterator[ApiClient]:
    async with running_app(settings) as client:
        yield client


@pytest.fixture(scope="session")
async def world(api: ApiClient) -> World:
    return await build_world(api)


@pytest.fixture
def unchanged(settings: Settings) -> Iterator[None]:
    """Asserts the test leaves every table exactly as it found it."""
    before = dbsupport.snapshot(settings.database_url)
    yield
    after = dbsupport.snapshot(settings.database_url)
    assert after == before
