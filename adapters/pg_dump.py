"""PostgreSQL dumps streamed into restic and restored from it, without a temporary file.

``pg_dump``'s stdout is restic's stdin and ``restic dump``'s stdout is ``pg_restore``'s
stdin: the kernel's pipe buffer is all the dump ever occupies on this side, whatever the
database size. Dumps are written uncompressed (``--compress=0``): restic compresses
them itself (zstd) and, unlike a zlib stream, an uncompressed dump deduplicates against
the previous night's, so unchanged tables cost almost nothing.

A dump's figures (row counts per table, database size) are read inside the very
snapshot pg_dump dumps: a read-only repeatable-read transaction exports its snapshot,
locks every table against DDL, and stays open while ``pg_dump --snapshot`` runs; the exact
counts run on that transaction *while* pg_dump streams, instead of as a full read of every
table before it. A restore verified against those figures matches even when the
application wrote during the backup.

Restores stream ``restic dump`` into a single-transaction ``pg_restore`` for small dumps;
a larger dump is first staged on local disk (when the disk has room for it and a reserve)
so that ``pg_restore --jobs`` can load tables and build indexes in parallel.

Connection settings go into a libpq conninfo string; the password only into
``PGPASSWORD`` of the child's environment (or the keyword argument of our own psycopg
connection). Everything here blocks; Temporal activities call it through
``asyncio.to_thread``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any, Final

import psycopg
from psycopg.conninfo import make_conninfo

from adapters.errors import AdapterError
from adapters.pg_identity import DatabaseIdentity, refuse_current
from adapters.restic import BackupResult, Progress, Repository, Restic, ResticError
from repository import names

logger = logging.getLogger(__name__)

# Seconds libpq waits for a connection; without it an unreachable host hangs for minutes.
_CONNECT_TIMEOUT: Final = "15"

# Failures that the same command meets again however often it runs.
_PERMANENT: Final = re.compile(
    r"database \"[^\"]*\" does not exist"
    r"|role \"[^\"]*\" does not exist"
    r"|password authentication failed"
    r"|no password supplied"
    r"|(?:Peer|Ident) authentication failed"
    r"|no pg_hba\.conf entry"
    r"|server version mismatch"
    r"|permission denied"
    r"|input file (?:is too short|does not appear to be a valid archive)"
    r"|unsupported version .* in file header"
)
# Server errors that depend on the moment: locks, conflicts, a restarting server.
_TRANSIENT_SQL: Final = re.compile(
    r"deadlock detected"
    r"|could not obtain lock"
    r"|could not serialize access"
    r"|canceling statement due to"
    r"|terminating connection"
    r"|out of memory"
    # pg_dump could not import the snapshot: its exporting session ended early.
    r"|invalid snapshot identifier"
)


def _retryable(stderr: str) -> bool:
    """Server-side SQL errors ("ERROR:") repeat, bar a few; connection trouble may pass."""
    if _PERMANENT.search(stderr):
        return False
    if _TRANSIENT_SQL.search(stderr):
        return True
    return "ERROR:" not in stderr


# Restores of dumps smaller than this stream into one transaction: staging them and starting
# parallel workers costs more than it saves (bench/ measures the trade-off).
PARALLEL_RESTORE_MIN_BYTES: Final = 64 * 1024 * 1024
# Free space a staged dump must leave on its file system: the larger of these.
STAGING_RESERVE_BYTES: Final = 1024**3
STAGING_RESERVE_FRACTION: Final = 0.05

# Every user table, quoted for SQL, to lock them all in one statement.
_TABLES_SQL: Final = """
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
ORDER BY 1
"""

# count(*) of every user table in one statement, through query_to_xml's dynamic SQL.
_COUNTS_SQL: Final = """
SELECT format('%s.%s', n.nspname, c.relname),
       (xpath('/row/n/text()',
              query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
                           false, true, '')))[1]::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
