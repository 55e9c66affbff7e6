"""Which PostgreSQL server and database a connection reached, and the ones cairn never touches.

A host's spelling proves nothing: ``127.1``, ``2130706433``, ``0x7f000001``, an ``/etc/hosts``
alias and a Unix socket directory all reach the same server. The server itself knows who it
is: its system identifier (``pg_control_system()``, readable by every role) and the OID of
each database. cairn's metadata database is known by that pair, learnt from cairn's own
connection, and also carries a marker, its database comment (written by migration 0011),
which every role on the server can read from any database. A process that cannot reach the
metadata database (a mover Job in a cluster) is handed the pair (``CAIRN_METADATA_IDENTITY``)
and still has the marker.

The check runs on the very connection that then writes (``adapters/pg_databases.py``) or
reads (``adapters/pg_dump.py``), so no change of name resolution in between can redirect it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from adapters.errors import AdapterError
from core.settings import Settings

# The start of the comment migration 0011 puts on cairn's metadata database.
MARKER = "cairn metadata database"
METADATA = "cairn's own metadata database"
SYSTEM_DATABASES = frozenset({"postgres", "template0", "template1"})

Connection = psycopg.Connection[tuple[Any, ...]]


class ProtectedDatabase(AdapterError):
    """The database is cairn's own catalog (of any cairn) or one of the server's own."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True)
class DatabaseIdentity:
    """One database of one server, whatever address led there; ``what`` says whose it is
    (shown in a refusal, not part of the identity)."""

    system_identifier: int
    oid: int
    what: str = field(default=METADATA, compare=False)

    def __str__(self) -> str:
        return f"{self.system_identifier}:{self.oid}"

    @classmethod
    def parse(cls, text: str) -> DatabaseIdentity:
        system_identifier, _, oid = text.partition(":")
        return cls(int(system_identifier), int(oid))


def server_identifier(conn: Connection) -> int:
    row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    assert row is not None
    return int(row[0])


def identity_of_current(conn: Connection) -> DatabaseIdentity:
    """The identity of the database ``conn`` is connected to."""
    row = conn.execute(
        "SELECT (SELECT system_identifier FROM pg_control_system()), d.oid"
        " FROM pg_database d WHERE d.datname = current_database()"
    ).fetchone()
    assert row is not None
    return DatabaseIdentity(int(row[0]), int(row[1]))


_known: dict[str, DatabaseIdentity] = {}
_lock = threading.Lock()


def metadata_identity(settings: Settings) -> DatabaseIdentity:
    """cairn's own metadata database, asked of the server once per process.

    Without it no target can be judged, so an unreachable metadata database is a retryable
    failure, never a pass.
    """
    if settings.metadata_identity:
        return DatabaseIdentity.parse(settings.metadata_identity)
    url = settings.database_url
    with _lock:
        if url not in _known:
            scheme, sep, rest = url.partition("://")
            try:
                with psycopg.connect(
                    scheme.split("+", 1)[0] + sep + rest, connect_timeout=10
                ) as conn:
                    _known[url] = identity_of_current(conn)
            except psycopg.Error as exc:
                raise AdapterError(
                    f"cannot tell which database is cairn's own (metadata database: {exc})",
                    retryable=True,
                ) from None
        return _known[url]


def protected(settings: Settings) -> tuple[DatabaseIdentity, ...]:
    """The identities no target may have (today: cairn's metadata database)."""
    return (metadata_identity(settings),)


def refuse_protected(
    conn: Connection, names: Iterable[str], protect: Iterable[DatabaseIdentity]
) -> None:
    """Raises ``ProtectedDatabase`` if any of ``names``, on the server ``conn`` reached, is a
    system database, carries cairn's marker, or is one of ``protect``.

    Names not present on the server pass: a database that does not exist is no one's yet,
    and creating it is what the caller does next on this same connection.
    """
    names = list(dict.fromkeys(names))
    system_identifier = server_identifier(conn)
    guarded = set(protect)
    rows = conn.execute(
        "SELECT datname, oid, datistemplate, coalesce(shobj_description(oid, 'pg_database'), '')"
        " FROM pg_database WHERE datname = ANY(%s)",
        (names,),
    ).fetchall()
    for datname, oid, is_template, comment in rows:
        if datname in SYSTEM_DATABASES or is_template:
            raise ProtectedDatabase(f"{datname} is a system database of the server")
        found = DatabaseIdentity(system_identifier, oid)
        if str(comment).startswith(MARKER):
            what = METADATA
        elif found in guarded:
            what = next(identity.what for identity in guarded if identity == found)
        else:
            continue
        raise ProtectedDatabase(
            f"{datname} on this server is {what}"
            " (recognised by the server's identity, not by its address)"
        )


def refuse_current(conn: Connection, protect: Iterable[DatabaseIdentity]) -> None:
    """``refuse_protected`` for the database ``conn`` is connected to (reads: a dump)."""
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    refuse_protected(conn, [str(row[0])], protect)
