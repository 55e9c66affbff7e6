"""Continuous archiving (docs/pitr.md) measured through the running service: RPO, restore to a
moment against a restore of the latest dump, and the storage WAL costs per day.

A PostgreSQL server of the bench's own (``tests/support/pg_instance.py``: archiving copies the
whole server, so it cannot be the shared one) holds a pgbench database; the application is
registered on the bench's stack (worker and API processes) with archiving on.

- **RPO**: ``pgbench --rate`` commits at a fixed rate while the recovery window is read through
  the API every ``POLL`` seconds; a commit (its server commit timestamp,
  ``track_commit_timestamp``) is restorable at the first read whose ``latest`` reaches it.
  The figure includes the read's own time and up to one poll interval.
- **Restore**: ``target_time: latest`` into a new database against a selective database
  restore of a dump taken right after, into a new database too; POST to a final status.
- **Storage**: pgbench's accounts get a hex filler first (its blank one compresses ~100x in a
  dump, which real data does not); the repository's growth while pgbench ran, extrapolated
  linearly to a day at the same rate, and to a day of the growth bench's churn (2 % of the
  accounts updated, one pgbench transaction each, at the stored bytes per commit measured
  here), against the growth one dump backup adds (the first dump in that repository: what a
  nightly dump stores when nothing deduplicates).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.figures import Figure, Report, percentile
from bench.stack import Stack, _ok
from tests.support import pg_instance

DB = "bench"
RATE = 20  # pgbench transactions per second
POLL = 0.5
DAY = 86400
GROWTH_CHURN = 0.02
"""bench/growth.py's day: 2 % of pgbench_accounts updated."""


def _stored_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _wal_lsn(instance: pg_instance.Instance) -> int:
    with instance.connect(DB) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        assert row is not None
        return int(row[0])


