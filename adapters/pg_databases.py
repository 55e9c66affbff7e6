"""Whole-database moves on an application's server: restore beside, then swap by rename.

A restore never writes into the live database: it fills a fresh one, and only a
complete copy is renamed into place, so a failure leaves the target as it was.
Every write first asks the server, on the connection that writes, whether a database it
names is one cairn must never touch (``adapters/pg_identity.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from adapters.pg_dump import DumpError, PgTarget, conninfo
from adapters.pg_identity import DatabaseIdentity, refuse_protected, server_identifier


def staging_names(run_id: str) -> tuple[str, str]:
    """A restore's names beside the live database: its copy (``cairn_restore_<short>``) and
    the live database renamed aside during the swap (``cairn_old_<short>``)."""
    short = uuid.UUID(run_id).hex[:12]
    return f"cairn_restore_{short}", f"cairn_old_{short}"


def _admin(target: PgTarget, timeout: int = 15) -> psycopg.Connection[tuple[Any, ...]]:
    maintenance = replace(target, dbname="postgres")
    try:
        return psycopg.connect(
            conninfo(maintenance),
            password=target.password or "",
            autocommit=True,
            connect_timeout=timeout,
        )
    except psycopg.OperationalError as exc:
        raise DumpError(f"cannot reach the database server: {exc}", retryable=True) from None


def _guarded(
    target: PgTarget, names: Iterable[str], timeout: int = 15
) -> psycopg.Connection[tuple[Any, ...]]:
    """A maintenance connection on which none of ``names`` is a protected database."""
    conn = _admin(target, timeout)
    try:
        refuse_protected(conn, names, target.protect)
    except psycopg.Error as exc:
        conn.close()
        raise DumpError(
            f"cannot tell which databases the server holds: {exc}", retryable=True
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


def identity(target: PgTarget, what: str, *, timeout: int = 15) -> DatabaseIdentity | None:
    """Which database ``target`` names, asked of its server (None: it has no such database);
    ``what`` names it in refusals."""
    with _admin(target, timeout) as conn:
        row = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = %s", (target.dbname,)
        ).fetchone()
        return DatabaseIdentity(server_identifier(conn), int(row[0]), what) if row else None


def check_writable(target: PgTarget, names: Iterable[str], *, timeout: int = 15) -> None:
    """Refuses before any work starts; each write below checks again as it happens."""
    _guarded(target, names, timeout).close()


def exists(target: PgTarget, name: str) -> bool:
    with _admin(target) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None


def create(target: PgTarget, name: str) -> None:
    with _guarded(target, [name]) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop(target: PgTarget, name: str) -> None:
    with _guarded(target, [name]) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _present(conn: psycopg.Connection[tuple[Any, ...]], db: str) -> bool:
    found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
    return found is not None


def swap(target: PgTarget, staging: str, old: str) -> None:
    """Renames ``staging`` to the target's name; the previous database goes, once replaced.

    Safe to repeat after a crash: each state on the way holds a complete database under
    either the target's name or ``old``.
    """
    name = target.dbname
    with _guarded(target, [name, staging, old]) as conn:
        present = partial(_present, conn)
        if present(staging):
            if present(name):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(old))
                )
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                conn.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(name), sql.Identifier(old)
                    )
                )
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(staging), sql.Identifier(name)
                )
            )
        elif not present(name):
            raise DumpError(
                f"neither the restored copy {staging} nor the database {name} exists",
                retryable=False,
            )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(old)))


def abandon(target: PgTarget, staging: str, old: str) -> str:
    """Gives up a swap that did not finish: the live database back under its name (a swap
    stopped between its two renames left it as ``old``), then the copy dropped; safe to
    repeat. What was done, in words."""
    name = target.dbname
    with _guarded(target, [name, staging, old]) as conn:
        present = partial(_present, conn)
        done = []
        if not present(name) and present(old):
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(old), sql.Identifier(name)
                )
            )
            done.append(f"database {name} put back")
        if present(staging):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(staging))
            )
            done.append(f"the copy {staging} dropped")
        return "; ".join(done) or "nothing to undo"
