"""Database dumps streamed from the real pg_dump into real restic, and restored back."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from adapters.pg_dump import (
    DumpError,
    PgTarget,
    client_major,
    dump_command,
    dump_into_restic,
    environment,
    restore_command,
    restore_from_restic,
    server_info,
    table_row_counts,
    tool,
)
from adapters.restic import Progress, Repository, Restic
from devstack.postgres import PostgresServer

pytestmark = pytest.mark.integration

EXPECTED_COUNTS = {"app.orders": 500, "public.customers": 200, 'public.odd "name"': 3}


def target(server: PostgresServer, dbname: str, *, user: str | None = None) -> PgTarget:
    return PgTarget(
        host=server.socket_dir or server.host,
        port=server.port,
        user=user or server.user,
        dbname=dbname,
        # the test server trusts local connections; a password still travels as in production
        password=f"pg-secret-{secrets.token_hex(8)}",
    )


def connect(t: PgTarget) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host=t.host, port=t.port, user=t.user, dbname=t.dbname, autocommit=True)


def fingerprint(t: PgTarget) -> dict[str, str]:
    """Per table: a hash of every row's text, in a stable order."""
    with connect(t) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        hashes = {}
        for schema, table in tables:
            query = sql.SQL(
                "SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {}.{} t"
            ).format(sql.Identifier(str(schema)), sql.Identifier(str(table)))
            row = conn.execute(query).fetchone()
            hashes[f"{schema}.{table}"] = str(row[0]) if row else ""
        return hashes


@pytest.fixture
def new_database(database_server: PostgresServer) -> Iterator[PgTarget]:
    name = f"cairn_dump_{uuid.uuid4().hex[:10]}"
    database_server.create_database(name)
    try:
        yield target(database_server, name)
    finally:
        database_server.drop_database(name)


@pytest.fixture
def databases(database_server: PostgresServer) -> Iterator[Callable[[], PgTarget]]:
    """Makes fresh databases on demand; every one is dropped at the end, also on failure."""
    created: list[str] = []

    def make() -> PgTarget:
        name = f"cairn_dump_{uuid.uuid4().hex[:10]}"
        created.append(name)
        database_server.create_database(name)
        return target(database_server, name)

    try:
        yield make
    finally:
        for name in created:
            database_server.drop_database(name)


@pytest.fixture(scope="module")
def source(database_server: PostgresServer) -> Iterator[PgTarget]:
    """An application database with a few tables, read-only for the tests."""
    name = f"cairn_dump_src_{uuid.uuid4().hex[:10]}"
    database_server.create_database(name)
    t = target(database_server, name)
    with connect(t) as conn:
        conn.execute(
            """
            CREATE TABLE customers (
                id serial PRIMARY KEY, name text NOT NULL, photo bytea, created timestamptz
            );
            INSERT INTO customers (name, photo, created)
                SELECT 'customer ' || i || ' ünïcödé', sha256(i::text::bytea),
                       '2024-01-01'::timestamptz + i * interval '1 hour'
                FROM generate_series(1, 200) i;
            CREATE SCHEMA app;
            CREATE TABLE app.orders (
                id bigserial PRIMARY KEY,
                customer_id int NOT NULL REFERENCES customers (id),
                amount numeric(12, 2) NOT NULL,
                note jsonb
            );
            INSERT INTO app.orders (customer_id, amount, note)
                SELECT 1 + i % 200, i * 1.25, jsonb_build_object('line', i, 'tab', E'a\\tb')
                FROM generate_series(1, 500) i;
            """
        )
        odd = sql.Identifier('odd "name"')
        conn.execute(sql.SQL("CREATE TABLE {} (value text)").format(odd))
        conn.execute(sql.SQL("INSERT INTO {} VALUES ('a|b'), (E'new\\nline'), (NULL)").format(odd))
    try:
        yield t
    finally:
        database_server.drop_database(name)


@pytest.fixture(scope="module")
def restic() -> Restic:
    return Restic(os.environ.get("CAIRN_RESTIC_BIN", "restic"))


