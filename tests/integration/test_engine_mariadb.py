"""The MariaDB/MySQL engine against a real server: round trips, writes during the dump,
refusals, and a failed restore that leaves the live database as it was (issue 24)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.engines import mariadb
from adapters.engines.mariadb import MariaTarget, RowCounter
from adapters.engines.stream import EngineError
from adapters.restic import Repository, Restic
from tests.support.engine_servers import mariadb_port, writing

pytestmark = pytest.mark.integration

PASSWORD = "p\"a\\ss 'w0rd"  # quotes and a backslash: the option file must carry them


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[MariaTarget, str]]:
    """Root on the server, and a user of this module's databases (``cairn_t_…``) with a
    password that needs quoting."""
    with mariadb_port() as port:
        root = MariaTarget("127.0.0.1", port, "root", "mysql")
        user = f"cairn_t_{secrets.token_hex(4)}"
        secret = PASSWORD.replace("\\", "\\\\").replace("'", "''")
        mariadb.query(root, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{secret}'")
        mariadb.query(root, f"GRANT ALL ON `cairn\\_t\\_%`.* TO '{user}'@'%'")
        try:
            yield root, user
        finally:
            for (name,) in mariadb.query(root, "SHOW DATABASES LIKE 'cairn\\_t\\_%'"):
                mariadb.query(root, f"DROP DATABASE {mariadb.quote_name(name)}")
            mariadb.query(root, f"DROP USER '{user}'@'%'")


@pytest.fixture
def database(server: tuple[MariaTarget, str]) -> MariaTarget:
    root, user = server
    name = f"cairn_t_{uuid.uuid4().hex[:10]}"
    mariadb.query(root, f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    return MariaTarget("127.0.0.1", root.port, user, name, PASSWORD)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Restic, Repository]:
    restic = Restic()
    repository = Repository(tmp_path / "repo", secrets.token_hex(16), cache_dir=tmp_path / "c")
    restic.init(repository)
    return restic, repository


def fill(target: MariaTarget) -> None:
    mariadb.query(
        target,
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(200), data LONGBLOB);"
        " CREATE TABLE `odd ``name`` here` (k VARCHAR(20) PRIMARY KEY, v TEXT);"
        " CREATE TABLE empty_one (x INT);"
        " INSERT INTO items SELECT seq, CONCAT('it''s ),( ', seq, '\\n;'), RANDOM_BYTES(64)"
        "  FROM seq_1_to_3000;"
        " INSERT INTO `odd ``name`` here` VALUES ('ü', 'naïve'), ('(', ')'), ('x', NULL);"
        " CREATE VIEW item_names AS SELECT name FROM items;"
        " CREATE TRIGGER upper_name BEFORE INSERT ON `odd ``name`` here` FOR EACH ROW"
        "  SET NEW.v = UPPER(NEW.v);"
        " CREATE PROCEDURE count_items() SELECT COUNT(*) FROM items;",
        database=target.dbname,
    )


def checksums(target: MariaTarget) -> dict[str, str]:
    out = {}
    for table in mariadb.table_row_counts(target):
        rows = mariadb.query(
            target,
            f"CHECKSUM TABLE {mariadb.quote_name(target.dbname)}.{mariadb.quote_name(table)}",
        )
        out[table] = rows[0][1]
    return out


def test_the_counter_reads_both_dump_styles() -> None:
    counter = RowCounter()
    counter.feed(b"CREATE TABLE `e` (\n  x int);\nCREATE TABLE `a``b` (\n")
    counter.feed(b"INSERT INTO `a``b` VALUES\n(1,'x),(y\\'',0x00),\n(2,'(',NULL);\n")
    counter.feed(b"INSERT INTO `t` VALUES (1,'a'),(2,'b\\\\'),(3,'),(');\n")
    assert counter.close() == {"e": 0, "a`b": 2, "t": 3}


def test_round_trip_is_row_identical_with_views_triggers_and_routines(
    database: MariaTarget, repo: tuple[Restic, Repository]
) -> None:
    restic, repository = repo
    fill(database)
    before = checksums(database)
    dump = mariadb.dump_into_restic(database, restic, repository, ["part=database:shop"])
    assert dump.row_counts == {"items": 3000, "odd `name` here": 3, "empty_one": 0}
    assert dump.row_counts == mariadb.table_row_counts(database)
    assert dump.server_version and dump.charset == "utf8mb4"
    assert PASSWORD not in repr(dump)

    mariadb.query(
        database,
        "DROP TABLE items; DROP VIEW item_names; CREATE TABLE intruder (x INT)",
        database=database.dbname,
    )
    mariadb.restore_from_restic(
        database,
        restic,
        repository,
        dump.snapshot_id,
        dump,
        "run-1",
        identity=mariadb.server_identity(database),
    )
    assert checksums(database) == before
    objects = mariadb.query(
        database,
        " UNION ALL ".join(
            f"SELECT COUNT(*) FROM information_schema.{kind}s WHERE {column} = DATABASE()"
            for kind, column in (
                ("view", "table_schema"),
                ("trigger", "trigger_schema"),
                ("routine", "routine_schema"),
            )
        ),
        database=database.dbname,
    )
    assert objects == [["1"], ["1"], ["1"]]
    staging = mariadb.staging_name(database.dbname, "run-1")
    assert not mariadb.query(database, f"SHOW DATABASES LIKE '{staging}'")

    # into another database by name, the source untouched
    other = database.named(f"cairn_t_{uuid.uuid4().hex[:10]}")
    mariadb.restore_from_restic(
        other,
        restic,
        repository,
        dump.snapshot_id,
        dump,
        "run-2",
        identity=mariadb.server_identity(other),
    )
    assert checksums(other) == {t: c for t, c in before.items()}


def test_a_dump_under_writes_verifies_against_its_own_rows(
    database: MariaTarget, repo: tuple[Restic, Repository]
) -> None:
    restic, repository = repo
    fill(database)

    def write(n: int) -> None:
        mariadb.query(
            database,
            f"INSERT INTO items VALUES ({10_000 + n}, 'late', NULL)",
            database=database.dbname,
        )

    with writing(write):
        dump = mariadb.dump_into_restic(database, restic, repository, ["part=database:shop"])
    restore_into = database.named(f"cairn_t_{uuid.uuid4().hex[:10]}")
    mariadb.restore_from_restic(
        restore_into,
        restic,
        repository,
        dump.snapshot_id,
        dump,
        "run-3",
        identity=mariadb.server_identity(restore_into),
    )
    assert mariadb.table_row_counts(restore_into) == dump.row_counts


def test_refusals_say_what_failed_and_leave_nothing(
    database: MariaTarget, repo: tuple[Restic, Repository]
) -> None:
    restic, repository = repo
    fill(database)
    wrong = MariaTarget(database.host, database.port, database.user, database.dbname, "nope")
    with pytest.raises(EngineError, match="Access denied") as denied:
        mariadb.dump_into_restic(wrong, restic, repository, ["part=database:shop"])
    assert not denied.value.retryable and "nope" not in denied.value.message
    with pytest.raises(EngineError, match="does not exist"):
        mariadb.dump_into_restic(database.named("cairn_t_missing"), restic, repository, [])
    with pytest.raises(EngineError, match="system database"):
        mariadb.dump_into_restic(database.named("mysql"), restic, repository, [])
    closed = MariaTarget("127.0.0.1", 1, database.user, database.dbname, PASSWORD)
    with pytest.raises(EngineError) as unreachable:
        mariadb.dump_into_restic(closed, restic, repository, [])
    assert unreachable.value.retryable
    assert restic.snapshots(repository) == []
    for bad in ("postgresql://u@h/db", "mysql://h/db", "mysql://u@h/", "mysql://u@h/a/b"):
        with pytest.raises(EngineError):
            MariaTarget.from_url(bad)
    assert MariaTarget.from_url("mariadb://us%40r:p%2Fw@db.example:3307/shop") == MariaTarget(
        "db.example", 3307, "us@r", "shop", "p/w"
    )


def test_a_restore_that_does_not_verify_leaves_the_live_database(
    database: MariaTarget, repo: tuple[Restic, Repository]
) -> None:
    restic, repository = repo
    fill(database)
    dump = mariadb.dump_into_restic(database, restic, repository, ["part=database:shop"])
    live = checksums(database)
    lying = mariadb.MariaDump(**{**dump.__dict__, "row_counts": {**dump.row_counts, "items": 1}})
    with pytest.raises(EngineError, match="staging copy does not match"):
        mariadb.restore_from_restic(
            database,
            restic,
            repository,
            dump.snapshot_id,
            lying,
            "run-4",
            identity=mariadb.server_identity(database),
        )
    assert checksums(database) == live
    assert not mariadb.query(
        database, f"SHOW DATABASES LIKE '{mariadb.staging_name(database.dbname, 'run-4')}'"
    )
