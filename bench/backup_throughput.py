"""Backup and restore throughput against the tools cairn drives, side by side in each run.

Each run times, one after the other on the same database:
  1. raw ``pg_dump`` (the exact command cairn runs) to /dev/null,
  2. the bare pipe ``pg_dump | restic backup --stdin`` into a repository of its own,
  3. a whole backup through the API (database only), POST until the row succeeded,
  4. plain single-process ``pg_restore --single-transaction`` of the same dump from a file,
  5. a full restore through the API (verify, restore beside, swap, verify) until it succeeded,
so every ratio compares figures taken minutes apart under the same load. The worker's peak
memory (worker process plus its pg_dump/restic children) is sampled during the backups.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from adapters import pg_dump
from adapters.restic import Repository, Restic
from bench.database import MB, Databases
from bench.figures import Figure, Report, activity_seconds
from bench.stack import PeakRss, Stack, timed


def _pipe(db: pg_dump.PgTarget, repo: Repository) -> None:
    """The two tools alone, as a shell would pipe them."""
    dump = subprocess.Popen(
        pg_dump.dump_command(db, pg_dump.tool("pg_dump", None)),
        env=pg_dump.environment(db),
        stdout=subprocess.PIPE,
    )
    env = {**os.environ, "RESTIC_PASSWORD": repo.password}
    subprocess.run(
        [
            "restic",
            "--repo",
            str(repo.path),
            "--compression",
            "auto",
            "backup",
            "--stdin",
            "--stdin-filename",
            "database.dump",
            "--quiet",
        ],
        stdin=dump.stdout,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    assert dump.stdout is not None
    dump.stdout.close()
    if dump.wait() != 0:
        raise SystemExit("pg_dump failed")


async def run(
    stack: Stack, dbs: Databases, work: Path, size_mb: int, runs: int, report: Report
) -> None:
    name = dbs.pgbench("big", size_mb)
    db = dbs.target(name)
    print(f"database {name}: {dbs.size(name) / MB:.0f} MiB", flush=True)
    app = await stack.new_app("big", dbs.url(name))
    restic = Restic()
    repo = Repository(path=work / "pipe-repo", password=uuid.uuid4().hex)
    restic.init(repo)
    dump_file = work / "database.dump"
    pg_dump_bin = pg_dump.tool("pg_dump", None)

    def dump_into(path: str | Path) -> None:
        with open(path, "wb") as out:
            subprocess.run(
                pg_dump.dump_command(db, pg_dump_bin),
                env=pg_dump.environment(db),
                stdout=out,
                check=True,
            )

    def plain_restore() -> None:
        scratch = dbs.create(f"{name}_plain_{uuid.uuid4().hex[:4]}")
        target = replace(db, dbname=scratch)
        try:
            with dump_file.open("rb") as source:
                subprocess.run(
                    pg_dump.restore_command(target, pg_dump.tool("pg_restore", None)),
                    env=pg_dump.environment(target),
                    stdin=source,
                    check=True,
                )
        finally:
            dbs.pg.drop_database(scratch)

    t_raw, t_pipe, t_api, peaks = [], [], [], []
    t_plain, t_restore = [], []
    steps: dict[str, list[float]] = defaultdict(list)
    restore_steps: dict[str, list[float]] = defaultdict(list)
    dump_size = 0
    for i in range(runs):
        print(f"run {i + 1}/{runs}", flush=True)
        t_raw.append(timed(lambda: dump_into(os.devnull)))
        t_pipe.append(timed(lambda: _pipe(db, repo)))
        with PeakRss(stack.worker_pid) as peak:
            elapsed, done = await stack.backup(app)
            await stack.workflow_closed(done["workflow_id"])
        t_api.append(elapsed)
        peaks.append(peak.peak / MB)
        dump_size = int(done["size_bytes"])
        for step, seconds in (await activity_seconds(stack.temporal, done["workflow_id"])).items():
            steps[step].append(seconds)
        print(
            f"  raw {t_raw[-1]:.2f} s, pipe {t_pipe[-1]:.2f} s, API {t_api[-1]:.2f} s,"
            f" peak {peaks[-1]:.0f} MiB",
            flush=True,
        )
        dump_into(dump_file)
        t_plain.append(timed(plain_restore))
        elapsed, restored = await stack.restore(app, done["id"])
        t_restore.append(elapsed)
        await stack.workflow_closed(restored["workflow_id"])
        for step, seconds in (
            await activity_seconds(stack.temporal, restored["workflow_id"])
        ).items():
            restore_steps[step].append(seconds)
        print(
            f"  plain pg_restore {t_plain[-1]:.2f} s, restore through the API"
            f" {t_restore[-1]:.2f} s",
            flush=True,
        )

    report.notes.append(
        f"backup rows: {size_mb} MiB pgbench database, dump {dump_size / MB:.0f} MiB"
    )
    report.add(Figure("raw_pg_dump_s", "raw pg_dump > /dev/null", t_raw, " s"))
    report.add(
        Figure(
            "backup_vs_pg_dump",
            "whole backup through the API / raw pg_dump",
            [a / r for a, r in zip(t_api, t_raw, strict=True)],
            "x",
            "<= 1.3x",
        )
    )
    report.add(
        Figure(
            "pipe_vs_pg_dump",
            "pg_dump | restic backup --stdin / raw pg_dump",
            [p / r for p, r in zip(t_pipe, t_raw, strict=True)],
            "x",
        )
    )
    report.add(Figure("plain_pg_restore_s", "plain single-process pg_restore", t_plain, " s"))
    report.add(
        Figure(
            "restore_vs_pg_restore",
            "full restore through the API / plain pg_restore",
            [a / p for a, p in zip(t_restore, t_plain, strict=True)],
            "x",
            "<= 0.8x",
        )
    )
    report.add(
        Figure(
            "worker_peak_mib",
            f"worker peak memory, {size_mb} MiB backup (with pg_dump and restic)",
            peaks,
            " MiB",
            "<= 300 MiB",
        )
    )
    for run, spent in (("backup", steps), ("restore", restore_steps)):
        print(f"  where the {run}'s seconds go (activity scheduled -> completed, medians):")
        for step, values in sorted(spent.items(), key=lambda kv: -max(kv[1])):
            print(f"    {step:<28} {Figure(step, step, values).shown()} s")
