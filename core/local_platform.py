"""Settings of an application of platform kind ``local``: a PostgreSQL URL and volume folders.

The database password is split off the URL so the stored settings hold no secret;
it lives sealed in ``applications.platform_secrets`` and is joined back only where
a process must connect.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")


def split_database_url(url: str) -> tuple[dict[str, Any], str | None]:
    """Returns the non-secret parts and the password; ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError("must be a postgresql:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        raise ValueError("must name exactly one database, as in postgresql://user@host/dbname")
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    settings = {
        "host": parts.hostname,
        "port": port,
        "user": unquote(parts.username) if parts.username else None,
        "dbname": dbname,
        "query": parts.query,
    }
    password = unquote(parts.password) if parts.password else None
    return settings, password


def database_url(settings: dict[str, Any], password: str | None = None) -> str:
    """The libpq URL; without ``password`` it is safe to show and log."""
    user = quote(settings["user"], safe="") if settings.get("user") else ""
    if user and password:
        user = f"{user}:{quote(password, safe='')}"
    host = settings["host"]
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}@{host}:{settings['port']}" if user else f"{host}:{settings['port']}"
    path = "/" + quote(settings["dbname"], safe="")
    return str(urlunsplit(("postgresql", netloc, path, settings.get("query") or "", "")))
