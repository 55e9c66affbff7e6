"""A target is judged by which server and database it is, never by its spelling (issue 21).

cairn's metadata database lives on the shared test server. Each way libpq reaches that server
(``127.1``, ``2130706433``, ``0x7f000001``, ``0``, ``[::ffff:127.0.0.1]``, ``::1``, a second
name in ``/etc/hosts``, the socket directory, a symlink to it) is tried as an application's
database, as a restore target and against the worker's own writes with the API bypassed; the
metadata database's catalog is hashed before and after. A different database on the same
server stays allowed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client

from adapters import pg_databases, pg_dump
from adapters.errors import AdapterError
from adapters.local_platform import LocalPlatform
from adapters.pg_identity import ProtectedDatabase, protected
from adapters.platform import OtherDatabase
from adapters.restic import Repository, Restic
from core.boundaries import metadata_database
from core.database_url import database_url
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.support.api import ApiClient, World, expect, wait_for
from tests.support.backups import App, finished, make_app, run_backup, table_hashes
from tests.support.bypass import register_anew, restore_bypassing_the_api
from tests.support.database import libpq_url

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

HOSTS = Path("/etc/hosts")


def catalog_hash(settings: Settings) -> str:
    """The metadata database's identity and every relation's file: a rename, drop, rewrite
    or replacement of any table changes it."""
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT (SELECT oid FROM pg_database WHERE datname = current_database()),"
            " c.relname, c.relkind, c.relfilenode"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' ORDER BY c.relname"
        ).fetchall()
    assert any(row[1] == "backup_restores" for row in rows)
    return hashlib.sha256(repr(rows).encode()).hexdigest()


@pytest.fixture(scope="module")
def hosts_alias(database_server: PostgresServer) -> Iterator[str]:
    """A second name of this machine, as an ``/etc/hosts`` line gives it (removed after)."""
    alias = f"cairn-alias-{uuid.uuid4().hex[:8]}"
    line = f"127.0.0.1 {alias}\n"
    original = HOSTS.read_text()
    HOSTS.write_text(original + ("" if original.endswith("\n") else "\n") + line)
    try:
        yield alias
    finally:
        HOSTS.write_text(HOSTS.read_text().replace(line, ""))


def _socket_folder(database_server: PostgresServer) -> str:
    if database_server.socket_dir:
        return database_server.socket_dir
    for folder in ("/var/run/postgresql", "/run/postgresql", "/tmp"):
        if Path(folder, f".s.PGSQL.{database_server.port}").exists():
            return folder
    raise AssertionError("the test server has neither a TCP port nor a known socket")


@dataclass(frozen=True)
class Spelling:
    name: str
    host: str


@pytest.fixture(scope="module")
def spellings(
    database_server: PostgresServer, hosts_alias: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Spelling]:
    """Every address of the test server that a rule by name would not take for cairn's."""
    folder = _socket_folder(database_server)
    link = tmp_path_factory.mktemp("socket-link") / "pg"
    link.symlink_to(folder)
    hosts = {"socket": folder, "socket-symlink": str(link)}
    if not database_server.socket_dir:
        hosts |= {
            "127.1": "127.1",
            "decimal": "2130706433",
            "hex": "0x7f000001",
            "zero": "0",
            "v4-mapped": "::ffff:127.0.0.1",
            "ipv6-loopback": "::1",
            "hosts-alias": hosts_alias,
        }
    return {name: Spelling(name, host) for name, host in hosts.items()}


SPELLINGS = [
    "127.1",
    "decimal",
    "hex",
    "zero",
    "v4-mapped",
    "ipv6-loopback",
    "hosts-alias",
    "socket",
    "socket-symlink",
]


def spelled(spellings: dict[str, Spelling], name: str) -> Spelling:
    if name not in spellings:  # an embedded server listens on its socket only
        pytest.skip(f"the embedded test server has no TCP address to spell as {name}")
    return spellings[name]


def database_at(spelling: Spelling, port: int, dbname: str) -> dict[str, Any]:
    return {"host": spelling.host, "port": port, "user": "postgres", "dbname": dbname}


def reaches(database: dict[str, Any]) -> bool:
    try:
        with psycopg.connect(
            pg_dump.conninfo(pg_dump.PgTarget(**database, password=None)), connect_timeout=3
        ):
            return True
    except psycopg.OperationalError:
        return False


