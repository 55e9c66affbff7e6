"""An application with PostgreSQL, MariaDB, Redis and a volume, through the API (issue 24):
a backup holds every database, a full restore brings all four back, a selective restore of
one named database touches nothing else, and a registration the engines refuse stores
nothing and shows no password."""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import shutil
import socket
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from temporalio.client import Client

from adapters.engines import mariadb, redis
from adapters.engines.mariadb import MariaTarget
from adapters.engines.redis import RedisTarget
from adapters.local_platform import LocalPlatform
from adapters.platform import NamedDatabases
from adapters.restic import Restic
from api.ui.pages.shared import templates
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.conftest import free_port
from tests.integration.test_drills import run_drill
from tests.integration.test_restores import run_restore
from tests.support import histories
from tests.support.api import ApiClient, World, expect, new_workspace
from tests.support.backups import App, make_app, run_backup, table_hashes, tree_hashes
from tests.support.cli import cairn
from tests.support.database import libpq_url
from tests.support.engine_servers import mariadb_port, redis_server
from tests.support.served import served  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

MARIA_PASSWORD = "maria 'pw\\\"s3cret"  # quotes and a backslash, as an option file carries them
REDIS_PASSWORD = "redis-pw-s3cret:@/?"  # characters a URL must quote


@pytest.fixture(scope="module")
def maria() -> Iterator[tuple[MariaTarget, str]]:
    """Root on the machine's MariaDB, and a user of this module's own databases (a prefix of
    this process alone, so a parallel test process never drops them)."""
    prefix = f"cairn_ad{secrets.token_hex(3)}_"
    with mariadb_port() as port:
        root = MariaTarget("127.0.0.1", port, "root", "mysql")
        user = prefix.rstrip("_")
        secret = MARIA_PASSWORD.replace("\\", "\\\\").replace("'", "''")
        pattern = prefix.replace("_", "\\_")
        mariadb.query(root, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{secret}'")
        mariadb.query(root, f"GRANT ALL ON `{pattern}%`.* TO '{user}'@'%'")
        try:
            yield root, prefix
        finally:
            for (name,) in mariadb.query(root, f"SHOW DATABASES LIKE '{pattern}%'"):
                mariadb.query(root, f"DROP DATABASE {mariadb.quote_name(name)}")
            mariadb.query(root, f"DROP USER '{user}'@'%'")


@pytest.fixture
def shop(maria: tuple[MariaTarget, str]) -> MariaTarget:
    """A MariaDB database of this test, filled (dropped with the module's)."""
    root, prefix = maria
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    mariadb.query(root, f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    target = MariaTarget("127.0.0.1", root.port, prefix.rstrip("_"), name, MARIA_PASSWORD)
    mariadb.query(
        target,
        "CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(200), data BLOB);"
        " CREATE TABLE `odd ``name``` (k VARCHAR(20) PRIMARY KEY, v TEXT);"
        " INSERT INTO orders SELECT seq, CONCAT('it''s ),( ', seq), RANDOM_BYTES(32)"
        "  FROM seq_1_to_500;"
        " INSERT INTO `odd ``name``` VALUES ('ü', 'naïve'), ('x', NULL);",
        database=name,
    )
    return target


@pytest.fixture
def cache_server() -> Iterator[RedisTarget]:
    """A Redis server of this test: a restore replaces a server's whole dataset and makes it
    a replica for a moment, which the machine's shared server must never go through; and
    two applications may not name one server."""
    options = ("--repl-diskless-sync-delay", "0", "--enable-debug-command", "yes")
    with redis_server("--requirepass", REDIS_PASSWORD, *options) as port:
        yield RedisTarget("127.0.0.1", port, password=REDIS_PASSWORD)


@pytest.fixture
def cache(cache_server: RedisTarget) -> Iterator[RedisTarget]:
    """The module's Redis with every type, a time to live and a second logical database;
    flushed afterwards, also on failure."""
    redis.command(cache_server, "FLUSHALL")
    for args in (
        ("SET", "plain", "value\nwith a newline"),
        ("SET", "session:1", "soon", "EX", "3600"),
        ("HSET", "user:1", "name", "Ada", "lang", "ü"),
        ("RPUSH", "queue", "a", "b", "c"),
        ("SADD", "tags", "x", "y"),
        ("ZADD", "scores", "1.5", "low", "99", "high"),
        ("XADD", "events", "*", "kind", "signup"),
        ("-n", "3", "SET", "in-db-3", "yes"),
    ):
        redis.command(cache_server, *args)
    try:
        yield cache_server
    finally:
        redis.command(cache_server, "FLUSHALL")


def maria_url(target: MariaTarget, password: str | None = MARIA_PASSWORD) -> str:
    auth = f"{target.user}:{quote(password, safe='')}" if password else target.user
    return f"mysql://{auth}@127.0.0.1:{target.port}/{target.dbname}"


def redis_url(target: RedisTarget, password: str | None = REDIS_PASSWORD) -> str:
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}127.0.0.1:{target.port}/0"


def maria_state(target: MariaTarget) -> dict[str, str]:
    """Rows and a checksum of every table."""
    out = {}
    for table, rows in mariadb.table_row_counts(target).items():
        name = f"{mariadb.quote_name(target.dbname)}.{mariadb.quote_name(table)}"
        out[table] = f"{rows}:{mariadb.query(target, f'CHECKSUM TABLE {name}')[0][1]}"
    return out


def redis_state(target: RedisTarget) -> tuple[str, dict[str, int], dict[str, str]]:
    """The dataset's digest, keys per logical database, and each key's type (db 0)."""
    keys = redis.command(target, "KEYS", "*").splitlines()
    types = {key: redis.command(target, "TYPE", key) for key in keys}
    return redis.command(target, "DEBUG", "DIGEST"), redis.key_counts(target), types


def damage_all(app: App, shop: MariaTarget, cache: RedisTarget) -> None:
    with psycopg.connect(app.db_url) as conn:
        conn.execute("DROP TABLE items")
    changes = "DROP TABLE orders; INSERT INTO `odd ``name``` VALUES ('new', 'row')"
    mariadb.query(shop, changes, database=shop.dbname)
    redis.command(cache, "FLUSHALL")
    redis.command(cache, "SET", "intruder", "1")
    uploads = app.volumes["uploads"]
    (uploads / "file-3.txt").unlink()
    (uploads / "added.txt").write_text("new file")


@pytest.fixture
async def backed_up(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    shop: MariaTarget,
    cache: RedisTarget,
) -> tuple[App, dict[str, Any]]:
    app = await make_app(
        api,
        world,
        database_server,
        tmp_path,
        databases={"shop": maria_url(shop), "cache": redis_url(cache)},
    )
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup["error_message"]
    return app, backup


def everything(app: App, shop: MariaTarget, cache: RedisTarget) -> dict[str, Any]:
    return {
        "postgresql": table_hashes(app.db_url),
        "mariadb": maria_state(shop),
        "redis": redis_state(cache),
        "volumes": {name: tree_hashes(path) for name, path in app.volumes.items()},
    }


async def test_registration_keeps_no_password_and_the_backup_holds_every_database(
    api: ApiClient,
    world: World,
    settings: Settings,
    temporal_client: Client,
    backed_up: tuple[App, dict[str, Any]],
    shop: MariaTarget,
    cache: RedisTarget,
) -> None:
    app, backup = backed_up
    shown = await api.get(f"/api/v1/applications/{app.id}", headers=world.auth("owner"))
    assert shown.json()["platform"]["databases"] == {
        "shop": {"engine": "mariadb", "url": maria_url(shop, None), "password_set": True},
        "cache": {"engine": "redis", "url": redis_url(cache, None), "password_set": True},
    }
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        row = conn.execute(
            "SELECT platform_settings::text, platform_secrets FROM applications WHERE id = %s",
            (app.id,),
        ).fetchone()
    assert row is not None
    for text in (shown.text, row[0], row[1], str(backup)):
        assert "s3cret" not in text
    # typed as the capability: mypy checks that LocalPlatform implements it
    named: NamedDatabases = LocalPlatform({}, {}, cairn=settings, restic=Restic())
    assert named.database_names() == []

    parts = {p["part"] for p in backup["metadata"]["parts"]}
    assert {"database", "database:shop", "database:cache", "volume:uploads"} <= parts
    described = backup["metadata"]["databases"]
    assert described["shop"]["engine"] == "mariadb"
    assert described["shop"]["figures"] == mariadb.table_row_counts(shop)
    assert described["shop"]["figures"]["orders"] == 500
    assert described["cache"]["figures"] == redis.key_counts(cache) == {"db0": 7, "db3": 1}
    steps = [s["step"] for s in backup["timeline"]["steps"]]
    assert steps.count("dump_named_database") == 2
    await histories.record(temporal_client, backup["workflow_id"], "backup-named-databases")


async def test_full_restore_brings_all_four_back(
    api: ApiClient,
    world: World,
    temporal_client: Client,
    backed_up: tuple[App, dict[str, Any]],
    shop: MariaTarget,
    cache: RedisTarget,
) -> None:
    app, backup = backed_up
    before = everything(app, shop, cache)
    ttl_before = int(redis.command(cache, "TTL", "session:1"))
    damage_all(app, shop, cache)
    damaged = everything(app, shop, cache)
    assert all(damaged[kind] != before[kind] for kind in before)

    restore = await run_restore(api, world, app, backup["id"], {"restore_type": "full"})
    assert restore["status"] == "succeeded", restore["error_message"]
    assert everything(app, shop, cache) == before
    assert 0 < int(redis.command(cache, "TTL", "session:1")) <= ttl_before
    assert "role:master" in redis.command(cache, "INFO", "replication")
    assert sorted(restore["databases"]) == ["cache", "shop"]
    steps = [s["step"] for s in restore["timeline"]["steps"]]
    assert steps.count("restore_named_database") == 2
    await histories.record(temporal_client, restore["workflow_id"], "restore-named-databases")
    staging = mariadb.query(
        MariaTarget("127.0.0.1", shop.port, "root", "mysql"),
        f"SHOW DATABASES LIKE '{shop.dbname.replace('_', chr(92) + '_')}\\_cairn\\_%'",
    )
    assert staging == []


async def test_selective_restore_of_the_mariadb_touches_nothing_else(
    api: ApiClient,
    world: World,
    backed_up: tuple[App, dict[str, Any]],
    shop: MariaTarget,
    cache: RedisTarget,
) -> None:
    app, backup = backed_up
    before = everything(app, shop, cache)
    damage_all(app, shop, cache)
    damaged = everything(app, shop, cache)

    body = {"restore_type": "selective", "databases": ["shop"]}
    restore = await run_restore(api, world, app, backup["id"], body)
    assert restore["status"] == "succeeded", restore["error_message"]
    after = everything(app, shop, cache)
    assert after["mariadb"] == before["mariadb"]
    assert {k: v for k, v in after.items() if k != "mariadb"} == {
        k: v for k, v in damaged.items() if k != "mariadb"
    }
    assert restore["databases"] == ["shop"] and restore["database"] is False
    assert restore["volumes"] == []
    steps = [s["step"] for s in restore["timeline"]["steps"]]
    assert "restore_database" not in steps and "restore_volume" not in steps

    unknown = {"restore_type": "selective", "databases": ["nope"]}
    refused = await api.post(
        f"/api/v1/applications/{app.id}/backups/{backup['id']}/restore",
        json=unknown,
        headers=world.auth("owner"),
    )
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["body.databases"]


@pytest.mark.parametrize(
    "case",
    [
        "unknown-scheme",
        "no-user",
        "no-database",
        "system-database",
        "bad-port",
        "bad-name",
        "unreachable",
        "wrong-password",
        "missing-database",
        "redis-wrong-password",
    ],
)
async def test_refused_registrations_name_the_field_and_store_nothing(
    api: ApiClient,
    world: World,
    settings: Settings,
    tmp_path: Path,
    shop: MariaTarget,
    cache_server: RedisTarget,
    case: str,
) -> None:
    good = maria_url(shop)
    name, url = {
        "unknown-scheme": ("shop", "mongodb://u:s3cret@127.0.0.1/x"),
        "no-user": ("shop", f"mysql://127.0.0.1:{shop.port}/{shop.dbname}"),
        "no-database": ("shop", f"mysql://{shop.user}:s3cret@127.0.0.1:{shop.port}/"),
        "system-database": ("shop", f"mysql://root:s3cret@127.0.0.1:{shop.port}/mysql"),
        "bad-port": ("shop", f"mysql://{shop.user}:s3cret@127.0.0.1:99999/{shop.dbname}"),
        "bad-name": ("Shop!", good),
        "unreachable": ("shop", f"mysql://{shop.user}:s3cret@127.0.0.1:1/{shop.dbname}"),
        "wrong-password": ("shop", maria_url(shop, "not-the-s3cret")),
        "missing-database": ("shop", good.replace(shop.dbname, f"{shop.dbname}_missing")),
        "redis-wrong-password": ("cache", redis_url(cache_server, "not-the-s3cret")),
    }[case]
    ws = await new_workspace(api, world, members=("owner",))
    path = f"/api/v1/workspaces/{ws}/applications"
    folder = tmp_path / "uploads"
    folder.mkdir()
    body = {
        "name": f"app-{uuid.uuid4().hex[:6]}",
        "owner_id": world.users["owner"],
        "platform": {
            "kind": "local",
            "volumes": {"uploads": str(folder)},
            "databases": {name: url},
        },
    }
    refused = await api.post(path, json=body, headers=world.auth("platform_admin"))
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    field = f"body.platform.databases.{name}" + (".[key]" if case == "bad-name" else "")
    assert [e["field"] for e in problem["errors"]] == [field]
    assert "s3cret" not in refused.text
    listed = await expect(await api.get(path, headers=world.auth("platform_admin")), 200)
    assert listed["items"] == []
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM applications WHERE workspace_id = %s", (ws,)
        ).fetchone()
    assert stored == (0,)
    shutil.rmtree(folder)