@pytest.fixture(scope="module")
def repo(restic: Restic, tmp_path_factory: pytest.TempPathFactory) -> Repository:
    """One repository for the module; each test tags its snapshots with its own execution."""
    folder = tmp_path_factory.mktemp("pg-restic")
    repository = Repository(folder / "repo", f"pw-{secrets.token_hex(16)}", folder / "cache")
    restic.init(repository)
    return repository


def tags() -> list[str]:
    return [f"application={uuid.uuid4()}", f"execution={uuid.uuid4()}", "part=database"]


def test_server_info_and_row_counts(source: PgTarget) -> None:
    psql = tool("psql", None)
    major, size = server_info(source, psql)
    with connect(source) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version_num')::int / 10000,"
            " pg_database_size(current_database())"
        ).fetchone()
    assert (major, size) == row
    assert table_row_counts(source, psql) == EXPECTED_COUNTS
    assert client_major(tool("pg_dump", None)) >= major


def test_dump_into_restic_then_restore_into_an_empty_database(
    source: PgTarget, new_database: PgTarget, restic: Restic, repo: Repository
) -> None:
    snapshot_tags = tags()
    updates: list[Progress] = []
    result = dump_into_restic(source, restic, repo, snapshot_tags, progress=updates.append)
    assert updates
    assert result.files_new == 1 and result.total_bytes_processed > 0
    assert result.row_counts == EXPECTED_COUNTS
    assert (result.server_major, result.database_size_bytes) == server_info(
        source, tool("psql", None)
    )

    [snapshot] = restic.snapshots(repo, snapshot_tags)
    assert snapshot.short_id == result.snapshot_id
    assert snapshot.paths == ["/database.dump"]

    restore_from_restic(new_database, restic, repo, snapshot.id)
    psql = tool("psql", None)
    assert table_row_counts(new_database, psql) == EXPECTED_COUNTS
    assert fingerprint(new_database) == fingerprint(source)

    # --clean --if-exists: restoring over a restored database replaces it, not duplicates it
    with connect(new_database) as conn:
        conn.execute("DELETE FROM app.orders WHERE id > 10")
    restore_from_restic(new_database, restic, repo, snapshot.id)
    assert table_row_counts(new_database, psql) == EXPECTED_COUNTS
    assert fingerprint(new_database) == fingerprint(source)


def test_missing_database_fails_permanently_and_leaves_no_snapshot(
    database_server: PostgresServer, restic: Restic, repo: Repository
) -> None:
    missing = target(database_server, f"cairn_missing_{uuid.uuid4().hex[:10]}")
    snapshot_tags = tags()
    with pytest.raises(DumpError) as caught:
        dump_into_restic(missing, restic, repo, snapshot_tags)
    assert not caught.value.retryable
    assert missing.dbname in caught.value.message
    assert missing.password is not None and missing.password not in caught.value.message
    assert restic.snapshots(repo, snapshot_tags) == []


