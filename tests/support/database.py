"""A migrated throw-away database per test run, and table snapshots to prove "nothing changed"."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from db import migrate
from devstack.postgres import PostgresServer, running_server


@contextlib.contextmanager
def server() -> Iterator[PostgresServer]:
    with tempfile.TemporaryDirectory(prefix="cairn-pg-") as tmp, running_server(Path(tmp)) as pg:
        yield pg


@contextlib.contextmanager
def fresh_database(pg: PostgresServer, name: str) -> Iterator[str]:
    pg.create_database(name)
    url = pg.url(name)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        pg.drop_database(name)


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# Bookkeeping that a read may touch legitimately.
IGNORED_COLUMNS = {"api_tokens": "last_used_at"}


def snapshot(url: str) -> dict[str, str]:
    """Content hash of every table: equal snapshots mean no row was added, changed or removed."""
    with psycopg.connect(libpq_url(url)) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version' ORDER BY tablename"
            )
        ]
        result = {}
        for table in tables:
            row_text = sql.SQL("(to_jsonb(t) - {})::text").format(
                sql.Literal(IGNORED_COLUMNS.get(table, ""))
            )
            query = sql.SQL(
                "SELECT count(*) || ':' || coalesce(md5(string_agg({r}, '|' ORDER BY {r})), '')"
                " FROM {t} t"
            ).format(r=row_text, t=sql.Identifier(table))
            row = conn.execute(query).fetchone()
            result[table] = str(row[0]) if row else ""
        return result
