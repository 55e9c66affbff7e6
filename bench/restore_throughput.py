"""Restore throughput: a full restore through the API against plain ``pg_restore``.

Builds a database of about --size-mb with pgbench, backs it up through the API, then times
  1. plain ``pg_restore --single-transaction`` of the same dump into an empty database,
  2. a full restore through the API (verify, restore beside, swap, verify) until done,
and prints both and their ratio.

    .venv/bin/python -m bench.restore_throughput --size-mb 1024
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from adapters import pg_dump
from bench.database import BenchDatabase, main
from bench.stack import cairn_stack, finished, timed
from tests.support.api import expect


async def through_api(db: BenchDatabase) -> float:
    async with cairn_stack(db.settings, db.url) as stack:
        backups = f"/api/v1/applications/{stack.app_id}/backups"
        accepted = await expect(await stack.api.post(backups, headers=stack.owner), 202)
        backup = await stack.until(f"{backups}/{accepted['id']}", finished)
        if backup["status"] != "succeeded":
            raise SystemExit(f"backup failed: {backup['error_message']}")
        start = time.perf_counter()
        restore = await expect(
            await stack.api.post(
                f"{backups}/{backup['id']}/restore", json={"restore_type": "full"},
                headers=stack.owner,
            ),
            202,
        )  # fmt: skip
        done = await stack.until(
            f"/api/v1/applications/{stack.app_id}/restores/{restore['id']}", finished
        )
        elapsed = time.perf_counter() - start
        if done["status"] != "succeeded":
            raise SystemExit(f"restore failed: {done['error_message']}")
        print(f"  {'full restore through the API':<40} {elapsed:8.2f} s", flush=True)
        return elapsed


def run(db: BenchDatabase, work: Path) -> None:
    dump = work / "database.dump"
    with dump.open("wb") as out:
        subprocess.run(pg_dump.dump_command(db.target, pg_dump.tool("pg_dump", None)),
                       env=pg_dump.environment(db.target), stdout=out, check=True)  # fmt: skip
    scratch = f"{db.name}_plain"
    db.pg.create_database(scratch)
    try:
        target = replace(db.target, dbname=scratch)
        command = pg_dump.restore_command(target, pg_dump.tool("pg_restore", None))

        def plain() -> None:
            with dump.open("rb") as source:
                subprocess.run(command, env=pg_dump.environment(target), stdin=source, check=True)

        t_plain = timed("plain pg_restore of the same dump", plain)
    finally:
        db.pg.drop_database(scratch)
    t_api = asyncio.run(through_api(db))
    print()
    print(f"dump size: {dump.stat().st_size / 1024 / 1024:.0f} MiB")
    print(f"restore through the API / plain pg_restore: {t_api / t_plain:6.2f}x")


if __name__ == "__main__":
    main(__doc__, run)