async def test_cli_registers_named_databases_and_restores_one(
    api: ApiClient,
    world: World,
    served: str,  # noqa: F811
    maria: tuple[MariaTarget, str],
    backed_up: tuple[App, dict[str, Any]],
    shop: MariaTarget,
    cache: RedisTarget,
) -> None:
    admin, owner = world.tokens["platform_admin"], world.tokens["owner"]
    ws = await new_workspace(api, world, members=("owner",))
    create = ["admin", "apps", "create", ws, "--name", "cli-app", "--owner", world.users["owner"]]
    taken = f"shop={maria_url(shop)}"
    code, out, err = await cairn(served, admin, {}, *create, "--database", taken)
    assert code == 1 and "another application's database" in err  # the backed-up app's
    orders = shop.named(f"{shop.dbname}_cli")
    mariadb.query(maria[0], f"CREATE DATABASE {orders.dbname}")
    code, out, err = await cairn(
        served, admin, {}, *create, "--database", f"orders={maria_url(orders)}"
    )
    assert code == 0, err
    assert "s3cret" not in out + err
    assert json.loads(out)["platform"]["databases"]["orders"]["url"] == maria_url(orders, None)

    app, backup = backed_up
    before = maria_state(shop)
    damage_all(app, shop, cache)
    damaged_cache = redis_state(cache)
    shown = await api.get(f"/api/v1/applications/{app.id}", headers=world.auth("owner"))
    name = (await expect(shown, 200))["name"]
    restore = ["restores", "create", "--app", app.id, "--backup", backup["id"]]
    code, out, err = await cairn(
        served, owner, {}, *restore, "--named-database", "shop", "--confirm", name, "--wait", "-q"
    )
    assert code == 0, err
    assert maria_state(shop) == before and redis_state(cache) == damaged_cache


