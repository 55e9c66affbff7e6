"""Progress of a database dump, and restores staged on disk for pg_restore --jobs.

Real pg_dump, pg_restore and restic; the fixtures are the dump adapter tests' own.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from adapters.pg_dump import (
    PARALLEL_RESTORE_MIN_BYTES,
    DumpError,
    PgTarget,
    dump_into_restic,
    restore_from_restic,
    restore_plan,
    server_info,
    table_row_counts,
    tool,
)
from adapters.restic import Progress, Repository, Restic
from tests.integration import test_pg_dump_adapter as adapter_tests
from tests.integration.test_pg_dump_adapter import EXPECTED_COUNTS, fingerprint, tags

# the dump adapter tests' fixtures: a source database, a repository, fresh databases
source = adapter_tests.source
repo = adapter_tests.repo
restic = adapter_tests.restic
new_database = adapter_tests.new_database

pytestmark = pytest.mark.integration


def test_dump_progress_counts_bytes_against_the_database_size(
    source: PgTarget, restic: Restic, repo: Repository
) -> None:
    updates: list[Progress] = []
    result = dump_into_restic(source, restic, repo, tags(), progress=updates.append)
    _, size = server_info(source, tool("psql", None))
    # the first figure comes before any data, so the API never shows a dump without progress
    assert updates[0] == Progress(0, size, 0, 0, 0.0)
    assert all(u.total_bytes == size for u in updates)
    assert all(0 <= u.percent <= 99 for u in updates)
    assert [u.bytes_done for u in updates] == sorted(u.bytes_done for u in updates)
    assert result.row_counts == EXPECTED_COUNTS


def test_large_dumps_are_staged_on_disk_and_restored_in_parallel(
    source: PgTarget, new_database: PgTarget, restic: Restic, repo: Repository, tmp_path: Path
) -> None:
    result = dump_into_restic(source, restic, repo, tags())
    staging = tmp_path / "staging"
    staging.mkdir()
    restore_from_restic(
        new_database,
        restic,
        repo,
        result.snapshot_id,
        size_hint=PARALLEL_RESTORE_MIN_BYTES,
        staging_dir=staging,
        jobs=2,
    )
    assert table_row_counts(new_database, tool("psql", None)) == EXPECTED_COUNTS
    assert fingerprint(new_database) == fingerprint(source)
    assert list(staging.iterdir()) == []  # the staged copy is gone

    # a repeated parallel restore (a retried step) replaces, never duplicates
    with psycopg.connect(
        host=new_database.host,
        port=new_database.port,
        user=new_database.user,
        dbname=new_database.dbname,
        autocommit=True,
    ) as conn:
        conn.execute("DELETE FROM app.orders WHERE id > 10")
    restore_from_restic(
        new_database,
        restic,
        repo,
        result.snapshot_id,
        size_hint=PARALLEL_RESTORE_MIN_BYTES,
        staging_dir=staging,
        jobs=2,
    )
    assert fingerprint(new_database) == fingerprint(source)


def test_a_failed_parallel_restore_says_why_and_leaves_no_staged_copy(
    source: PgTarget, restic: Restic, repo: Repository, tmp_path: Path
) -> None:
    result = dump_into_restic(source, restic, repo, tags())
    gone = PgTarget(source.host, source.port, source.user, "cairn_no_such_database", None)
    with pytest.raises(DumpError) as caught:
        restore_from_restic(
            gone,
            restic,
            repo,
            result.snapshot_id,
            size_hint=PARALLEL_RESTORE_MIN_BYTES,
            staging_dir=tmp_path,
            jobs=2,
        )
    assert "pg_restore failed" in caught.value.message
    assert "does not exist" in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_the_restore_plan_streams_small_dumps_and_when_the_disk_is_short(
    tmp_path: Path,
) -> None:
    big = PARALLEL_RESTORE_MIN_BYTES
    assert restore_plan(big, tmp_path, jobs=2) == 2
    assert restore_plan(big - 1, tmp_path, jobs=2) == 1  # small: streamed, one transaction
    assert restore_plan(None, tmp_path, jobs=2) == 1  # size unknown: streamed
    assert restore_plan(big, tmp_path, jobs=1) == 1  # not asked for: streamed
    assert restore_plan(big, tmp_path / "missing", jobs=2) == 1  # no staging folder
    assert restore_plan(10**18, tmp_path, jobs=2) == 1  # would not fit: streamed
