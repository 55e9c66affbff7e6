"""Repository growth over 7 daily backups, through the adapter cairn dumps with.

Two kinds of change between the days:
  * append-mostly: 1 % new rows a day and 0.2 % updates of recent rows (an order book),
  * uniform: 2 % of the rows updated at random a day (pgbench_accounts),
compared with one full backup's size in the same repository, and for the uniform case with
what seven gzip'd ``pg_dump -Fc`` files would take.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from adapters import pg_dump
from adapters.restic import Repository, Restic
from bench.database import MB, Databases
from bench.figures import Figure, Report

DAYS = 7


def _bytes(folder: Path) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _dirs, names in os.walk(folder)
        for name in names
    )


def _daily(
    dbs: Databases, name: str, work: Path, change: list[str], gzip_dumps: bool
) -> tuple[list[int], list[int]]:
    """Repository size after each day's backup, and each day's gzip'd dump size."""
    restic = Restic()
    repo = Repository(path=work / f"growth-{name}", password=uuid.uuid4().hex)
    restic.init(repo)
    target = dbs.target(name)
    sizes, gzipped = [], []
    for day in range(DAYS):
        if day:
            dbs.execute(name, *change)
        pg_dump.dump_into_restic(target, restic, repo, [f"day={day}"])
        sizes.append(_bytes(repo.path))
        if gzip_dumps:
            out = work / "gzip.dump"
            command = [
                pg_dump.tool("pg_dump", None),
                "--format=custom",
                f"--dbname={pg_dump.conninfo(target)}",
                f"--file={out}",
            ]
            subprocess.run(command, env=pg_dump.environment(target), check=True)
            gzipped.append(out.stat().st_size)
            out.unlink()
    return sizes, gzipped


def run(dbs: Databases, work: Path, append_mb: int, uniform_scale: int, report: Report) -> None:
    rows = max(10_000, append_mb * MB // 120)  # about 120 bytes a row on disk
    name = dbs.create(dbs.name("append"))
    dbs.execute(
        name,
        "CREATE TABLE orders (id bigserial PRIMARY KEY, customer int, status text,"
        " total numeric, note text, placed timestamptz DEFAULT now())",
        f"INSERT INTO orders (customer, status, total, note) SELECT (random()*1e5)::int, 'new',"
        f" round((random()*500)::numeric, 2), md5(i::text) FROM generate_series(1, {rows}) i",
    )
    new, updated = rows // 100, rows // 500
    sizes, _ = _daily(
        dbs,
        name,
        work,
        [
            f"INSERT INTO orders (customer, status, total, note) SELECT (random()*1e5)::int, 'new',"
            f" round((random()*500)::numeric, 2), md5(random()::text)"
            f" FROM generate_series(1, {new})",
            f"UPDATE orders SET status = 'shipped' WHERE id IN (SELECT id FROM orders"
            f" ORDER BY id DESC LIMIT {updated * 3}) AND random() < 0.34",
        ],
        gzip_dumps=False,
    )
    print(
        f"  append-mostly ({rows} rows): repository after each day (MiB):"
        f" {[round(s / MB, 1) for s in sizes]}",
        flush=True,
    )
    report.add(
        Figure(
            "growth_append_7d",
            f"repository after {DAYS} daily backups / one full, append-mostly",
            [sizes[-1] / sizes[0]],
            "x",
            "<= 1.5x",
        )
    )

    name = dbs.pgbench("uniform", uniform_scale * 15)
    accounts = uniform_scale * 100_000
    sizes, gzipped = _daily(
        dbs,
        name,
        work,
        [
            f"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid IN"
            f" (SELECT 1 + (random() * {accounts - 1})::int"
            f" FROM generate_series(1, {accounts // 50}))",
        ],
        gzip_dumps=True,
    )
    print(
        f"  uniform ({accounts} rows, {dbs.size(name) / MB:.0f} MiB): repository after each day"
        f" (MiB): {[round(s / MB, 1) for s in sizes]}",
        flush=True,
    )
    report.add(
        Figure(
            "growth_uniform_7d",
            f"repository after {DAYS} daily backups / one full, uniform 2% updates",
            [sizes[-1] / sizes[0]],
            "x",
            "report",
        )
    )
    report.add(
        Figure(
            "growth_uniform_gzip_7d",
            f"{DAYS} gzip'd pg_dump -Fc files / one",
            [sum(gzipped) / gzipped[0]],
            "x",
        )
    )
