"""Whole-database moves on an application's server: restore beside, then swap by rename.

A restore never writes into the live database: it fills a fresh one, and only a
complete copy is renamed into place, so a failure leaves the target as it was.
"""

from __future__ import annotations

from dataclasses import replace

import psycopg
from psycopg import sql

from adapters.pg_dump import DumpError, PgTarget, conninfo


def _admin(target: PgTarget) -> psycopg.Connection[tuple[object, ...]]:
    maintenance = replace(target, dbname="postgres")
    try:
        return psycopg.connect(
            conninfo(maintenance), password=target.password, autocommit=True, connect_timeout=15
        )
    except psycopg.OperationalError as exc:
        raise DumpError(f"cannot reach the database server: {exc}", retryable=True) from None


def exists(target: PgTarget, name: str) -> bool:
    with _admin(target) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None


def create(target: PgTarget, name: str) -> None:
    with _admin(target) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop(target: PgTarget, name: str) -> None:
    with _admin(target) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def swap(target: PgTarget, staging: str, old: str) -> None:
    """Renames ``staging`` to the target's name; the previous database goes, once replaced.

    Safe to repeat after a crash: each state on the way holds a complete database under
    either the target's name or ``old``.
    """
    name = target.dbname
    with _admin(target) as conn:

        def present(db: str) -> bool:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
                is not None
            )

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
