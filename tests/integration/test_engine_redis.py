"""The Redis engine against real servers the test starts: every data type and TTLs kept, a
dump under writes, a restore that replaces the dataset as a whole, refusals (issue 24)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.engines import redis
from adapters.engines.redis import RedisTarget
from adapters.engines.stream import EngineError
from adapters.restic import Repository, Restic
from tests.support.engine_servers import redis_server, writing

pytestmark = pytest.mark.integration

PASSWORD = "s3cret pass\\word"


@pytest.fixture
def server() -> Iterator[RedisTarget]:
    # a sync starts at once (Redis waits 5 s by default for more replicas to share it)
    options = ("--repl-diskless-sync-delay", "0", "--enable-debug-command", "yes")
    with redis_server("--requirepass", PASSWORD, *options) as port:
        yield RedisTarget("127.0.0.1", port, password=PASSWORD)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Restic, Repository]:
    restic = Restic()
    repository = Repository(tmp_path / "repo", secrets.token_hex(16), cache_dir=tmp_path / "c")
    restic.init(repository)
    return restic, repository


def fill(target: RedisTarget) -> None:
    """Every type, a key with a time to live, and keys in a second logical database."""
    for args in (
        ("SET", "plain", "value with spaces\nand a newline"),
        ("SET", "expiring", "soon", "EX", "3600"),
        ("HSET", "user:1", "name", "Ada", "lang", "ü"),
        ("RPUSH", "queue", "a", "b", "c"),
        ("SADD", "tags", "x", "y"),
        ("ZADD", "scores", "1.5", "low", "99", "high"),
        ("XADD", "events", "*", "kind", "signup"),
        ("DEBUG", "POPULATE", "2000", "pop", "64"),
        ("-n", "3", "SET", "in-db-3", "yes"),
    ):
        redis.command(target, *args)


def digest(target: RedisTarget) -> str:
    return redis.command(target, "DEBUG", "DIGEST")


def test_round_trip_keeps_every_type_ttl_and_database(
    server: RedisTarget, repo: tuple[Restic, Repository]
) -> None:
    restic, repository = repo
    fill(server)
    before, counts = digest(server), redis.key_counts(server)
    dump = redis.dump_into_restic(server, restic, repository, ["part=database:cache"])
    assert dump.key_counts == counts and counts["db0"] > 2000 and counts["db3"] == 1
    assert dump.server_version.startswith("7.")

    redis.command(server, "FLUSHALL")
    redis.command(server, "SET", "intruder", "1")
    redis.restore_from_restic(
        server, restic, repository, dump.snapshot_id, dump, identity=redis.server_identity(server)
    )
    assert digest(server) == before
    ttl = int(redis.command(server, "TTL", "expiring"))
    assert 3500 < ttl <= 3600
    assert "role:master" in redis.command(server, "INFO", "replication")
    assert redis.command(server, "CONFIG", "GET", "masterauth").splitlines()[1:] in ([], [""])


def test_restore_into_another_server_and_a_dump_under_writes(
    server: RedisTarget, repo: tuple[Restic, Repository]
) -> None:
    restic, repository = repo
    fill(server)
    with writing(lambda n: redis.command(server, "SET", f"late:{n}", "x")):
        dump = redis.dump_into_restic(server, restic, repository, [])
    with redis_server() as port:
        other = RedisTarget("127.0.0.1", port)
        redis.restore_from_restic(
            other, restic, repository, dump.snapshot_id, dump, identity=redis.server_identity(other)
        )
        assert redis.key_counts(other) == dump.key_counts


def test_refusals_say_what_failed_and_leave_nothing(
    server: RedisTarget, repo: tuple[Restic, Repository], tmp_path: Path
) -> None:
    restic, repository = repo
    fill(server)
    wrong = RedisTarget(server.host, server.port, password="nope")
    with pytest.raises(EngineError) as denied:
        redis.dump_into_restic(wrong, restic, repository, [])
    assert not denied.value.retryable and "nope" not in denied.value.message
    with pytest.raises(EngineError) as closed:
        redis.dump_into_restic(RedisTarget("127.0.0.1", 1), restic, repository, [])
    assert closed.value.retryable
    assert restic.snapshots(repository) == []
    for bad in ("mysql://h/db", "redis://"):
        with pytest.raises(EngineError):
            RedisTarget.from_url(bad)
    assert RedisTarget.from_url("rediss://app:p%40ss@cache.internal:6380/2") == RedisTarget(
        "cache.internal", 6380, "app", "p@ss", True
    )
