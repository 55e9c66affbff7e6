"""Which database a request names, asked of the server before anything is stored.

The API refuses early, with a 4xx naming the field, when the server it can reach says the
database is cairn's own or a system database (``adapters/pg_identity.py``). A server the API
cannot reach is not refused here: the worker asks again on the connection that reads or
writes, before any data moves, and the run fails there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from adapters import pg_databases
from adapters.errors import AdapterError
from adapters.pg_dump import PgTarget
from adapters.pg_identity import ProtectedDatabase, protected
from core.boundaries import BoundaryError
from core.settings import Settings

# The API waits this long for an application's server; the worker's check does not depend on it.
PROBE_SECONDS = 3


def _probe(database: Mapping[str, Any], password: str | None, settings: Settings) -> None:
    target = PgTarget(
        host=str(database["host"]),
        port=int(database.get("port") or 5432),
        user=database.get("user"),
        dbname=str(database["dbname"]),
        password=password,
        protect=protected(settings),
    )
    pg_databases.check_writable(target, [target.dbname], timeout=PROBE_SECONDS)


async def refuse_protected(
    database: Mapping[str, Any], password: str | None, settings: Settings, field: str
) -> None:
    """``BoundaryError`` on ``field`` when ``database`` (``host``, ``port``, ``user``,
    ``dbname``) is, by the server's own account, cairn's metadata or a system database."""
    try:
        await asyncio.to_thread(_probe, database, password, settings)
    except ProtectedDatabase as exc:
        raise BoundaryError(field, exc.message) from None
    except AdapterError:
        return  # not reachable from the API: the worker decides before it touches the data
