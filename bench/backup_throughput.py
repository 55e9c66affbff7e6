"""Backup throughput: cairn end to end against the tools it drives, measured in one run.

Builds a database of about --size-mb with pgbench, then times
  1. raw ``pg_dump`` (the exact command cairn runs) to /dev/null,
  2. ``pg_dump | restic backup --stdin`` into a fresh repository,
  3. a whole backup through the API (database only) until its workflow completes,
and prints sizes, times, the ratios to raw pg_dump and the worker's peak memory
(worker process plus its pg_dump/restic children, sampled every 50 ms).

    .venv/bin/python -m bench.backup_throughput --size-mb 1024
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
from temporalio.testing import WorkflowEnvironment

from adapters import pg_dump
from adapters.restic import Repository, Restic
from core.crypto import generate_master_key
from core.search_attributes import SEARCH_ATTRIBUTE_KEYS
from core.settings import Settings
from db import migrate
from devstack.postgres import running_server
from devstack.temporal import cli_path
from tests.support.api import build_world, expect, new_workspace, running_app, wait_for

MB = 1024 * 1024


class PeakRss:
    """Peak resident memory of a process tree, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                total = sum(p.memory_info().rss for p in tree if p.is_running())
            except psutil.Error:
                total = 0
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(label: str, fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    elapsed = time.perf_counter() - start
    print(f"  {label:<38} {elapsed:8.2f} s", flush=True)
    return elapsed


async def through_api(settings: Settings, db_url: str, work: Path) -> tuple[float, int, int]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=cli_path(), search_attributes=SEARCH_ATTRIBUTE_KEYS,
        dev_server_log_level="error",
    )  # fmt: skip
    settings = settings.model_copy(
        update={"temporal_address": env.client.service_client.config.target_host}
    )
    worker_env = {
        **os.environ,
        "CAIRN_DATABASE_URL": settings.database_url,
        "CAIRN_TEMPORAL_ADDRESS": settings.temporal_address,
        "CAIRN_MASTER_KEY": settings.master_key_text or "",
        "CAIRN_STORAGE_MOUNT_ROOT": str(settings.storage_mount_root),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--log-level", "WARNING", "worker"], env=worker_env
    )
    try:
        async with running_app(settings) as api:
            world = await build_world(api)
            ws = await new_workspace(api, world, quota_gb=10_000, members=("owner",))
            admin = world.auth("ws_admin")
            storage = await expect(
                await api.post(
                    f"/api/v1/workspaces/{ws}/backup-storages",
                    json={"name": "bench", "type": "local", "capacity_gb": 5_000},
                    headers=admin,
                ),
                202,
            )
            await wait_for(
                api, f"/api/v1/workspaces/{ws}/backup-storages/{storage['id']}", admin,
                lambda s: s["status"] == "active", seconds=60,
            )  # fmt: skip
            app = await expect(
                await api.post(
                    f"/api/v1/workspaces/{ws}/applications",
                    json={"name": "bench", "owner_id": world.users["owner"],
                          "platform": {"kind": "local", "database_url": db_url}},
                    headers=world.auth("platform_admin"),
                ),
                201,
            )  # fmt: skip
            owner = world.auth("owner")
            await expect(
                await api.post(
                    f"/api/v1/applications/{app['id']}/backup-policy",
                    json={"storage_id": storage["id"], "schedule": "0 3 * * *",
                          "include_volumes": False},
                    headers=owner,
                ),
                201,
            )  # fmt: skip
            with PeakRss(worker.pid) as peak:
                start = time.perf_counter()
                accepted = await expect(
                    await api.post(f"/api/v1/applications/{app['id']}/backups", headers=owner),
                    202,
                )
                done = await wait_for(
                    api, f"/api/v1/applications/{app['id']}/backups/{accepted['id']}", owner,
                    lambda b: b["status"] in ("succeeded", "failed")
                    and (b.get("timeline") or {}).get("workflow_status") != "running",
                    seconds=3600,
                )  # fmt: skip
                elapsed = time.perf_counter() - start
            if done["status"] != "succeeded":
                raise SystemExit(f"backup failed: {done['error_message']}")
            print(f"  {'whole backup through the API':<38} {elapsed:8.2f} s", flush=True)
            return elapsed, peak.peak, int(done["size_bytes"])
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        await env.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256, help="database size to build")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cairn-bench-"))
    try:
        with running_server(work) as pg:
            run(pg, args.size_mb, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(pg: object, size_mb: int, work: Path) -> None:
    from devstack.postgres import PostgresServer

    assert isinstance(pg, PostgresServer)
    tag = uuid.uuid4().hex[:8]
    app_db, meta_db = f"bench_app_{tag}", f"bench_meta_{tag}"
    pg.create_database(app_db)
    pg.create_database(meta_db)
    try:
        app_url = pg.url(app_db, driver="postgresql")
        scale = max(1, round(size_mb / 15))  # pgbench: about 15 MB per scale unit
        print(f"building {app_db} with pgbench -s {scale} ...", flush=True)
        subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), app_url], check=True,
                       capture_output=True)  # fmt: skip
        target = pg_dump.PgTarget(
            host=pg.socket_dir or pg.host, port=pg.port, user=pg.user, dbname=app_db,
            password=None,
        )  # fmt: skip
        _, db_size = pg_dump.server_info(target, pg_dump.tool("psql", None))
        print(f"database size: {db_size / MB:.0f} MiB\n", flush=True)
        tool = pg_dump.tool("pg_dump", None)

        def raw() -> None:
            with open(os.devnull, "wb") as sink:
                subprocess.run(pg_dump.dump_command(target, tool), env=pg_dump.environment(target),
                               stdout=sink, check=True)  # fmt: skip

        restic = Restic()
        repo = Repository(path=work / "repo", password=uuid.uuid4().hex)
        restic.init(repo)
        t_raw = timed("raw pg_dump > /dev/null", raw)
        t_pipe = timed(
            "pg_dump | restic backup --stdin",
            lambda: pg_dump.dump_into_restic(target, restic, repo, ["bench=1"]),
        )
        migrate.upgrade(pg.url(meta_db))
        settings = Settings(
            database_url=pg.url(meta_db), master_key=generate_master_key(),
            storage_mount_root=work / "storages",
        )  # fmt: skip
        t_api, peak, size = asyncio.run(through_api(settings, app_url, work))
        print()
        print(f"dump size (bytes read by the backup): {size / MB:.0f} MiB")
        print(f"pg_dump | restic      / raw pg_dump: {t_pipe / t_raw:6.2f}x")
        print(f"backup through the API / raw pg_dump: {t_api / t_raw:6.2f}x")
        print(f"throughput through the API: {size / MB / t_api:.1f} MiB/s")
        print(f"worker peak memory (with pg_dump and restic): {peak / MB:.0f} MiB")
    finally:
        pg.drop_database(app_db)
        pg.drop_database(meta_db)


if __name__ == "__main__":
    main()
