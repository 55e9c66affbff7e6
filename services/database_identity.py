"""Which database a request names, asked of the server before anything is stored.

The API refuses early, with a 4xx naming the field, when the server it can reach says the
database is cairn's own, a system database or another application's
(``adapters/pg_identity.py``). A server the API cannot reach is not refused here: the worker
asks again on the connection that reads or writes, before any data moves, and the run fails
there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters import pg_databases
from adapters.errors import AdapterError
from adapters.pg_dump import PgTarget
from adapters.pg_identity import DatabaseIdentity, ProtectedDatabase, protected
from core import crypto, secret_contexts
from core.boundaries import BoundaryError
from core.settings import Settings
from db.models import Application

# The API waits this long for an application's server; the worker's check does not depend on it.
PROBE_SECONDS = 3
# How a refusal names the database a restore into another application reads from.
SOURCE_DATABASE = "the source application's database"


def _target(
    database: Mapping[str, Any], password: str | None, protect: tuple[DatabaseIdentity, ...]
) -> PgTarget:
    return PgTarget(
        host=str(database["host"]),
        port=int(database.get("port") or 5432),
        user=database.get("user"),
        dbname=str(database["dbname"]),
        password=password,
        protect=protect,
    )


def database_password(application: Application, settings: Settings) -> str | None:
    """The application's database password, opened to ask its server (never stored)."""
    if not application.platform_secrets:
        return None
    try:
        secrets = crypto.open_json(
            application.platform_secrets,
            master_key=settings.master_key_text,
            context=secret_contexts.application_secrets(application.id),
        )
    except crypto.CryptoError:
        return None  # the worker cannot open it either, and fails the run saying so
    password = secrets.get("database_password")
    return str(password) if password is not None else None


async def refuse_protected(
    database: Mapping[str, Any],
    password: str | None,
    settings: Settings,
    field: str,
    others: tuple[DatabaseIdentity, ...] = (),
) -> None:
    """``BoundaryError`` on ``field`` when ``database`` (``host``, ``port``, ``user``,
    ``dbname``) is, by the server's own account, cairn's metadata database, a system
    database or one of ``others``."""
    try:
        target = _target(database, password, (*protected(settings), *others))
        await asyncio.to_thread(
            pg_databases.check_writable, target, [target.dbname], timeout=PROBE_SECONDS
        )
    except ProtectedDatabase as exc:
        raise BoundaryError(field, exc.message) from None
    except AdapterError:
        return  # not reachable from the API: the worker decides before it touches the data


async def other_applications(
    session: AsyncSession,
    application: Application,
    dbname: str,
    settings: Settings,
    wait_seconds: int = PROBE_SECONDS,
) -> tuple[DatabaseIdentity, ...]:
    """The databases of other local applications registered with the name ``dbname``, each
    asked of its own server, so that two addresses of one server are told apart by identity,
    not by spelling.

    A server that does not answer cannot be told apart: ``AdapterError`` (retryable). The
    worker does not write then; the API lets the worker decide.
    """
    rows = await session.scalars(
        select(Application).where(
            Application.id != application.id,
            Application.platform_kind == "local",
            Application.platform_settings["database"]["dbname"].astext == dbname,
        )
    )
    found = []
    for other in rows:
        identity = await identity_of(
            other, settings, "another application's database", wait_seconds
        )
        if identity is not None:
            found.append(identity)
    return tuple(found)


async def identity_of(
    application: Application, settings: Settings, what: str, wait_seconds: int = PROBE_SECONDS
) -> DatabaseIdentity | None:
    """The local application's main database, asked of its server (None: it has none, or
    its server has no such database); ``what`` names it in refusals. ``AdapterError`` when
    the server does not answer."""
    database = application.platform_settings.get("database")
    if application.platform_kind != "local" or not database:
        return None
    target = _target(database, database_password(application, settings), ())
    return await asyncio.to_thread(pg_databases.identity, target, what, timeout=wait_seconds)