class WindowReads:
    """Reads the recovery window every ``POLL`` s: (wall time of the answer, ``latest``)."""

    def __init__(self, stack: Stack, app_id: str) -> None:
        self.stack, self.path = stack, f"/api/v1/applications/{app_id}/recovery-window"
        self.reads: list[tuple[float, float]] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            shown = await _ok(await self.stack.api.get(self.path, headers=self.stack.owner), 200)
            if shown["latest"]:
                self.reads.append(
                    (time.time(), datetime.fromisoformat(shown["latest"]).timestamp())
                )
            await asyncio.sleep(POLL)

    def restorable_at(self, commit: float) -> float | None:
        return next((at for at, latest in self.reads if latest >= commit), None)

    async def until(self, moment: float, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while not (self.reads and self.reads[-1][1] >= moment):
            if time.monotonic() > deadline:
                raise SystemExit("the window never reached the last commit")
            await asyncio.sleep(POLL)


async def _restore(stack: Stack, app_id: str, path: str, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    restore = await _ok(await stack.api.post(path, json=body, headers=stack.owner), 202)
    done = await stack.until_final(f"/api/v1/applications/{app_id}/restores/{restore['id']}")
    if done["status"] != "succeeded":
        raise SystemExit(f"restore failed: {done['error_message']}")
    return time.perf_counter() - start


async def run(
    stack: Stack, storage_root: Path, megabytes: int, seconds: int, report: Report
) -> None:
    with pg_instance.running() as instance:
        with instance.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {DB}")
        target = instance.target(DB)
        url = f"postgresql://{target.user}:{target.password}@127.0.0.1:{instance.port}/{DB}"
        env = {**os.environ, "PGPASSWORD": target.password or ""}
        scale = max(1, round(megabytes / 15))
        initialize = ["pgbench", "-i", "-q", "-s", str(scale), url]
        subprocess.run(initialize, env=env, check=True, capture_output=True)
        with instance.connect(DB) as conn:  # pgbench's blank filler would compress ~100x
            conn.execute("UPDATE pgbench_accounts SET filler = md5(aid::text) || md5(bid::text)")
            conn.execute("VACUUM FULL pgbench_accounts")
        app_id = await stack.new_app(f"pitr-{uuid.uuid4().hex[:6]}", url)
        policy = f"/api/v1/applications/{app_id}/backup-policy"
        body = {"storage_id": stack.storage_id, "schedule": "0 3 * * *"}
        await _ok(
            await stack.api.post(
                policy, json={**body, "continuous_archiving": True}, headers=stack.owner
            ),
            200,
        )
        try:
            accounts = scale * 100_000
            await _measure(
                stack, storage_root, instance, app_id, url, env, seconds, accounts, report
            )
        finally:
            await _ok(
                await stack.api.post(
                    policy, json={**body, "continuous_archiving": False}, headers=stack.owner
                ),
                200,
            )
            await asyncio.sleep(3)  # the archiver drops its slot before the server goes
    report.notes.append(
        f"PITR: pgbench scale {scale} (~{megabytes} MiB), {RATE} tx/s for {seconds} s,"
        f" window read every {POLL} s"
    )


async def _measure(
    stack: Stack,
    storage_root: Path,
    instance: pg_instance.Instance,
    app_id: str,
    url: str,
    env: dict[str, str],
    seconds: int,
    accounts: int,
    report: Report,
) -> None:
    reads = WindowReads(stack, app_id)
    poller = asyncio.create_task(reads.run())
    try:
        deadline = time.monotonic() + 300
        while not reads.reads:  # the first base backup is stored
            if time.monotonic() > deadline:
                raise SystemExit("the window never opened")
            await asyncio.sleep(POLL)
        (repo,) = [
            p for p in storage_root.glob("*/workspaces/*/applications/*") if p.name == app_id
        ]
        await asyncio.sleep(2 * POLL)
        archive_start, lsn_start = _stored_bytes(repo), _wal_lsn(instance)
        argv = ["pgbench", "-n", "-c", "2", "-j", "1", "-R", str(RATE), "-T", str(seconds), url]
        await asyncio.to_thread(subprocess.run, argv, env=env, check=True, capture_output=True)
        with instance.connect(DB) as conn:
            commits = [
                row[0].timestamp()
                for row in conn.execute(
                    "SELECT pg_xact_commit_timestamp(xmin) FROM pgbench_history"
                )
            ]
        wal = _wal_lsn(instance) - lsn_start
        await reads.until(max(commits))
        wal_stored = _stored_bytes(repo) - archive_start
    finally:
        reads.stop.set()
        await poller
    seen = [(reads.restorable_at(c), c) for c in commits]
    rpo = [at - c for at, c in seen if at is not None]
    report.add(
        Figure(
            "pitr_rpo_p50_s",
            "PITR: RPO p50 (commit -> restorable)",
            [percentile(rpo, 50)],
            " s",
            "p99 <= 10 s",
        )
    )
    report.add(Figure("pitr_rpo_p99_s", "PITR: RPO p99", [percentile(rpo, 99)], " s", "<= 60 s"))
    per_day = DAY / seconds
    report.add(
        Figure(
            "pitr_wal_stored_mb_per_day",
            "PITR: WAL stored per day at this churn",
            [wal_stored * per_day / 1e6],
            " MB",
        )
    )
    report.add(
        Figure(
            "pitr_wal_written_mb_per_day",
            "PITR: WAL the server wrote, per day",
            [wal * per_day / 1e6],
            " MB",
        )
    )
    # the growth bench's churn (2 % of the accounts updated a day), at what a commit cost here
    churn = GROWTH_CHURN * accounts
    report.add(
        Figure(
            "pitr_wal_stored_mb_per_day_2pct",
            "PITR: WAL stored per day at 2 % of accounts updated",
            [wal_stored / len(commits) * churn / 1e6],
            " MB",
        )
    )
    report.notes.append(
        f"PITR: {len(commits)} commits in {seconds} s; archive before the load (first base"
        f" backup + idle WAL) {archive_start / 1e6:.1f} MB; per day = growth during the load"
        f" x {per_day:.0f}"
    )

    before = _stored_bytes(repo)
    _, backup = await stack.backup(app_id)
    dump_stored = _stored_bytes(repo) - before
    report.add(
        Figure(
            "pitr_dump_stored_mb",
            "PITR: one dump backup stored (for comparison)",
            [dump_stored / 1e6],
            " MB",
        )
    )
    base = f"/api/v1/applications/{app_id}"
    to_time = await _restore(
        stack,
        app_id,
        f"{base}/restores",
        {"target_time": "latest", "target": {"database_name": "bench_at_latest"}},
    )
    from_dump = await _restore(
        stack,
        app_id,
        f"{base}/backups/{backup['id']}/restore",
        {
            "restore_type": "selective",
            "database": True,
            "target": {"database_name": "bench_from_dump"},
        },
    )
    report.add(
        Figure("pitr_restore_to_time_s", "PITR: restore to latest (new database)", [to_time], " s")
    )
    report.add(
        Figure(
            "pitr_restore_dump_s",
            "PITR: restore of the latest dump (new database)",
            [from_dump],
            " s",
        )
    )
    with instance.connect("postgres") as conn:
        for name in ("bench_at_latest", "bench_from_dump"):
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