@pytest.mark.parametrize("name", SPELLINGS)
async def test_an_application_database_that_is_cairns_own_under_any_address_is_refused(
    api: ApiClient,
    world: World,
    settings: Settings,
    database_server: PostgresServer,
    spellings: dict[str, Spelling],
    unchanged: None,
    name: str,
) -> None:
    before = catalog_hash(settings)
    meta = metadata_database(settings)["dbname"]
    database = database_at(spelled(spellings, name), database_server.port, meta)
    response = await api.post(
        f"/api/v1/workspaces/{world.workspaces['a']}/applications",
        json={
            "name": f"alias-{uuid.uuid4().hex[:6]}",
            "owner_id": world.users["owner"],
            "platform": {"kind": "local", "database_url": database_url(database, "pw")},
        },
        headers=world.auth("platform_admin"),
    )
    if response.status_code == 201:  # accepted only where the address reaches no server
        assert not reaches(database), f"{name}: {database['host']} reaches cairn's server"
        await api.delete(
            f"/api/v1/applications/{response.json()['id']}", headers=world.auth("platform_admin")
        )
        pytest.skip(f"{database['host']} does not reach the test server here (refused by libpq)")
    problem = await expect(response, 422)
    assert "metadata database" in problem["detail"], problem
    assert [e["field"] for e in problem["errors"]] == ["body.platform.database_url"]
    assert catalog_hash(settings) == before


@pytest.mark.parametrize("name", SPELLINGS)
def test_the_worker_refuses_every_write_and_read_of_cairns_database(
    settings: Settings,
    database_server: PostgresServer,
    spellings: dict[str, Spelling],
    tmp_path: Path,
    name: str,
) -> None:
    """Where the data moves (pg_databases, pg_dump), with no API in front: restore over it,
    restore into it as another target, a drill's create and drop of it, a dump of it."""
    before = catalog_hash(settings)
    meta = metadata_database(settings)["dbname"]
    database = database_at(spelled(spellings, name), database_server.port, meta)
    if not reaches(database):
        pytest.skip(f"{database['host']} does not reach the test server here (refused by libpq)")
    restic = Restic(settings.restic_bin)
    repo = Repository(str(tmp_path / "never-opened"), "unused")
    target = pg_dump.PgTarget(**database, password=None, protect=protected(settings))
    own = LocalPlatform({"database": database}, {}, cairn=settings, restic=restic)
    elsewhere = LocalPlatform(
        {"database": {**database, "dbname": "cairn_identity_app"}},
        {},
        cairn=settings,
        restic=restic,
    )
    attempts = [
        lambda: own.restore_database(str(uuid.uuid4()), repo, "0" * 64, lambda _p: None),
        lambda: elsewhere.restore_database(
            str(uuid.uuid4()), repo, "0" * 64, lambda _p: None, into=OtherDatabase(name=meta)
        ),
        lambda: pg_databases.create(target, meta),
        lambda: pg_databases.drop(target, meta),
        lambda: pg_databases.swap(target, "cairn_restore_000000000000", "cairn_old_000000000000"),
        lambda: pg_dump.dump_into_restic(target, restic, repo, ["part=database"]),
    ]
    for attempt in attempts:  # the platform's rule by name may refuse first; identity always
        with pytest.raises(AdapterError, match="metadata database"):
            attempt()
    assert catalog_hash(settings) == before


def test_system_databases_are_refused_by_the_servers_own_catalog(
    settings: Settings, database_server: PostgresServer, spellings: dict[str, Spelling]
) -> None:
    spelling = spellings["socket-symlink"]
    for system in ("postgres", "template1"):
        target = pg_dump.PgTarget(
            **database_at(spelling, database_server.port, system),
            password=None,
            protect=protected(settings),
        )
        with pytest.raises(ProtectedDatabase, match="system database"):
            pg_databases.drop(target, system)


@pytest.fixture(scope="module")
async def alias_app(
    api: ApiClient,
    world: World,
    settings: Settings,
    database_server: PostgresServer,
    spellings: dict[str, Spelling],
    tmp_path_factory: pytest.TempPathFactory,
    worker: None,
) -> tuple[App, dict[str, Any]]:
    """An application on cairn's own server, registered under a second host name (set in
    the row: the API of an earlier release accepted it)."""
    spelling = spellings.get("hosts-alias") or spellings["socket-symlink"]
    app = await make_app(api, world, database_server, tmp_path_factory.mktemp("alias"))
    register_anew(settings, app, "host", spelling.host)
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup["error_message"]
    return app, backup


