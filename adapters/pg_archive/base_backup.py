"""A physical base backup by ``pg_basebackup`` over a replication connection, into restic.

No SSH and no access to the server's data folder: the server streams its files. The tar is
written to the worker's disk first, because its tags (the first WAL segment recovery
reads, the moment it is consistent from) are only known once ``pg_basebackup`` has ended.
WAL is not included (``--wal-method=none``): the archiver's slot streams it anyway.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path

from adapters.pg_archive.stream import connect, covered_until
from adapters.pg_archive.window import BaseBackup, stamp
from adapters.pg_dump import DumpError, PgTarget, conninfo, environment, tool
from adapters.pg_identity import refuse_current
from adapters.restic import Repository, Restic, ResticError
from repository import names

_START = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)$", re.MULTILINE)


def _first_segment(tar: Path) -> str | None:
    """The segment recovery starts at, from the ``backup_label`` inside the tar."""
    with tarfile.open(tar) as archive:
        label = archive.extractfile("backup_label")
        found = _START.search(label.read().decode()) if label else None
    return found.group(1) if found else None


def take(
    target: PgTarget,
    slot: str,
    restic: Restic,
    repo: Repository,
    application_id: str,
    *,
    bin_dir: Path | None = None,
    staging_dir: Path | None = None,
) -> BaseBackup:
    with connect(target) as conn:
        refuse_current(conn, target.protect)
        row = conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()
        assert row is not None
        major = int(row[0])
    with tempfile.TemporaryDirectory(prefix="cairn-base-", dir=staging_dir) as tmp:
        argv = [
            tool("pg_basebackup", bin_dir),
            f"--pgdata={tmp}",
            "--format=tar",
            "--wal-method=none",
            "--checkpoint=fast",
            "--no-password",
            f"--dbname={conninfo(target)}",
        ]
        done = subprocess.run(
            argv, env=environment(target), capture_output=True, text=True, check=False
        )
        first = _first_segment(Path(tmp) / names.BASE_BACKUP_FILE) if done.returncode == 0 else None
        if first is None:
            raise DumpError(
                f"pg_basebackup failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}",
                retryable=True,
            )
        # Consistent once the WAL written up to its end is replayed: wait for the archiver to
        # hold it, so the moment tagged is one its shipments reach.
        consistent: datetime | None = covered_until(target, slot, 60)
        if consistent is None:
            raise DumpError(
                "the archiver did not receive the base backup's WAL within a minute",
                retryable=True,
            )
        tags = names.archive_tags(
            application_id,
            names.BASE_BACKUP,
            {"wal-first": first, "from": stamp(consistent), "major": str(major)},
        )
        try:
            result = restic.backup_paths(repo, Path(tmp), tags)
        except ResticError as exc:
            raise DumpError(
                f"storing the base backup failed: {exc.message}", retryable=exc.retryable
            ) from exc
    return BaseBackup(result.snapshot_id, first, consistent, major)
