"""Backup throughput: cairn end to end against the tools it drives, measured in one run.

Builds a database of about --size-mb with pgbench, then times
  1. raw ``pg_dump`` (the exact command cairn runs) to /dev/null,
  2. ``pg_dump | restic backup --stdin`` into a fresh repository, as the adapter runs it
     (with the row counts it reads in pg_dump's snapshot first),
  3. a whole backup through the API (database only) until its workflow completes,
and prints sizes, times, the ratios to raw pg_dump and the worker's peak memory
(worker process plus its pg_dump/restic children, sampled every 50 ms).

    .venv/bin/python -m bench.backup_throughput --size-mb 1024
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from pathlib import Path

from adapters import pg_dump
from adapters.restic import Repository, Restic
from bench.database import MB, BenchDatabase, main
from bench.stack import PeakRss, cairn_stack, finished, timed
from tests.support.api import expect


async def through_api(db: BenchDatabase) -> tuple[float, int, int]:
    async with cairn_stack(db.settings, db.url) as stack:
        backups = f"/api/v1/applications/{stack.app_id}/backups"
        with PeakRss(stack.worker_pid) as peak:
            start = time.perf_counter()
            accepted = await expect(await stack.api.post(backups, headers=stack.owner), 202)
            done = await stack.until(f"{backups}/{accepted['id']}", finished)
            elapsed = time.perf_counter() - start
        if done["status"] != "succeeded":
            raise SystemExit(f"backup failed: {done['error_message']}")
        print(f"  {'whole backup through the API':<40} {elapsed:8.2f} s", flush=True)
        return elapsed, peak.peak, int(done["size_bytes"])


def run(db: BenchDatabase, work: Path) -> None:
    tool = pg_dump.tool("pg_dump", None)

    def raw() -> None:
        with open(os.devnull, "wb") as sink:
            subprocess.run(pg_dump.dump_command(db.target, tool),
                           env=pg_dump.environment(db.target), stdout=sink, check=True)  # fmt: skip

    restic = Restic()
    repo = Repository(path=work / "repo", password=uuid.uuid4().hex)
    restic.init(repo)
    t_raw = timed("raw pg_dump > /dev/null", raw)
    t_pipe = timed(
        "pg_dump | restic backup --stdin (+ counts)",
        lambda: pg_dump.dump_into_restic(db.target, restic, repo, ["bench=1"]),
    )
    t_api, peak, size = asyncio.run(through_api(db))
    print()
    print(f"dump size (bytes read by the backup): {size / MB:.0f} MiB")
    print(f"pg_dump | restic (+ counts) / raw pg_dump: {t_pipe / t_raw:6.2f}x")
    print(f"backup through the API      / raw pg_dump: {t_api / t_raw:6.2f}x")
    print(f"throughput through the API: {size / MB / t_api:.1f} MiB/s")
    print(f"worker peak memory (with pg_dump and restic): {peak / MB:.0f} MiB")


if __name__ == "__main__":
    main(__doc__, run)