async def test_each_named_database_downloads_as_its_dump(
    api: ApiClient, world: World, backed_up: tuple[App, dict[str, Any]]
) -> None:
    app, backup = backed_up
    links = f"{app.backups}/{backup['id']}/downloads"
    found = {}
    for part in ("database:shop", "database:cache"):
        link = await expect(
            await api.post(links, json={"part": part}, headers=world.auth("owner")), 201
        )
        response = await api.get(str(link["url"]).removeprefix("http://cairn.test"))
        assert response.status_code == 200, response.text
        with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
            files = [(m.name, archive.extractfile(m)) for m in archive.getmembers() if m.isfile()]
            found[part] = {name: data.read() for name, data in files if data is not None}
    assert b"CREATE TABLE `orders`" in found["database:shop"]["database.sql"]
    assert found["database:cache"]["dump.rdb"].startswith(b"REDIS")


async def test_one_database_is_never_registered_twice_whatever_its_address(
    api: ApiClient,
    world: World,
    maria: tuple[MariaTarget, str],
    shop: MariaTarget,
    cache_server: RedisTarget,
) -> None:
    async def register(databases: dict[str, str]) -> Any:
        ws = await new_workspace(api, world, members=("owner",))
        body = {
            "name": f"app-{uuid.uuid4().hex[:6]}",
            "owner_id": world.users["owner"],
            "platform": {"kind": "local", "databases": databases},
        }
        path = f"/api/v1/workspaces/{ws}/applications"
        return await api.post(path, json=body, headers=world.auth("platform_admin"))

    first = {"shop": maria_url(shop), "cache": redis_url(cache_server)}
    await expect(await register(first), 201)
    elsewhere = {
        "shop": maria_url(shop).replace("127.0.0.1", "localhost"),
        "cache": redis_url(cache_server).replace("127.0.0.1", "localhost"),
    }
    root, _ = maria
    other = shop.named(f"{shop.dbname}_2")
    mariadb.query(root, f"CREATE DATABASE {other.dbname}")
    twice = {"a": maria_url(other), "b": maria_url(other).replace("127.0.0.1", "localhost")}
    for name, databases, why in (
        ("shop", {"shop": elsewhere["shop"]}, "another application's database"),
        ("cache", {"cache": elsewhere["cache"]}, "another application's database"),
        ("b", twice, "the same data as database a"),
    ):
        refused = await register(databases)
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert error["field"] == f"body.platform.databases.{name}" and why in error["message"]


