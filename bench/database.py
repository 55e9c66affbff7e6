"""The databases a benchmark builds for itself on the local (or embedded) PostgreSQL.

Every database made here is dropped when the benchmark ends, also when it fails.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from adapters import pg_dump
from core.crypto import generate_master_key
from core.settings import Settings
from db import migrate
from devstack.postgres import PostgresServer

MB = 1024 * 1024


@dataclass
class Databases:
    pg: PostgresServer
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    made: list[str] = field(default_factory=list)

    def name(self, what: str) -> str:
        return f"bench_{what}_{self.tag}"

    def url(self, name: str) -> str:
        return self.pg.url(name, driver="postgresql")

    def target(self, name: str) -> pg_dump.PgTarget:
        return pg_dump.PgTarget(
            self.pg.socket_dir or self.pg.host, self.pg.port, self.pg.user, name, None
        )

    def create(self, name: str, template: str | None = None) -> str:
        self.made.append(name)
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(statement)
        return name

    def execute(self, name: str, *statements: str) -> None:
        with psycopg.connect(self.url(name), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement.encode())

    def size(self, name: str) -> int:
        _, size = pg_dump.server_info(self.target(name), pg_dump.tool("psql", None))
        return size

    def pgbench(self, what: str, size_mb: int) -> str:
        """A pgbench database of about ``size_mb`` (pgbench: about 15 MB per scale unit)."""
        name = self.create(self.name(what))
        scale = max(1, round(size_mb / 15))
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", str(scale), self.url(name)],
            check=True,
            capture_output=True,
        )
        return name

    def tiny(self, what: str, rows: int = 5000) -> str:
        """A small application's database: one table of ``rows`` orders."""
        name = self.create(self.name(what))
        self.execute(
            name,
            "CREATE TABLE orders (id serial PRIMARY KEY, customer text, total numeric,"
            " placed timestamptz DEFAULT now())",
            f"INSERT INTO orders (customer, total) SELECT 'customer ' || i, i * 1.5"
            f" FROM generate_series(1, {rows}) i",
        )
        return name

    def metadata(self, storage_root: object) -> Settings:
        """cairn's own metadata database, migrated, and the settings that point at it."""
        name = self.create(self.name("meta"))
        migrate.upgrade(self.pg.url(name))
        return Settings(
            database_url=self.pg.url(name),
            master_key=generate_master_key(),
            storage_mount_root=storage_root,
        )

    def drop_all(self) -> None:
        for name in reversed(self.made):
            with contextlib.suppress(psycopg.Error):
                self.pg.drop_database(name)
        self.made.clear()
