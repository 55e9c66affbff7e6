"""WAL streamed by ``pg_receivewal`` over a replication slot, shipped into the repository.

The slot makes the server keep WAL the archiver has not flushed, so nothing is lost while
the archiver is down; the server's ``max_slot_wal_keep_size`` is what bounds it (read and
reported, never changed: the server is the application's). A shipment is one restic
snapshot of the segments completed since the last one plus a copy of the current
``.partial``, tagged with the server time up to which every commit is inside it: that time
is read first, then the server's insert position, and the shipment waits until the slot
confirms that position flushed to the spool.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from adapters.pg_archive.window import (
    SEGMENT_BYTES,
    SEGMENT_NAME,
    Shipment,
    parse_lsn,
    segment_number,
    stamp,
)
from adapters.pg_dump import DumpError, PgTarget, conninfo, environment, tool
from adapters.pg_identity import (
    SYSTEM_DATABASES,
    DatabaseIdentity,
    ProtectedDatabase,
    refuse_current,
    server_identifier,
)
from adapters.restic import Repository, Restic, ResticError
from core.boundaries import STAGING_PREFIXES
from repository import names

PARTIAL = ".partial"


@contextmanager
def connect(target: PgTarget) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    try:
        conn = psycopg.connect(
            conninfo(target), password=target.password or "", autocommit=True, connect_timeout=15
        )
    except psycopg.OperationalError as exc:
        raise DumpError(f"cannot reach the database server: {exc}", retryable=True) from None
    try:
        yield conn
    except psycopg.Error as exc:
        raise DumpError(f"the database server refused: {exc}", retryable=True) from None
    finally:
        conn.close()


def slot_name(application_id: str) -> str:
    return "cairn_" + application_id.replace("-", "")[:20]


def prepare(target: PgTarget, slot: str, restored: Iterable[DatabaseIdentity] = ()) -> None:
    """Refuses a server it must not archive, then makes the slot (kept if it exists).

    Archiving is physical: it copies every database of the server. So the application's
    database must be the only one there besides the server's own, which also keeps
    cairn's metadata database and other tenants' data out of the archive. cairn's own copies
    of it (a restore's or a drill's, named with ``STAGING_PREFIXES``, which no registration
    or restore target may take) are the application's data too: a restore over the live
    database, or a drill, running while a stretch starts does not stop the archiver. So are
    the new databases its restores to a moment made there, ``restored``: known by identity
    (a database dropped and made again under the name is another one).
    """
    with connect(target) as conn:
        refuse_current(conn, target.protect)
        system_identifier = server_identifier(conn)
        own = set(restored)
        others = [
            str(name)
            for name, oid in conn.execute(
                "SELECT datname, oid FROM pg_database WHERE NOT datistemplate ORDER BY 1"
            ).fetchall()
            if name not in SYSTEM_DATABASES
            and name != target.dbname
            and not str(name).startswith(STAGING_PREFIXES)
            and DatabaseIdentity(system_identifier, int(oid)) not in own
        ]
        if others:
            raise ProtectedDatabase(
                "continuous archiving copies the whole server, and this one also holds "
                f"{', '.join(others)}: give the application a server of its own"
            )
        size = conn.execute(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'"
        ).fetchone()
        if size is None or int(size[0]) != SEGMENT_BYTES:
            raise DumpError(
                "continuous archiving needs 16 MB WAL segments (the server's wal_segment_size "
                f"is {size[0] if size else 'unknown'} bytes)",
                retryable=False,
            )
        if conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone():
            return
        conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))


def drop_slot(target: PgTarget, slot: str) -> None:
    """Lets the server recycle the WAL it kept for the archiver (archiving turned off)."""
    with connect(target) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
            " WHERE slot_name = %s AND active_pid IS NOT NULL",
            (slot,),
        )
        for _ in range(50):
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                return
            if not row[0]:
                conn.execute(sql.SQL("SELECT pg_drop_replication_slot(%s)"), (slot,))
                return
            time.sleep(0.2)
    raise DumpError(f"the replication slot {slot} is still in use", retryable=True)


@dataclass(frozen=True)
class SlotState:
    """What the server keeps for the archiver; ``lost`` means WAL it needed was removed."""

    retained_bytes: int
    wal_status: str
    keep_limit_bytes: int | None  # max_slot_wal_keep_size; None: unbounded

    @property
    def lost(self) -> bool:
        return self.wal_status == "lost"


def slot_state(target: PgTarget, slot: str) -> SlotState:
    with connect(target) as conn:
        row = conn.execute(
            "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,"
            " coalesce(wal_status, 'lost'),"
            " (SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size')"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    if row is None:
        return SlotState(0, "lost", None)
    limit = int(row[2])
    return SlotState(int(row[0]), str(row[1]), None if limit < 0 else limit * 1024 * 1024)


def receiver(
    target: PgTarget, slot: str, spool: Path, bin_dir: Path | None
) -> subprocess.Popen[bytes]:
    """``pg_receivewal`` on the slot, flushing each write (so the slot's position is the
    spool's), ending on a lost connection for its caller to start again."""
    spool.mkdir(parents=True, exist_ok=True)
    argv = [
        tool("pg_receivewal", bin_dir),
        f"--directory={spool}",
        f"--slot={slot}",
        "--synchronous",
        "--no-loop",
        "--no-password",
        "--status-interval=1",
        f"--dbname={conninfo(target)}",
    ]
    try:
        return subprocess.Popen(
            argv,
            env=environment(target),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise DumpError(f"cannot run pg_receivewal: {exc}", retryable=False) from None


def covered_until(target: PgTarget, slot: str, wait_seconds: float) -> datetime | None:
    """A server time such that every commit up to it is flushed into the spool, or None if
    the receiver does not catch up within ``wait_seconds``."""
    with connect(target) as conn:
        moment = conn.execute("SELECT clock_timestamp()").fetchone()
        position = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert moment is not None and position is not None
        needed = parse_lsn(str(position[0]))
        deadline = time.monotonic() + wait_seconds
        while True:
            row = conn.execute(
                "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is not None and row[0] is not None and parse_lsn(str(row[0])) >= needed:
                return moment[0]  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)


def _stage(spool: Path, outbox: Path) -> tuple[list[str], str | None]:
    """Links the complete segments and copies the ``.partial`` (still being written) into
    ``outbox``; a segment completed meanwhile makes it look again."""
    while True:
        shutil.rmtree(outbox, ignore_errors=True)
        outbox.mkdir(parents=True)
        entries = sorted(os.listdir(spool))
        complete = [e for e in entries if SEGMENT_NAME.match(e)]
        partials = [e for e in entries if e.endswith(PARTIAL) and SEGMENT_NAME.match(e[:-8])]
        try:
            for name in complete:
                os.link(spool / name, outbox / name)
            for name in partials:
                shutil.copyfile(spool / name, outbox / name)
        except FileNotFoundError:
            continue
        return complete, (partials[-1] if partials else None)


def ship(
    spool: Path,
    outbox: Path,
    restic: Restic,
    repo: Repository,
    application_id: str,
    until: datetime,
) -> Shipment | None:
    """Stores the spool's segments as one snapshot; complete ones then leave the spool."""
    complete, partial = _stage(spool, outbox)
    held = complete + ([partial[: -len(PARTIAL)]] if partial else [])
    if not held:
        return None
    held.sort(key=segment_number)
    first, last = held[0], held[-1]
    is_partial = partial is not None and partial.startswith(last)
    tags = names.archive_tags(
        application_id,
        names.WAL,
        {
            "wal-first": first,
            "wal-last": last,
            "wal-partial": "yes" if is_partial else "no",
            "until": stamp(until),
        },
    )
    try:
        result = restic.backup_paths(repo, outbox, tags)
    except ResticError as exc:
        raise DumpError(
            f"shipping WAL into the repository failed: {exc.message}", retryable=exc.retryable
        ) from exc
    finally:
        shutil.rmtree(outbox, ignore_errors=True)
    for name in complete:
        (spool / name).unlink(missing_ok=True)
    return Shipment(result.snapshot_id, first, last, is_partial, until)


def superseded(previous: Shipment | None, latest: Shipment) -> bool:
    """True when ``previous`` held only a ``.partial`` that ``latest`` holds again: it adds
    nothing to the window, and forgetting it keeps the snapshot count bounded when idle."""
    return (
        previous is not None
        and previous.partial
        and previous.first == previous.last == latest.first
    )