def test_the_ui_summary_names_every_database_without_a_password() -> None:
    summary = templates.env.get_template("_macros.html").module.platform_summary  # type: ignore[attr-defined]
    local = {
        "kind": "local",
        "database_url": "postgresql://shop@db/shop",
        "volumes": {"up": "/d"},
        "databases": {
            "orders": {"engine": "mariadb", "url": "mysql://shop@db/orders", "password_set": True}
        },
    }
    assert str(summary(local)) == (
        "database postgresql://shop@db/shop · mariadb database orders (mysql://shop@db/orders)"
        " · volumes up"
    )


async def test_an_application_with_named_databases_only_backs_them_up(
    api: ApiClient,
    world: World,
    settings: Settings,
    database_server: PostgresServer,
    tmp_path: Path,
    shop: MariaTarget,
    cache: RedisTarget,
) -> None:
    databases = {"shop": maria_url(shop), "cache": redis_url(cache)}
    app = await make_app(
        api, world, database_server, tmp_path, databases=databases, main_database=False
    )
    policy = await expect(await api.get(app.policy, headers=world.auth("owner")), 200)
    assert policy["include_database"] is True  # it covers the named databases
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup["error_message"]
    parts = {p["part"] for p in backup["metadata"]["parts"]}
    assert "database" not in parts and {"database:shop", "database:cache"} <= parts
    # the quota check of a first backup counts them
    stored = {"shop": {"url": maria_url(shop, None)}}
    secrets_ = {"database_passwords": {"shop": MARIA_PASSWORD}}
    platform = LocalPlatform({"databases": stored}, secrets_, cairn=settings, restic=Restic())
    assert platform.estimate_named("shop") > 0


