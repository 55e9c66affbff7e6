"""A pgbench database of a given size on the local (or embedded) PostgreSQL."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from adapters import pg_dump
from core.crypto import generate_master_key
from core.settings import Settings
from db import migrate
from devstack.postgres import PostgresServer, running_server

MB = 1024 * 1024


@dataclass
class BenchDatabase:
    pg: PostgresServer
    name: str
    url: str
    target: pg_dump.PgTarget
    size: int
    settings: Settings  # cairn's own metadata database and storage for this run


@contextlib.contextmanager
def bench_database(
    pg: PostgresServer, size_mb: int, storage_root: object
) -> Iterator[BenchDatabase]:
    tag = uuid.uuid4().hex[:8]
    app_db, meta_db = f"bench_app_{tag}", f"bench_meta_{tag}"
    pg.create_database(app_db)
    pg.create_database(meta_db)
    try:
        url = pg.url(app_db, driver="postgresql")
        scale = max(1, round(size_mb / 15))  # pgbench: about 15 MB per scale unit
        print(f"building {app_db} with pgbench -s {scale} ...", flush=True)
        subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), url], check=True,
                       capture_output=True)  # fmt: skip
        target = pg_dump.PgTarget(pg.socket_dir or pg.host, pg.port, pg.user, app_db, None)
        _, size = pg_dump.server_info(target, pg_dump.tool("psql", None))
        print(f"database size: {size / MB:.0f} MiB\n", flush=True)
        migrate.upgrade(pg.url(meta_db))
        settings = Settings(
            database_url=pg.url(meta_db), master_key=generate_master_key(),
            storage_mount_root=storage_root,
        )  # fmt: skip
        yield BenchDatabase(pg, app_db, url, target, size, settings)
    finally:
        pg.drop_database(app_db)
        pg.drop_database(meta_db)


def main(doc: str | None, run: Callable[[BenchDatabase, Path], None]) -> None:
    """The command line every benchmark shares: build the database, run, clean up."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256, help="database size to build")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cairn-bench-"))
    try:
        with running_server(work) as pg, bench_database(pg, args.size_mb, work / "storages") as db:
            run(db, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
