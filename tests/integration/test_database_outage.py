"""The metadata database going away: 503 ``database-unavailable`` while it is gone, then normal.

The API under test gets a database of its own on the shared server, so blocking it
(``ALLOW_CONNECTIONS false`` + ``pg_terminate_backend``) disturbs no other test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest
import sqlalchemy.exc
from psycopg import sql

from core.crypto import generate_master_key
from core.settings import Settings
from db.availability import database_unavailable
from devstack.postgres import PostgresServer
from tests.conftest import free_port
from tests.support.api import ApiClient, admin_token, expect, running_app
from tests.support.database import fresh_database

pytestmark = pytest.mark.integration


def _admin(server: PostgresServer) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(server.url("postgres", driver="postgresql"), autocommit=True)


def _terminate(server: PostgresServer, name: str) -> int:
    """Kills every session on database ``name`` (what a restart does to a pool)."""
    with _admin(server) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def _allow_connections(server: PostgresServer, name: str, allowed: bool) -> None:
    with _admin(server) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(name), sql.Literal(allowed)
            )
        )


class Outage:
    """The database of one API, which the test can take away and give back."""

    def __init__(self, server: PostgresServer, name: str) -> None:
        self.server, self.name = server, name

    def begin(self) -> None:
        _allow_connections(self.server, self.name, False)
        _terminate(self.server, self.name)

    def end(self) -> None:
        _allow_connections(self.server, self.name, True)


@pytest.fixture
def outage_database(database_server: PostgresServer) -> Iterator[tuple[str, Outage]]:
    name = f"cairn_test_outage_{uuid.uuid4().hex[:10]}"
    outage = Outage(database_server, name)
    with fresh_database(database_server, name) as url:
        try:
            yield url, outage
        finally:
            outage.end()  # so the drop below (and any later look) finds it as usual


def _settings(database_url: str) -> Settings:
    """An API that needs no Temporal for the routes used here (nothing listens there)."""
    return Settings(
        database_url=database_url,
        temporal_address=f"127.0.0.1:{free_port()}",
        master_key=generate_master_key(),
    )


@pytest.fixture
async def client(outage_database: tuple[str, Outage]) -> AsyncIterator[ApiClient]:
    async with running_app(_settings(outage_database[0])) as api:
        yield api


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    problem = response.json()
    assert problem["type"] == "/problems/database-unavailable"
    assert "cannot be reached" in problem["detail"] and "nothing was changed" in problem["detail"]


async def test_reads_and_writes_answer_503_during_an_outage_and_work_after(
    client: ApiClient, outage_database: tuple[str, Outage]
) -> None:
    _, outage = outage_database
    auth = {"Authorization": f"Bearer {await admin_token(client)}"}
    await expect(await client.get("/api/v1/admin/users", headers=auth), 200)
    email = f"during-outage-{uuid.uuid4().hex[:8]}@example.com"

    outage.begin()
    try:
        _assert_unavailable(await client.get("/api/v1/admin/users", headers=auth))
        _assert_unavailable(
            await client.post(
                "/api/v1/admin/users", json={"email": email, "name": "x"}, headers=auth
            )
        )
    finally:
        outage.end()

    users = await expect(await client.get("/api/v1/admin/users", headers=auth), 200)
    assert email not in {user["email"] for user in users["items"]}  # nothing was changed
    await expect(
        await client.post("/api/v1/admin/users", json={"email": email, "name": "x"}, headers=auth),
        201,
    )


async def test_killed_connections_cost_no_request(
    client: ApiClient, outage_database: tuple[str, Outage]
) -> None:
    """Every pooled connection dies (a database restart); the pool's ping replaces them."""
    outage = outage_database[1]
    auth = {"Authorization": f"Bearer {await admin_token(client)}"}
    parallel = await asyncio.gather(
        *(client.get("/api/v1/admin/users", headers=auth) for _ in range(5))
    )
    assert [r.status_code for r in parallel] == [200] * 5
    assert _terminate(outage.server, outage.name) >= 1
    for _ in range(8):
        await expect(await client.get("/api/v1/admin/users", headers=auth), 200)


async def test_unreachable_server_answers_503_promptly() -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/cairn"
    async with running_app(_settings(closed)) as api:
        response = await api.get("/api/v1/admin/users", headers={"Authorization": "Bearer cairn_x"})
    _assert_unavailable(response)


async def test_a_broken_statement_stays_500(
    client: ApiClient, outage_database: tuple[str, Outage]
) -> None:
    """The database answers but the statement fails: a bug, not an outage."""
    url = outage_database[0]
    auth = {"Authorization": f"Bearer {await admin_token(client)}"}
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        conn.execute("ALTER TABLE workspaces RENAME TO workspaces_elsewhere")
    problem = await expect(await client.get("/api/v1/admin/workspaces", headers=auth), 500)
    assert problem["type"] == "/problems/internal-error"


def _wrapped(orig: Exception, *, invalidated: bool = False) -> sqlalchemy.exc.DBAPIError:
    wrapped = sqlalchemy.exc.DBAPIError.instance(
        "SELECT 1", None, orig, psycopg.Error, connection_invalidated=invalidated
    )
    assert isinstance(wrapped, sqlalchemy.exc.DBAPIError)
    return wrapped


@pytest.mark.parametrize(
    ("exc", "unavailable"),
    [
        (_wrapped(psycopg.OperationalError("connection refused")), True),
        (_wrapped(psycopg.errors.AdminShutdown("terminating connection")), True),
        (_wrapped(psycopg.errors.CannotConnectNow("the database system is starting up")), True),
        (_wrapped(psycopg.errors.TooManyConnections("too many clients")), True),
        (_wrapped(psycopg.InterfaceError("the connection is closed")), True),
        (_wrapped(psycopg.errors.UndefinedTable("x"), invalidated=True), True),
        (sqlalchemy.exc.TimeoutError("QueuePool limit reached"), True),
        (psycopg.OperationalError("connection timeout expired"), True),
        (_wrapped(psycopg.errors.UndefinedTable("relation x does not exist")), False),
        (_wrapped(psycopg.errors.UniqueViolation("duplicate key")), False),
        (_wrapped(psycopg.errors.QueryCanceled("statement timeout")), False),
        (_wrapped(psycopg.InterfaceError("cursor already closed")), False),
        (ValueError("a bug"), False),
        (ZeroDivisionError(), False),
    ],
)
def test_what_counts_as_unavailable(exc: Exception, unavailable: bool) -> None:
    assert database_unavailable(exc) is unavailable


def test_a_cause_in_the_chain_counts() -> None:
    try:
        try:
            raise _wrapped(psycopg.OperationalError("server closed the connection"))
        except sqlalchemy.exc.DBAPIError as inner:
            raise RuntimeError("while loading the user") from inner
    except RuntimeError as outer:
        assert database_unavailable(outer)
