"""The migration chain goes up and down on an empty database."""

from __future__ import annotations

import psycopg
import pytest

from db import migrate
from db.models import Base
from devstack.postgres import PostgresServer
from tests.support.database import libpq_url

pytestmark = pytest.mark.integration


def tables(url: str) -> set[str]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


def test_upgrade_then_downgrade_to_base(database_server: PostgresServer) -> None:
    name = "cairn_test_migrations"
    database_server.drop_database(name)
    database_server.create_database(name)
    url = database_server.url(name)
    try:
        migrate.upgrade(url)
        assert tables(url) == set(Base.metadata.tables) | {"alembic_version"}
        migrate.downgrade(url, "base")
        assert tables(url) <= {"alembic_version"}
        migrate.upgrade(url)
        assert set(Base.metadata.tables) <= tables(url)
    finally:
        database_server.drop_database(name)