ORDER BY 1
"""


@dataclass(frozen=True)
class DatabaseDump(BackupResult):
    """A dump's restic snapshot plus figures read in the same database snapshot as pg_dump.

    ``row_counts`` has the keys and values :func:`table_row_counts` gives for the restored
    database, so a restore of this dump verifies against them exactly.
    """

    row_counts: dict[str, int]
    database_size_bytes: int
    server_major: int


@dataclass(frozen=True)
class PgTarget:
    """A database to dump or restore into; ``host`` may be a Unix socket directory."""

    host: str
    port: int
    user: str | None
    dbname: str
    password: str | None = field(repr=False)
    # Databases never to read or write whatever this target's address says (pg_identity.py);
    # the server's system databases and any database carrying cairn's marker are refused too.
    protect: tuple[DatabaseIdentity, ...] = ()


class DumpError(AdapterError):
    """Dumping a database into restic, or restoring one from it, failed."""


def _clean(text: str, target: PgTarget) -> str:
    """The tools never print the password; make sure a message cannot carry it anyway.

    Their first error is the cause (pg_restore lists the ones that follow from it), so a
    long text keeps its start (``AdapterError`` shortens it and logs the whole)."""
    text = text.strip()
    if target.password and target.password in text:
        text = text.replace(target.password, "********")
    return text or "no message"


def _failure(what: str, exit_code: int, stderr: str, target: PgTarget) -> DumpError:
    return DumpError(
        f"{what} failed (exit {exit_code}): {_clean(stderr, target)}",
        retryable=_retryable(stderr),
    )


def _restic_failure(what: str, exc: ResticError) -> DumpError:
    return DumpError(f"{what}: {exc.message}", retryable=exc.retryable)


def tool(name: str, bin_dir: Path | None) -> str:
    """The path of a PostgreSQL client program: in ``bin_dir`` if given, else on PATH."""
    if bin_dir is not None:
        path = bin_dir / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise DumpError(
                f"{name} not found in {bin_dir} (CAIRN_PG_BIN_DIR); install the PostgreSQL "
                "client of the application database's major version there",
                retryable=False,
            )
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise DumpError(
            f"{name} not found on PATH; install the PostgreSQL client programs or set "
            "CAIRN_PG_BIN_DIR",
            retryable=False,
        )
    return found


@functools.lru_cache(maxsize=16)
def client_major(binary: str) -> int:
    """The major version of a client program, from ``--version`` (asked once per process)."""
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DumpError(f"cannot run {binary}: {exc}", retryable=False) from None
    match = re.search(r"\(PostgreSQL\) (\d+)", done.stdout)
    if done.returncode != 0 or match is None:
        raise DumpError(
            f"cannot tell the version of {binary}: {done.stdout.strip()} {done.stderr.strip()}",
            retryable=False,
        )
    return int(match.group(1))


def conninfo(target: PgTarget) -> str:
    """The libpq connection string for ``target``, password left out."""
    return make_conninfo(
        "",
        host=target.host,
        port=target.port,
        user=target.user,
        dbname=target.dbname,
        application_name="cairn",
    )


def environment(target: PgTarget) -> dict[str, str]:
    """The client programs' environment: the only place the password goes."""
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    env.setdefault("PGCONNECT_TIMEOUT", _CONNECT_TIMEOUT)
    if target.password:
        env["PGPASSWORD"] = target.password
    return env


def dump_command(target: PgTarget, pg_dump: str, snapshot: str | None = None) -> list[str]:
    """The pg_dump command line, also what ``bench/`` measures a dump alone with.

    ``snapshot`` is an exported snapshot id: pg_dump then reads exactly what its
    exporter's transaction sees.
    """
    argv = [pg_dump, "--format=custom", "--compress=0", "--no-password"]
    if snapshot is not None:
        argv.append(f"--snapshot={snapshot}")
    return [*argv, f"--dbname={conninfo(target)}"]


