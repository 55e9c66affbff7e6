"""The whole performance table of issue 13 in one command; ends with ``RESULT name=value``.

    .venv/bin/python -m bench.run            # the issue's sizes (make bench)
    .venv/bin/python -m bench.run --quick    # small sizes, a few minutes (make bench-quick)

Everything it needs is built here: PostgreSQL (the local server or an embedded one), the
databases, cairn's metadata database, the Temporal dev server, a worker and an API process.
All of it is removed at the end, also when a row fails.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import backup_throughput, engines, growth, offsite, pitr, restore_history, small_runs
from bench.database import Databases
from bench.figures import Report
from bench.stack import cairn_stack
from core.settings import Settings
from devstack.postgres import running_server


@dataclass(frozen=True)
class Sizes:
    database_mb: int
    runs: int
    tiny_in_a_row: int
    at_once: tuple[int, ...]
    read_rate: float
    read_seconds: float
    append_mb: int
    uniform_scale: int
    pitr_seconds: int
    history: int


FULL = Sizes(1024, 3, 8, (30, 50), 200, 10, 256, 30, 120, 30)
QUICK = Sizes(32, 2, 4, (10,), 100, 5, 8, 2, 30, 6)


async def measure(
    sizes: Sizes, settings: Settings, dbs: Databases, work: Path, report: Report, only: set[str]
) -> None:
    async with cairn_stack(settings, work) as stack:
        if "small" in only:
            print("\n# tiny application", flush=True)
            app = await small_runs.latency(stack, dbs, sizes.tiny_in_a_row, report)
            print("\n# API reads", flush=True)
            await small_runs.api_reads(stack, app, sizes.read_rate, sizes.read_seconds, report)
            for count in sizes.at_once:
                print(f"\n# {count} tiny backups at once", flush=True)
                await small_runs.at_once(stack, dbs, count, report)
        if "throughput" in only:
            print(f"\n# backup and restore of a {sizes.database_mb} MiB database", flush=True)
            await backup_throughput.run(stack, dbs, work, sizes.database_mb, sizes.runs, report)
        if "history" in only:
            megabytes = sizes.database_mb // 4
            print(f"\n# restore against the history kept, {megabytes} MiB", flush=True)
            await restore_history.run(stack, dbs, megabytes, sizes.history, report)
        if "pitr" in only:
            megabytes = sizes.database_mb // 4
            print(f"\n# continuous archiving of a {megabytes} MiB database", flush=True)
            storages = settings.storage_mount_root
            await pitr.run(stack, storages, megabytes, sizes.pitr_seconds, report)
        if "offsite" in only:
            megabytes = sizes.database_mb // 4
            print(f"\n# offsite copies of a {megabytes} MiB database", flush=True)
            storages = settings.storage_mount_root
            await offsite.run(stack, dbs, work, storages, megabytes, sizes.runs, report)
        if "engines" in only:
            megabytes = sizes.database_mb // 4
            print(f"\n# MariaDB and Redis, {megabytes} MiB each: raw tool, engine, whole backup")
            await engines.mariadb_rows(work, megabytes, sizes.runs, report, stack)
            await engines.redis_rows(work, megabytes, sizes.runs, report, stack)
    if "growth" in only:
        print("\n# repository growth", flush=True)
        growth.run(dbs, work, sizes.append_mb, sizes.uniform_scale, report)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--database-mb", type=int, help="size of the throughput database")
    parser.add_argument("--runs", type=int, help="runs of each throughput figure")
    parser.add_argument(
        "--only",
        default="small,throughput,history,offsite,pitr,growth,engines",
        help="comma-separated rows: small, throughput, history, offsite, pitr, growth, engines",
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.database_mb or args.runs:
        sizes = Sizes(
            args.database_mb or sizes.database_mb,
            args.runs or sizes.runs,
            *list(vars(sizes).values())[2:],
        )
    report = Report()
    work = Path(tempfile.mkdtemp(prefix="cairn-bench-"))
    try:
        with running_server(work) as pg:
            dbs = Databases(pg)
            try:
                settings = dbs.metadata(work / "storages")  # migrations run their own loop
                only = set(args.only.split(","))
                asyncio.run(measure(sizes, settings, dbs, work, report, only))
            finally:
                dbs.drop_all()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.print()


if __name__ == "__main__":
    main()
