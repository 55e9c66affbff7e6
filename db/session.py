"""Engine and session factory for the async SQLAlchemy + psycopg 3 stack."""

from __future__ import annotations

from typing import Final

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# Seconds libpq waits for a new connection: an unreachable server fails a request (503)
# instead of holding it for the operating system's TCP timeout.
CONNECT_TIMEOUT_SECONDS: Final = 5
# Seconds a request waits for a pooled connection when all of them are busy.
POOL_TIMEOUT_SECONDS: Final = 10


def make_engine(database_url: str) -> AsyncEngine:
    """The engine of the metadata database.

    ``pool_pre_ping`` tests a pooled connection before handing it out, so a restarted
    database (or ``pg_terminate_backend``) costs a reconnect, not one failed request per
    stale connection in the pool.
    """
    return create_async_engine(
        database_url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