class Forwarder:
    """A TCP address whose far end the test moves: ``127.0.0.1:port`` reaches whatever
    ``to`` names when a connection opens (a DNS name or a forwarded port re-pointed)."""

    def __init__(self, to: int) -> None:
        self.to = to
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                far = socket.create_connection(("127.0.0.1", self.to))
            except OSError:  # nothing listens there any more: as a dead address would
                near.close()
                continue
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept
        self._listener.close()


async def test_a_restore_writes_nothing_to_a_server_that_is_not_the_registered_one(
    api: ApiClient,
    world: World,
    served: str,  # noqa: F811
    database_server: PostgresServer,
    tmp_path: Path,
    shop: MariaTarget,
) -> None:
    """The identity recorded at registration is asked again right before a restore writes:
    the MariaDB address re-pointed at another server holding a database of the same name and
    user, and another Redis started on the registered one's port, are refused, non-retryably,
    and nothing is written to either; the database confirmed by a platform administrator
    (``cairn admin apps confirm-database``) is restored again."""
    forwarder = Forwarder(shop.port)
    proxied = MariaTarget("127.0.0.1", forwarder.port, shop.user, shop.dbname, MARIA_PASSWORD)
    redis_options = ("--requirepass", REDIS_PASSWORD, "--repl-diskless-sync-delay", "0")
    redis_options += ("--enable-debug-command", "yes")
    port = free_port()
    try:
        with redis_server(*redis_options, port=port):
            first = RedisTarget("127.0.0.1", port, password=REDIS_PASSWORD)
            redis.command(first, "SET", "ours", "1")
            databases = {"shop": maria_url(proxied), "cache": redis_url(first)}
            app = await make_app(
                api, world, database_server, tmp_path, databases=databases, main_database=False
            )
            backup = await run_backup(api, world, app)
            assert backup["status"] == "succeeded", backup["error_message"]
        with mariadb_port(own=True) as other_port, redis_server(*redis_options, port=port):
            # the same names, users and passwords, other servers: someone else's data
            other_root = MariaTarget("127.0.0.1", other_port, "root", "mysql")
            secret = MARIA_PASSWORD.replace("\\", "\\\\").replace("'", "''")
            mariadb.query(other_root, f"CREATE DATABASE {shop.dbname}")
            for host in ("%", "localhost"):  # a new server's anonymous user takes localhost
                user = f"'{shop.user}'@'{host}'"
                mariadb.query(other_root, f"CREATE USER {user} IDENTIFIED BY '{secret}'")
                mariadb.query(other_root, f"GRANT ALL ON *.* TO {user}")
            theirs = MariaTarget("127.0.0.1", other_port, shop.user, shop.dbname, MARIA_PASSWORD)
            mariadb.query(
                theirs, "CREATE TABLE t (x INT); INSERT INTO t VALUES (7)", database=shop.dbname
            )
            forwarder.to = other_port
            second = RedisTarget("127.0.0.1", port, password=REDIS_PASSWORD)
            redis.command(second, "SET", "theirs", "1")
            before = maria_state(theirs), mariadb.query(other_root, "SHOW DATABASES")
            ours_before = maria_state(shop)
            their_dataset = redis_state(second)

            for name, where in (("shop", f"database {shop.dbname}"), ("cache", "Redis server")):
                body = {"restore_type": "selective", "databases": [name]}
                restore = await run_restore(api, world, app, backup["id"], body)
                assert restore["status"] == "failed"
                assert "is not the database registered" in restore["error_message"]
                assert where in restore["error_message"]
                steps = [
                    s for s in restore["timeline"]["steps"] if s["step"] == "restore_named_database"
                ]
                assert [s["attempts"] for s in steps] == [1]  # not retried
            assert (maria_state(theirs), mariadb.query(other_root, "SHOW DATABASES")) == before
            assert maria_state(shop) == ours_before  # the registered one was not reached
            assert redis_state(second) == their_dataset
            assert "role:master" in redis.command(second, "INFO", "replication")

            # a platform administrator's word that the server on the port is the application's
            confirm = f"/api/v1/applications/{app.id}/databases/cache/confirm"
            refused = await api.post(confirm, headers=world.auth("owner"))
            assert refused.status_code == 403
            admin = world.tokens["platform_admin"]
            code, out, err = await cairn(
                served, admin, {}, "admin", "apps", "confirm-database", app.id, "cache"
            )
            assert code == 0, err
            assert json.loads(out) == {"database": "cache", "identity_changed": True}
            body = {"restore_type": "selective", "databases": ["cache"]}
            restore = await run_restore(api, world, app, backup["id"], body)
            assert restore["status"] == "succeeded", restore["error_message"]
            assert redis.command(second, "GET", "ours") == "1"
            assert redis.command(second, "EXISTS", "theirs") == "0"
            missing = await api.post(
                f"/api/v1/applications/{app.id}/databases/nope/confirm",
                headers=world.auth("platform_admin"),
            )
            assert missing.status_code == 404
    finally:
        forwarder.close()


