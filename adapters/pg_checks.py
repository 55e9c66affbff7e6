"""A drill's SQL checks: each one read-only, under a statement timeout, and rolled back."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from adapters import pg_dump
from adapters.platform import CheckResult, PlatformError, SqlCheck
from core.run_outcome import shorten


def evaluate(rows: list[tuple[Any, ...]]) -> tuple[str, str]:
    """A check passes when its query returned exactly one value, and that value is true."""
    if len(rows) != 1 or len(rows[0]) != 1:
        shape = f"{len(rows)} rows" if len(rows) != 1 else f"{len(rows[0])} columns"
        return "failed", f"returned {shape}; a check must return a single true value"
    value = rows[0][0]
    if value is True:
        return "passed", "returned true"
    if value is False or value is None:
        return "failed", f"returned {'false' if value is False else 'NULL'}"
    return "failed", f"returned {str(value)[:100]!r}, not a boolean"


def run_read_only_checks(
    target: pg_dump.PgTarget, checks: list[SqlCheck], timeout_seconds: int
) -> list[CheckResult]:
    """Each check in its own READ ONLY transaction with a statement timeout, rolled back.

    The query goes through the extended protocol (``binary=True``), which accepts exactly
    one statement: a check cannot end its transaction and write in a second one.
    """
    try:
        conn = psycopg.connect(
            pg_dump.conninfo(target),
            password=target.password or "",
            autocommit=True,
            connect_timeout=15,
        )
    except psycopg.OperationalError as exc:
        raise PlatformError(f"cannot reach the scratch database: {exc}", retryable=True) from None
    outcomes: list[CheckResult] = []
    timeout = sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{timeout_seconds}s"))
    with conn:
        for check in checks:
            try:
                conn.execute("BEGIN TRANSACTION READ ONLY")
                conn.execute(timeout)
                # bytes: the query text comes from the check, exactly as stored
                rows = conn.execute(check.sql.encode(), binary=True).fetchall()
            except psycopg.Error as exc:
                message = shorten(str(exc).strip() or type(exc).__name__, 500)
                outcomes.append(CheckResult(check.name, "error", message))
            else:
                outcomes.append(CheckResult(check.name, *evaluate(rows)))
            finally:
                conn.execute("ROLLBACK")
    return outcomes
