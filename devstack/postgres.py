"""A PostgreSQL server to use: the one on 127.0.0.1:5432 when it answers, else an embedded one."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostgresServer:
    """Where a server listens; ``socket_dir`` is set for the embedded one (no TCP port)."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    socket_dir: str | None = None

    def url(self, dbname: str, driver: str = "postgresql+psycopg") -> str:
        if self.socket_dir:
            return f"{driver}://{self.user}@/{dbname}?host={quote(self.socket_dir, safe='/')}"
        return f"{driver}://{self.user}@{self.host}:{self.port}/{dbname}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url("postgres", driver="postgresql"), autocommit=True)

    def database_exists(self, name: str) -> bool:
        with self._admin() as conn:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
                is not None
            )

    def create_database(self, name: str) -> None:
        if not self.database_exists(name):
            with self._admin() as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def answers(host: str = "127.0.0.1", port: int = 5432, user: str = "postgres") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            pass
        with psycopg.connect(
            f"postgresql://{user}@{host}:{port}/postgres", connect_timeout=3
        ) as conn:
            conn.execute("SELECT 1")
    except (OSError, psycopg.Error):
        return False
    return True


@contextlib.contextmanager
def running_server(data_dir: Path) -> Iterator[PostgresServer]:
    """The local server if it answers; otherwise pgserver in ``data_dir``, stopped on exit."""
    if answers():
        yield PostgresServer()
        return
    import pgserver

    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    log.info("no PostgreSQL on 127.0.0.1:5432; starting an embedded one in %s", pgdata)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    try:
        yield PostgresServer(socket_dir=str(server.get_postmaster_info().socket_dir))
    finally:
        server.cleanup()