def restore_url(app: App, backup: dict[str, Any]) -> str:
    return f"/api/v1/applications/{app.id}/backups/{backup['id']}/restore"


async def test_a_workspace_admin_cannot_restore_into_cairns_database_by_name(
    api: ApiClient,
    world: World,
    settings: Settings,
    alias_app: tuple[App, dict[str, Any]],
    unchanged: None,
) -> None:
    """The attack of the issue: the application's server is cairn's under another name, and
    the target is named only by ``database_name``."""
    app, backup = alias_app
    before = catalog_hash(settings)
    body = {
        "restore_type": "selective",
        "database": True,
        "target": {"database_name": metadata_database(settings)["dbname"]},
    }
    response = await api.post(restore_url(app, backup), json=body, headers=world.auth("ws_admin"))
    problem = await expect(response, 422)
    assert "metadata database" in problem["detail"], problem
    assert problem["errors"][0]["field"] == "body.target.database_name"
    assert catalog_hash(settings) == before


async def test_another_database_on_cairns_server_is_an_allowed_target(
    api: ApiClient,
    world: World,
    settings: Settings,
    database_server: PostgresServer,
    alias_app: tuple[App, dict[str, Any]],
) -> None:
    app, backup = alias_app
    copy = f"cairn_copy_{uuid.uuid4().hex[:8]}"
    before = catalog_hash(settings)
    body = {"restore_type": "selective", "database": True, "target": {"database_name": copy}}
    try:
        accepted = await expect(
            await api.post(restore_url(app, backup), json=body, headers=world.auth("ws_admin")),
            202,
        )
        done = await wait_for(
            api,
            f"/api/v1/applications/{app.id}/restores/{accepted['id']}",
            world.auth("owner"),
            finished,
            seconds=120,
        )
        assert done["status"] == "succeeded", done["error_message"]
        with psycopg.connect(database_server.url(copy, driver="postgresql")) as conn:
            row = conn.execute("SELECT count(*) FROM items").fetchone()
        assert row is not None and row[0] == 200
    finally:
        database_server.drop_database(copy)
    assert catalog_hash(settings) == before


@pytest.mark.parametrize("how", ["target-by-name", "registration"])
async def test_with_the_api_bypassed_the_run_fails_before_any_write(
    api: ApiClient,
    world: World,
    settings: Settings,
    temporal_client: Client,
    alias_app: tuple[App, dict[str, Any]],
    how: str,
) -> None:
    app, backup = alias_app
    meta = metadata_database(settings)["dbname"]
    before = catalog_hash(settings)
    target = meta
    if how == "registration":  # the application itself registered as cairn's database
        target = ""
        register_anew(settings, app, "dbname", meta)
    try:
        done = await restore_bypassing_the_api(
            api, world, settings, temporal_client, app, backup, target
        )
    finally:
        if how == "registration":
            register_anew(settings, app, "dbname", app.dbname)
    assert done["status"] == "failed"
    assert "metadata database" in done["error_message"], done["error_message"]
    assert catalog_hash(settings) == before


@pytest.fixture(scope="module")
async def neighbour(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
    worker: None,
) -> App:
    """Another workspace's application on the same server, registered by its usual address."""
    return await make_app(api, world, database_server, tmp_path_factory.mktemp("neighbour"))


async def test_another_tenants_database_under_another_address_is_refused(
    api: ApiClient,
    world: World,
    settings: Settings,
    temporal_client: Client,
    alias_app: tuple[App, dict[str, Any]],
    neighbour: App,
) -> None:
    """Names alone say the two servers differ (an alias and 127.0.0.1); the server says they
    are one, so the neighbour's database is refused in the API and, bypassed, in the worker."""
    app, backup = alias_app
    before = table_hashes(neighbour.db_url)
    body = {
        "restore_type": "selective",
        "database": True,
        "target": {"database_name": neighbour.dbname},
    }
    response = await api.post(restore_url(app, backup), json=body, headers=world.auth("ws_admin"))
    problem = await expect(response, 422)
    assert "another application's database" in problem["detail"], problem
    done = await restore_bypassing_the_api(
        api, world, settings, temporal_client, app, backup, neighbour.dbname
    )
    assert done["status"] == "failed"
    assert "another application's database" in done["error_message"], done["error_message"]
    assert table_hashes(neighbour.db_url) == before
