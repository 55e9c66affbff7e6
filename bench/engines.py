"""MariaDB and Redis backups through cairn's engines against the raw tool, same data, same run.

    .venv/bin/python -m bench.engines [--quick]

MariaDB: ``mariadb-dump`` of a generated database to a file, against cairn's dump into a
fresh restic repository (rows counted on the way). Redis: ``redis-cli --rdb`` to a file,
against cairn's (the RDB into restic, then loaded by a scratch server for its key counts).
The MariaDB server is the machine's (127.0.0.1:3306, root); Redis is a server of this bench.
Ends with ``RESULT`` lines; everything it made is removed.
"""

from __future__ import annotations

import argparse
import functools
import secrets
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from adapters.engines import mariadb, redis
from adapters.engines.mariadb import MariaTarget
from adapters.engines.redis import RedisTarget
from adapters.restic import Repository, Restic
from bench.figures import Figure, Report


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _backups(work: Path, runs: int, backup: Callable[[Repository], object]) -> list[float]:
    """Seconds of ``backup`` into a repository made beforehand (not timed), ``runs`` times."""
    repos = [_repository(work) for _ in range(runs)]
    return [_seconds(functools.partial(backup, repo)) for repo in repos]


def _repository(work: Path) -> Repository:
    repo = Repository(work / f"repo-{uuid.uuid4().hex[:8]}", secrets.token_hex(16))
    Restic().init(repo)
    return repo


def mariadb_rows(work: Path, megabytes: int, runs: int, report: Report) -> None:
    root = MariaTarget("127.0.0.1", 3306, "root", "mysql")
    target = root.named(f"cairn_bench_{uuid.uuid4().hex[:8]}")
    rows = megabytes * 1024 * 1024 // 300
    mariadb.query(root, f"CREATE DATABASE {target.dbname}")
    try:
        mariadb.query(
            target,
            "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100), data VARBINARY(200));"
            f" INSERT INTO items SELECT seq, REPEAT(MD5(seq), 2), RANDOM_BYTES(200)"
            f" FROM seq_1_to_{rows}",
            database=target.dbname,
        )
        out = work / "raw.sql"
        raw_argv = [
            "mariadb-dump", "--host", "127.0.0.1", "--user", "root", "--single-transaction",
            "--quick", "--hex-blob", f"--result-file={out}", target.dbname,
        ]  # fmt: skip
        raw = [_seconds(lambda: subprocess.run(raw_argv, check=True)) for _ in range(runs)]
        ours = [
            _seconds(lambda: mariadb.dump_into_restic(target, Restic(), _repository(work), []))
            for _ in range(runs)
        ]
        report.add(Figure("mariadb_raw_dump_s", "MariaDB: raw mariadb-dump to a file", raw, " s"))
        report.add(Figure("mariadb_backup_s", "MariaDB: cairn's dump into restic", ours, " s"))
        report.add(
            Figure(
                "mariadb_backup_vs_dump",
                "MariaDB: backup / raw mariadb-dump",
                [o / r for o, r in zip(ours, raw, strict=True)],
                "x",
            )
        )
        report.notes.append(f"MariaDB database: {rows} rows, dump {out.stat().st_size >> 20} MiB")
    finally:
        mariadb.query(root, f"DROP DATABASE IF EXISTS {target.dbname}")


def redis_rows(work: Path, megabytes: int, runs: int, report: Report) -> None:
    keys = megabytes * 1024 * 1024 // 1100
    folder = work / "redis"
    folder.mkdir()
    with redis.scratch_server(folder, password=secrets.token_urlsafe(16)) as server:
        commands = "".join(
            f"SET key:{i} {secrets.token_hex(512)}\r\n" for i in range(keys)
        ).encode()
        subprocess.run(
            ["redis-cli", "-p", str(server.port), "--no-auth-warning", "--pipe"],
            input=commands,
            env=redis._env(server.password),
            check=True,
            capture_output=True,
        )
        target = RedisTarget("127.0.0.1", server.port, password=server.password)
        raw_argv = [
            "redis-cli",
            "-p",
            str(server.port),
            "--no-auth-warning",
            "--rdb",
            str(work / "raw.rdb"),
        ]
        raw = [
            _seconds(
                lambda: subprocess.run(
                    raw_argv, env=redis._env(server.password), check=True, capture_output=True
                )
            )
            for _ in range(runs)
        ]
        ours = _backups(work, runs, lambda repo: redis.dump_into_restic(target, Restic(), repo, []))
    report.add(Figure("redis_raw_rdb_s", "Redis: raw redis-cli --rdb to a file", raw, " s"))
    report.add(Figure("redis_backup_s", "Redis: cairn's RDB into restic + key counts", ours, " s"))
    report.add(
        Figure(
            "redis_backup_vs_rdb",
            "Redis: backup / raw redis-cli --rdb",
            [o / r for o, r in zip(ours, raw, strict=True)],
            "x",
        )
    )
    report.notes.append(f"Redis dataset: {keys} keys of 1 KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 MiB instead of 256 MiB")
    args = parser.parse_args()
    megabytes, runs = (16, 2) if args.quick else (256, 3)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="cairn-bench-engines-") as folder:
        mariadb_rows(Path(folder), megabytes, runs, report)
        redis_rows(Path(folder), megabytes, runs, report)
    report.print()


if __name__ == "__main__":
    main()
