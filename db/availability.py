"""Whether an error means the metadata database cannot be reached (retry) or is a real error.

The API answers 503 for the first kind; the worker retries its metadata reads through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import psycopg
import sqlalchemy.exc

# SQLSTATEs that mean "the server is not there for us", not "this statement is wrong":
# class 08 (connection exception), shutdown/terminated backends, too many connections.
_UNAVAILABLE_SQLSTATES: Final = frozenset({"57P01", "57P02", "57P03", "53300"})
_LOST_CONNECTION_WORDS: Final = ("connection is closed", "connection is lost", "server closed")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what caused it (explicitly or while handling), without cycles."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _unreachable(exc: BaseException) -> bool:
    """Whether one exception (not its chain) says the database cannot be reached."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):  # every pooled connection stayed busy
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        return exc.connection_invalidated or (exc.orig is not None and _unreachable(exc.orig))
    if isinstance(exc, psycopg.OperationalError):
        # libpq's own failures (refused, timed out, closed unexpectedly) carry no SQLSTATE
        state = exc.sqlstate
        return state is None or state.startswith("08") or state in _UNAVAILABLE_SQLSTATES
    if isinstance(exc, psycopg.InterfaceError):
        return any(words in str(exc).lower() for words in _LOST_CONNECTION_WORDS)
    return False


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the metadata database being unreachable.

    Statement errors (a missing table, a constraint, a bad query) are programming or data
    errors and stay 500: retrying would not help.
    """
    return any(_unreachable(link) for link in _chain(exc))