async def test_a_drill_restores_every_named_database_into_scratch_and_removes_it(
    api: ApiClient,
    world: World,
    temporal_client: Client,
    backed_up: tuple[App, dict[str, Any]],
    shop: MariaTarget,
    cache: RedisTarget,
) -> None:
    """A drill loads each named database into scratch (a MariaDB database beside the live
    one, a Redis server on the worker), measures it against the manifest, and removes the
    scratch; the live databases stay as they were, damaged ones included."""
    app, backup = backed_up
    mariadb.query(shop, "DELETE FROM orders WHERE id > 10", database=shop.dbname)
    redis.command(cache, "SET", "after-the-backup", "1")
    before = everything(app, shop, cache)
    drill = await run_drill(api, world, app)
    assert drill["status"] == "succeeded", drill["error_message"]
    steps = [s["step"] for s in drill["timeline"]["steps"]]
    assert steps.count("drill_named_database") == 2
    assert drill["notes"]["database:shop"] == (
        "as in the backup: row counts of 2 tables, scratch copy removed"
    )
    assert drill["notes"]["database:cache"] == (
        "as in the backup: key counts of 2 logical databases, scratch copy removed"
    )
    parts, volumes = backup["metadata"]["parts"], backup["metadata"]["volumes"].values()
    dumps = sum(p["bytes_processed"] for p in parts if p["part"].startswith("database"))
    assert drill["bytes_restored"] == dumps + sum(v["bytes"] for v in volumes)
    assert everything(app, shop, cache) == before
    root = MariaTarget("127.0.0.1", shop.port, "root", "mysql")
    pattern = mariadb.drill_name(shop.dbname, drill["id"]).replace("_", "\\_")
    assert mariadb.query(root, f"SHOW DATABASES LIKE '{pattern}'") == []
    await histories.record(temporal_client, drill["workflow_id"], "drill-named-databases")


async def test_a_drill_makes_no_scratch_on_a_server_that_is_not_the_registered_one(
    api: ApiClient,
    world: World,
    settings: Settings,
    backed_up: tuple[App, dict[str, Any]],
    maria: tuple[MariaTarget, str],
    shop: MariaTarget,
) -> None:
    """The registered MariaDB's identity stands for another database (as if its address now
    reached another one): the drill fails at that database and makes no scratch database."""
    app, _ = backed_up
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE applications SET platform_settings = jsonb_set(platform_settings,"
            " '{databases,shop,identity}', to_jsonb('another server'::text)) WHERE id = %s",
            (app.id,),
        )
    drill = await run_drill(api, world, app)
    assert drill["status"] == "failed"
    assert "is not the database registered" in drill["error_message"]
    root, prefix = maria
    found = mariadb.query(root, f"SHOW DATABASES LIKE '{prefix.replace('_', chr(92) + '_')}%'")
    assert not [name for (name,) in found if "_cairn_drill_" in name]
    assert "removed" in drill["cleanup"]