def restore_command(
    target: PgTarget, pg_restore: str, archive: Path | None = None, jobs: int = 1
) -> list[str]:
    """pg_restore reading the archive from stdin, all or nothing; or from a file, in parallel.

    ``--jobs`` needs a seekable archive and cannot share one transaction; it restores into a
    fresh staging database that only replaces anything once the whole restore succeeded.
    """
    argv = [pg_restore, "--clean", "--if-exists", "--no-owner", "--no-password"]
    if archive is None or jobs <= 1:
        argv.append("--single-transaction")
    else:
        argv += [f"--jobs={jobs}", "--exit-on-error"]
    argv.append(f"--dbname={conninfo(target)}")
    return argv if archive is None else [*argv, str(archive)]


def _psql(target: PgTarget, psql: str, query: str, columns: int) -> list[list[str]]:
    """Rows of one read-only query; NUL separators, since names may hold any other byte."""
    argv = [psql, "-X", "-A", "-t", "-q", "-z", "-0", "--no-password", "--single-transaction"]
    argv += ["-v", "ON_ERROR_STOP=1", "-c", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"]
    argv += ["-c", query, f"--dbname={conninfo(target)}"]
    try:
        done = subprocess.run(
            argv,
            env=environment(target),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    except OSError as exc:
        raise DumpError(f"cannot run {psql}: {exc}", retryable=False) from None
    if done.returncode != 0:
        raise _failure("psql", done.returncode, done.stderr.decode(errors="replace"), target)
    fields = done.stdout.decode().split("\0")[:-1]
    return [fields[i : i + columns] for i in range(0, len(fields), columns)]


def server_info(target: PgTarget, psql: str) -> tuple[int, int]:
    """(server major version, database size in bytes)."""
    rows = _psql(
        target,
        psql,
        "SELECT current_setting('server_version_num')::int / 10000,"
        " pg_database_size(current_database())",
        2,
    )
    return int(rows[0][0]), int(rows[0][1])


def table_row_counts(target: PgTarget, psql: str) -> dict[str, int]:
    """Exact row counts of every user table, read in one snapshot, to verify a restore.

    The same statement as :func:`dump_into_restic`'s counts, so the keys always agree.
    """
    return {name: int(count) for name, count in _psql(target, psql, _COUNTS_SQL, 2)}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _read_start(errors: IO[bytes]) -> str:
    """The first 64 KiB the tool wrote: its first error, the cause, is there."""
    errors.seek(0)
    return errors.read(64 * 1024).decode(errors="replace")


@dataclass(frozen=True)
class _Snapshot:
    snapshot_id: str
    database_size_bytes: int


def _sql_failure(what: str, exc: psycopg.Error, target: PgTarget) -> DumpError:
    """Connection trouble and conflicts (OperationalError) may pass; other SQL errors repeat."""
    message = str(exc)
    retryable = isinstance(exc, psycopg.OperationalError) and not _PERMANENT.search(message)
    return DumpError(f"{what} failed: {_clean(message, target)}", retryable=retryable)


@contextmanager
def _connection(target: PgTarget) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An autocommit psycopg connection to ``target``, closed (rolled back) on leaving."""
    try:
        conn = psycopg.connect(
            conninfo(target),
            # "" rather than None: the worker's own PGPASSWORD must not apply, as for the tools
            password=target.password or "",
            connect_timeout=int(_CONNECT_TIMEOUT),
            autocommit=True,
        )
    except psycopg.Error as exc:
        raise _sql_failure("connecting to the database", exc, target) from None
    try:
        try:
            # Like pg_dump for its own session, before the first query: a server or role
            # default must not cut the identity check or a long count short, nor end the
            # transaction that idles for the whole dump.
            conn.execute("SET statement_timeout = 0")
            conn.execute("SET idle_in_transaction_session_timeout = 0")
            if conn.info.server_version >= 170000:
                conn.execute("SET transaction_timeout = 0")
        except psycopg.Error as exc:
            raise _sql_failure("preparing the session", exc, target) from None
        yield conn
    finally:
        conn.close()


def _export_snapshot(conn: psycopg.Connection[tuple[Any, ...]], target: PgTarget) -> _Snapshot:
    """Opens the snapshot pg_dump will import, locks every table, reads the database size.

    The transaction stays open on ``conn``: the snapshot exists only while it does, and
    its ACCESS SHARE locks keep DDL away until pg_dump has its own (a catalog-only step:
    nothing is read from the tables).
    """
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    except psycopg.Error as exc:
        raise _sql_failure("preparing the dump's transaction", exc, target) from None
    try:
        exported = conn.execute("SELECT pg_export_snapshot()").fetchone()
    except psycopg.Error as exc:
        failure = _sql_failure("exporting a snapshot for pg_dump", exc, target)
        raise DumpError(
            f"{failure.message}. cairn reads the backup's row counts in the snapshot pg_dump "
            "dumps, so it needs pg_export_snapshot(); a standby before PostgreSQL 10 cannot "
            "export one: back up from the primary or a newer server",
            retryable=failure.retryable,
        ) from None
    assert exported is not None
    try:
        tables = [str(name) for (name,) in conn.execute(_TABLES_SQL).fetchall()]
        if tables:
            conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS SHARE MODE".encode())
        sized = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    except psycopg.Error as exc:
        raise _sql_failure("locking the tables to back up", exc, target) from None
    assert sized is not None
    return _Snapshot(str(exported[0]), int(sized[0]))


def _count_rows(conn: psycopg.Connection[tuple[Any, ...]], target: PgTarget) -> dict[str, int]:
    """Exact row counts in the exported snapshot (one statement, whatever the table count)."""
    try:
        return {str(name): int(n) for name, n in conn.execute(_COUNTS_SQL).fetchall()}
    except psycopg.Error as exc:
        raise _sql_failure("counting the rows to back up", exc, target) from None


def _against_size(
    progress: Callable[[Progress], None] | None, size: int
) -> Callable[[Progress], None] | None:
    """restic cannot know a stream's total; the database size stands in (a dump is smaller:
    it holds no indexes), so the figure stays under 100 % until the dump ends."""
    if progress is None:
        return None

    def report(p: Progress) -> None:
        done = min(p.bytes_done, size)
        percent = min(99.0, 100.0 * done / size) if size else 0.0
        progress(replace(p, total_bytes=size, percent=percent))

    return report


def dump_into_restic(
    target: PgTarget,
    restic: Restic,
    repo: Repository,
    tags: Sequence[str],
    *,
    bin_dir: Path | None = None,
    filename: str = names.DATABASE_FILE,
    progress: Callable[[Progress], None] | None = None,
) -> DatabaseDump:
    """Dumps ``target`` into a new snapshot holding ``/{filename}``; nothing partial stays.

    The returned row counts and size are read in the snapshot pg_dump dumps (see the
    module's docstring), so they describe the dump exactly even under concurrent writes.
    A pg_dump older than the server refuses to dump it, so that is checked first and
    reported with both versions. When pg_dump fails halfway, restic has already stored
    what came before: that snapshot is forgotten, or a retry would take it for a backup.
    """
    pg_dump = tool("pg_dump", bin_dir)
    major = client_major(pg_dump)
    with _connection(target) as conn:
        try:  # judged on the connection pg_dump's snapshot comes from, not by the address
            refuse_current(conn, target.protect)
        except psycopg.Error as exc:
            raise _sql_failure("telling which database this is", exc, target) from None
        server_major = conn.info.server_version // 10000
        if major < server_major:
            raise DumpError(
                f"pg_dump {major} cannot dump a PostgreSQL {server_major} server; point "
                f"CAIRN_PG_BIN_DIR at the PostgreSQL {server_major} client programs",
                retryable=False,
            )
        snapshot = _export_snapshot(conn, target)
        if progress is not None:  # a figure from the start, before restic's first status
            progress(Progress(0, snapshot.database_size_bytes, 0, 0, 0.0))
        command = dump_command(target, pg_dump, snapshot.snapshot_id)
        # The counts run on the exporting transaction while pg_dump streams; that
        # transaction stays open until both have finished.
        with ThreadPoolExecutor(1, thread_name_prefix="cairn-counts") as pool:
            counting = pool.submit(_count_rows, conn, target)
            try:
                result = _stream_into_restic(
                    command,
                    target,
                    restic,
                    repo,
                    tags,
                    filename=filename,
                    progress=_against_size(progress, snapshot.database_size_bytes),
                )
            except BaseException:
                conn.cancel_safe()
                raise
            try:
                row_counts = counting.result()
            except DumpError:
                restic.forget(repo, [result.snapshot_id])  # its figures are unknown
                raise
    stored = {f.name: getattr(result, f.name) for f in fields(BackupResult)}
    return DatabaseDump(
        **stored,
        row_counts=row_counts,
        database_size_bytes=snapshot.database_size_bytes,
        server_major=server_major,
    )


def _stream_into_restic(
    command: list[str],
    target: PgTarget,
    restic: Restic,
    repo: Repository,
    tags: Sequence[str],
    *,
    filename: str,
    progress: Callable[[Progress], None] | None,
) -> BackupResult:
    """Runs ``command`` (pg_dump) into ``restic backup --stdin``; forgets a partial snapshot."""
    pg_dump = command[0]
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                command,
                env=environment(target),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        except OSError as exc:
            raise DumpError(f"cannot run {pg_dump}: {exc}", retryable=False) from None
        assert proc.stdout is not None
        result: BackupResult | None = None
        restic_error: ResticError | None = None
        try:
            result = restic.backup_stdin(repo, proc.stdout, filename, tags, progress=progress)
        except ResticError as exc:
            restic_error = exc
        except BaseException:
            proc.stdout.close()
            _stop(proc)
            raise
        # Closing our end lets pg_dump fail on a broken pipe if restic stopped reading.
        proc.stdout.close()
        exit_code = proc.wait()
        stderr = _read_start(errors)

    if exit_code != 0:
        failure = _failure("pg_dump", exit_code, stderr, target)
        if result is not None:
            try:
                restic.forget(repo, [result.snapshot_id])
            except ResticError as exc:
                raise DumpError(
                    f"{failure.message}; discarding its partial snapshot "
                    f"{result.snapshot_id} failed too: {exc.message}",
                    retryable=exc.retryable,
                ) from exc
        broken_pipe = exit_code == -signal.SIGPIPE or "Broken pipe" in stderr
        if restic_error is None or not broken_pipe:
            raise failure
    if restic_error is not None:
        raise _restic_failure(
            "storing the dump in the repository failed", restic_error
        ) from restic_error
    assert result is not None
    return result


def restore_from_restic(
    target: PgTarget,
    restic: Restic,
    repo: Repository,
    snapshot_id: str,
    *,
    bin_dir: Path | None = None,
    filename: str = names.DATABASE_FILE,
    size_hint: int | None = None,
    staging_dir: Path | None = None,
    jobs: int = 1,
) -> None:
    """Restores a dump into ``target``, which must be a fresh database (or one to replace).

    The dump's size (``size_hint``, else read from the snapshot's tree) chooses how: see
    :func:`restore_plan`.
    Streamed, the restore is one transaction and a failure leaves ``target`` unchanged;
    staged and parallel, a failure leaves ``target`` partly restored, so callers restore
    into a staging database that is renamed into place only after success (and dropped, or
    restored again from scratch, otherwise).
    """
    pg_restore = tool("pg_restore", bin_dir)
    folder = staging_dir or Path(tempfile.gettempdir())
    if size_hint is None and restore_plan(PARALLEL_RESTORE_MIN_BYTES, folder, jobs) > 1:
        try:
            size_hint = restic.file_size(repo, snapshot_id, filename)
        except ResticError as exc:
            raise _restic_failure(
                "reading the dump's size from the repository failed", exc
            ) from exc
    parallel = restore_plan(size_hint, folder, jobs)
    if parallel <= 1:
        _restore_streamed(target, restic, repo, snapshot_id, pg_restore, filename)
    else:
        with tempfile.TemporaryDirectory(prefix="cairn-restore-", dir=folder) as tmp:
            archive = Path(tmp) / names.DATABASE_FILE
            _stage(restic, repo, snapshot_id, filename, archive)
            command = restore_command(target, pg_restore, archive, parallel)
            exit_code, stderr = _run_restore(command, target, None)
            if exit_code != 0:
                raise _failure("pg_restore", exit_code, stderr, target)
    logger.info(
        "restored snapshot %s into database %s (%d jobs)", snapshot_id, target.dbname, parallel
    )


def restore_plan(size_hint: int | None, staging_dir: Path, jobs: int) -> int:
    """How many pg_restore jobs a dump of ``size_hint`` bytes gets; 1 means streamed.

    Parallel restore needs the archive staged on local disk, which costs writing it once
    (measured: about half of a plain restore's time for a 666 MiB dump), so it is asked
    for (``jobs``, CAIRN_RESTORE_JOBS), never assumed, and only taken above
    :data:`PARALLEL_RESTORE_MIN_BYTES`. The staged copy must fit with a reserve left (5 %
    of the file system, at least 1 GiB); otherwise the restore streams, using no disk.
    """
    if jobs <= 1 or size_hint is None or size_hint < PARALLEL_RESTORE_MIN_BYTES:
        return 1
    try:
        disk = shutil.disk_usage(staging_dir)
    except OSError:
        return 1
    reserve = max(STAGING_RESERVE_BYTES, int(disk.total * STAGING_RESERVE_FRACTION))
    return jobs if disk.free - size_hint >= reserve else 1


def _stage(
    restic: Restic, repo: Repository, snapshot_id: str, filename: str, archive: Path
) -> None:
    """``restic dump`` straight into ``archive`` (no copy through Python)."""
    with archive.open("wb") as out:
        dump = restic.dump(repo, snapshot_id, filename, into=out)
        try:
            restic.finish_dump(repo, dump)
        except ResticError as exc:
            raise _restic_failure("reading the dump from the repository failed", exc) from exc
        except BaseException:
            _stop(dump)
            raise


def _run_restore(command: list[str], target: PgTarget, stdin: IO[bytes] | None) -> tuple[int, str]:
    """Runs pg_restore to its end: (exit code, the tail of its stderr)."""
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                command,
                env=environment(target),
                stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        except OSError as exc:
            raise DumpError(f"cannot run {command[0]}: {exc}", retryable=False) from None
        finally:
            if stdin is not None:
                stdin.close()  # pg_restore holds its own copy; restic must see it go
        try:
            exit_code = proc.wait()
        except BaseException:
            _stop(proc)
            raise
        return exit_code, _read_start(errors)


def _restore_streamed(
    target: PgTarget,
    restic: Restic,
    repo: Repository,
    snapshot_id: str,
    pg_restore: str,
    filename: str,
) -> None:
    """``restic dump`` piped into a single-transaction pg_restore: nothing touches the disk."""
    dump = restic.dump(repo, snapshot_id, filename)
    assert dump.stdout is not None
    try:
        exit_code, stderr = _run_restore(restore_command(target, pg_restore), target, dump.stdout)
    except BaseException:
        _stop(dump)
        raise
    try:
        restic.finish_dump(repo, dump)
    except ResticError as exc:
        # restic's failure is the cause unless it only lost its reader.
        lost_reader = exc.exit_code == -signal.SIGPIPE or "broken pipe" in exc.message.lower()
        if exit_code == 0 or not lost_reader:
            raise _restic_failure("reading the dump from the repository failed", exc) from exc
    if exit_code != 0:
        raise _failure("pg_restore", exit_code, stderr, target)