def test_pg_dump_failing_midway_forgets_its_snapshot(
    database_server: PostgresServer,
    restic: Restic,
    repo: Repository,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pg_dump writes its table of contents, then fails on a table it may not read."""
    role = f"cairn_owner_{uuid.uuid4().hex[:8]}"
    name = f"cairn_dump_rls_{uuid.uuid4().hex[:10]}"
    admin = target(database_server, "postgres")
    with connect(admin) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(role)
            )
        )
    try:
        owner = target(database_server, name, user=role)
        with connect(owner) as conn:
            conn.execute(
                """
                CREATE TABLE visible (x int);
                INSERT INTO visible SELECT generate_series(1, 1000);
                CREATE TABLE guarded (x int);
                INSERT INTO guarded VALUES (1);
                ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
                ALTER TABLE guarded FORCE ROW LEVEL SECURITY;
                CREATE POLICY only_positive ON guarded USING (x > 0);
                """
            )
        snapshot_tags = tags()
        with caplog.at_level(logging.INFO, "adapters.restic"), pytest.raises(DumpError) as caught:
            dump_into_restic(owner, restic, repo, snapshot_tags)
        assert "row-level security" in caught.value.message
        # restic had stored the part pg_dump wrote before failing
        assert any(r.getMessage().startswith("forgot 1 restic snapshot") for r in caplog.records)
        assert not caught.value.retryable
        assert restic.snapshots(repo, snapshot_tags) == []
    finally:
        database_server.drop_database(name)
        with connect(admin) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_restore_failures_change_nothing(
    source: PgTarget, new_database: PgTarget, restic: Restic, repo: Repository
) -> None:
    with connect(new_database) as conn:
        conn.execute(
            """
            CREATE TABLE keep (x int); INSERT INTO keep VALUES (42);
            CREATE TABLE customers (x int); INSERT INTO customers VALUES (7);
            CREATE VIEW depends_on_customers AS SELECT x FROM customers;
            """
        )
    before = fingerprint(new_database)

    with pytest.raises(DumpError) as unknown:
        restore_from_restic(new_database, restic, repo, "deadbeef")
    assert not unknown.value.retryable
    assert "deadbeef" in unknown.value.message

    snapshot_id = dump_into_restic(source, restic, repo, tags()).snapshot_id
    with pytest.raises(DumpError) as wrong_file:
        restore_from_restic(new_database, restic, repo, snapshot_id, filename="other.dump")
    assert not wrong_file.value.retryable

    # customers of another shape, held by a view: pg_restore fails after it began
    with pytest.raises(DumpError) as blocked:
        restore_from_restic(new_database, restic, repo, snapshot_id)
    assert blocked.value.message.startswith("pg_restore failed")
    assert not blocked.value.retryable
    assert fingerprint(new_database) == before


def test_password_only_in_the_environment(new_database: PgTarget) -> None:
    password = new_database.password
    assert password is not None
    for command in (
        dump_command(new_database, "pg_dump"),
        restore_command(new_database, "pg_restore"),
    ):
        assert not any(password in arg for arg in command)
        assert "--no-password" in command
    assert environment(new_database)["PGPASSWORD"] == password
    assert password not in repr(new_database)

    no_password = PgTarget(new_database.host, new_database.port, None, "db", None)
    os.environ["PGPASSWORD"] = "inherited-from-the-worker"
    try:
        assert "PGPASSWORD" not in environment(no_password)
    finally:
        del os.environ["PGPASSWORD"]


def test_older_pg_dump_than_server_is_refused(
    source: PgTarget, restic: Restic, repo: Repository, tmp_path: Path
) -> None:
    """The version gate, with a stand-in that claims an old version (the gate runs nothing)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "psql").symlink_to(tool("psql", None))
    old = bin_dir / "pg_dump"
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    old.chmod(old.stat().st_mode | stat.S_IXUSR)
    snapshot_tags = tags()

    with pytest.raises(DumpError) as caught:
        dump_into_restic(source, restic, repo, snapshot_tags, bin_dir=bin_dir)
    assert not caught.value.retryable
    major, _ = server_info(source, tool("psql", None))
    assert "pg_dump 9 " in caught.value.message and f"PostgreSQL {major}" in caught.value.message
    assert restic.snapshots(repo, snapshot_tags) == []


