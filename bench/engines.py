"""MariaDB and Redis backups through cairn against the raw tool, same data, same run.

    .venv/bin/python -m bench.engines [--quick]   # the engines alone
    .venv/bin/python -m bench.run --only engines  # also whole backups (make bench's rows)

MariaDB: ``mariadb-dump`` of a generated database to a file, against cairn's dump into a
fresh restic repository (rows counted on the way) and, under ``bench.run``, against a whole
backup through the API of an application whose only database it is (POST until the row
succeeded: begin, quota check, the dump, manifest, record). Redis: ``redis-cli --rdb`` to a
file, against the same two (the RDB into restic, then loaded by a scratch server for its key
counts). Each run times the three one after the other, so every ratio compares figures taken
seconds apart. The MariaDB server is the machine's (127.0.0.1:3306, root); Redis is a server
of this bench (``repl-diskless-sync-delay 0``: a default Redis 7 waits 5 s more before it
sends an RDB, to raw ``redis-cli --rdb`` and cairn alike). Ends with ``RESULT`` lines;
everything it made is removed.
"""

from __future__ import annotations

import argparse
import asyncio
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
from bench.stack import Stack


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _repository(work: Path) -> Repository:
    repo = Repository(work / f"repo-{uuid.uuid4().hex[:8]}", secrets.token_hex(16))
    Restic().init(repo)
    return repo


def _against_raw(
    report: Report, key: str, label: str, values: list[float], raw: list[float], versus: str
) -> None:
    """``values`` (seconds), and their ratios to the raw tool's seconds of the same runs."""
    report.add(Figure(f"{key}_s", label, values, " s"))
    ratios = [o / r for o, r in zip(values, raw, strict=True)]
    report.add(Figure(f"{key}_vs_{versus}", f"{label} / raw", ratios, "x"))


async def mariadb_rows(
    work: Path, megabytes: int, runs: int, report: Report, stack: Stack | None = None
) -> None:
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
        url = f"mysql://root@127.0.0.1:3306/{target.dbname}"
        app = await stack.new_app("mariadb", None, databases={"shop": url}) if stack else None
        raw: list[float] = []
        ours: list[float] = []
        whole: list[float] = []
        for _ in range(runs):
            raw.append(_seconds(lambda: subprocess.run(raw_argv, check=True)))
            repo = _repository(work)  # made before the clock starts
            ours.append(
                _seconds(functools.partial(mariadb.dump_into_restic, target, Restic(), repo, []))
            )
            if stack is not None and app is not None:
                whole.append((await stack.backup(app))[0])
        report.add(Figure("mariadb_raw_dump_s", "MariaDB: raw mariadb-dump to a file", raw, " s"))
        label = "MariaDB: cairn's dump into restic"
        _against_raw(report, "mariadb_backup", label, ours, raw, "dump")
        if whole:
            label = "MariaDB: a whole backup of the application"
            _against_raw(report, "mariadb_app_backup", label, whole, raw, "dump")
        report.notes.append(f"MariaDB database: {rows} rows, dump {out.stat().st_size >> 20} MiB")
    finally:
        mariadb.query(root, f"DROP DATABASE IF EXISTS {target.dbname}")


async def redis_rows(
    work: Path, megabytes: int, runs: int, report: Report, stack: Stack | None = None
) -> None:
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
            "redis-cli", "-p", str(server.port), "--no-auth-warning", "--rdb",
            str(work / "raw.rdb"),
        ]  # fmt: skip
        url = f"redis://:{server.password}@127.0.0.1:{server.port}"
        app = await stack.new_app("redis", None, databases={"cache": url}) if stack else None
        raw: list[float] = []
        ours: list[float] = []
        whole: list[float] = []
        for _ in range(runs):
            raw.append(
                _seconds(
                    lambda: subprocess.run(
                        raw_argv, env=redis._env(server.password), check=True, capture_output=True
                    )
                )
            )
            repo = _repository(work)  # made before the clock starts
            ours.append(
                _seconds(functools.partial(redis.dump_into_restic, target, Restic(), repo, []))
            )
            if stack is not None and app is not None:
                whole.append((await stack.backup(app))[0])
    report.add(Figure("redis_raw_rdb_s", "Redis: raw redis-cli --rdb to a file", raw, " s"))
    label = "Redis: cairn's RDB into restic + key counts"
    _against_raw(report, "redis_backup", label, ours, raw, "rdb")
    if whole:
        label = "Redis: a whole backup of the application"
        _against_raw(report, "redis_app_backup", label, whole, raw, "rdb")
    report.notes.append(f"Redis dataset: {keys} keys of 1 KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 MiB instead of 256 MiB")
    args = parser.parse_args()
    megabytes, runs = (16, 2) if args.quick else (256, 3)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="cairn-bench-engines-") as folder:
        asyncio.run(mariadb_rows(Path(folder), megabytes, runs, report))
        asyncio.run(redis_rows(Path(folder), megabytes, runs, report))
    report.print()


if __name__ == "__main__":
    main()