def test_missing_tools_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DumpError) as caught:
        tool("pg_dump", tmp_path)
    assert "pg_dump not found in" in caught.value.message
    assert not caught.value.retryable
    assert tool("pg_restore", None) == shutil.which("pg_restore")


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_figures_are_the_dumps_own_while_the_application_writes(
    databases: Callable[[], PgTarget], restic: Restic, repo: Repository
) -> None:
    """Issue 9: counts taken before pg_dump, outside its snapshot, failed the restore's check.

    A writer commits an order and its event in one transaction, without pause, before,
    during and after the dump. The figures the dump returns must be exactly what a
    restore of that dump holds; the counts today's code took before dumping are not.
    """
    live = databases()
    with connect(live) as conn:
        conn.execute(
            """
            CREATE TABLE orders (id bigserial PRIMARY KEY, amount numeric(12, 2), pad text);
            CREATE TABLE order_events (order_id bigint NOT NULL, kind text NOT NULL);
            INSERT INTO orders (amount, pad)
                SELECT i * 0.5, repeat(md5(i::text), 8) FROM generate_series(1, 40000) i;
            INSERT INTO order_events SELECT id, 'created' FROM orders;
            """
        )
    stop = threading.Event()
    committed = [0]
    failures: list[BaseException] = []

    def write() -> None:
        try:
            with connect(live) as conn:
                while not stop.is_set():
                    with conn.transaction():
                        conn.execute(
                            "WITH o AS (INSERT INTO orders (amount, pad)"
                            " VALUES (1.25, repeat('x', 200)) RETURNING id)"
                            " INSERT INTO order_events SELECT id, 'created' FROM o"
                        )
                    committed[0] += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    psql = tool("psql", None)
    writer = threading.Thread(target=write, name="application-writes", daemon=True)
    writer.start()
    try:
        wait_for(lambda: committed[0] >= 20, "the writer to start")
        # what dump_database recorded until now: counts first, pg_dump afterwards
        counted_before = table_row_counts(live, psql)
        mark = committed[0]
        wait_for(lambda: committed[0] >= mark + 20, "writes after the early count")
        result = dump_into_restic(live, restic, repo, tags())
        mark = committed[0]
        wait_for(lambda: committed[0] >= mark + 20, "writes after the dump")
    finally:
        stop.set()
        writer.join(timeout=30)
    assert not failures, failures
    final = table_row_counts(live, psql)

    restored = databases()
    restore_from_restic(restored, restic, repo, result.snapshot_id)
    in_restore = table_row_counts(restored, psql)

    assert result.row_counts == in_restore
    # one snapshot: every restored order has its event, as in every committed transaction
    assert in_restore["public.orders"] == in_restore["public.order_events"]
    # the writes really raced the backup on both sides of its snapshot ...
    assert counted_before["public.orders"] < in_restore["public.orders"] < final["public.orders"]
    # ... so the figures taken before pg_dump would fail the restore's verification
    assert counted_before != in_restore


def test_unusual_names_give_the_same_keys_when_dumping_and_verifying(
    databases: Callable[[], PgTarget], restic: Restic, repo: Repository
) -> None:
    """The manifest's keys (dump side) and the verification's keys (restore side) agree."""
    odd_schema = sql.Identifier('Odd.Schema "q" ü')
    odd_table = sql.Identifier("Ta.ble|with\nnewline")
    source_db = databases()
    with connect(source_db) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(odd_schema))
        conn.execute(sql.SQL("CREATE TABLE {}.{} (x int)").format(odd_schema, odd_table))
        conn.execute(
            sql.SQL("INSERT INTO {}.{} SELECT generate_series(1, 7)").format(odd_schema, odd_table)
        )
        conn.execute(
            """
            CREATE TABLE "MiXeD" (x int);
            INSERT INTO "MiXeD" VALUES (1), (2);
            CREATE TABLE measures (at date NOT NULL, v int) PARTITION BY RANGE (at);
            CREATE TABLE measures_2024 PARTITION OF measures
                FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
            CREATE TABLE measures_2025 PARTITION OF measures
                FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
            INSERT INTO measures VALUES ('2024-05-01', 1), ('2025-05-01', 2), ('2025-06-01', 3);
            CREATE TABLE "empty table" (x int);
            """
        )
    psql = tool("psql", None)
    expected = {
        'Odd.Schema "q" ü.Ta.ble|with\nnewline': 7,
        "public.MiXeD": 2,
        "public.empty table": 0,
        "public.measures": 3,
        "public.measures_2024": 1,
        "public.measures_2025": 2,
    }
    assert table_row_counts(source_db, psql) == expected

    result = dump_into_restic(source_db, restic, repo, tags())
    assert result.row_counts == expected
    restored = databases()
    restore_from_restic(restored, restic, repo, result.snapshot_id)
    assert table_row_counts(restored, psql) == expected


def test_server_timeouts_do_not_end_the_snapshot_early(
    databases: Callable[[], PgTarget], restic: Restic, repo: Repository
) -> None:
    """Managed servers often set these; the exporting session idles until pg_dump imports."""
    db = databases()
    with connect(db) as conn:
        conn.execute(
            "CREATE TABLE big AS SELECT i, md5(i::text) AS h FROM generate_series(1, 300000) i"
        )
        conn.execute(
            sql.SQL(
                "ALTER DATABASE {} SET idle_in_transaction_session_timeout = '5ms'; "
                "ALTER DATABASE {} SET statement_timeout = '5ms'"
            ).format(sql.Identifier(db.dbname), sql.Identifier(db.dbname))
        )
    result = dump_into_restic(db, restic, repo, tags())
    assert result.row_counts == {"public.big": 300000}
