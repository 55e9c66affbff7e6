"""An application's PostgreSQL URL, split into settings and a password and built back.

The database password is split off the URL so the stored settings hold no secret;
it lives sealed in ``applications.platform_secrets`` and is joined back only where
a process must connect.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")


def split_database_url(url: str) -> tuple[dict[str, Any], str | None]:
    """Returns the non-secret parts and the password; ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError("must be a postgresql:// URL")
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or [""])[0]
    if not host:
        raise ValueError("must name a host (or a socket directory as ?host=/path)")
    if host.startswith("/") and (".." in host.split("/") or len(query.get("host", [])) > 1):
        raise ValueError("has an invalid socket directory")
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        raise ValueError("must name exactly one database, as in postgresql://user@host/dbname")
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    settings = {
        "host": host,
        "port": port,
        "user": unquote(parts.username) if parts.username else None,
        "dbname": dbname,
    }
    password = unquote(parts.password) if parts.password else None
    return settings, password


def database_url(settings: dict[str, Any], password: str | None = None) -> str:
    """The libpq URL; without ``password`` it is safe to show and log."""
    user = quote(settings["user"], safe="") if settings.get("user") else ""
    if user and password:
        user = f"{user}:{quote(password, safe='')}"
    host, query = settings["host"], ""
    if host.startswith("/"):  # a Unix socket directory
        host, query = "", f"host={quote(settings['host'], safe='/')}&port={settings['port']}"
    elif ":" in host:
        host = f"[{host}]"
    if host:
        host = f"{host}:{settings['port']}"
    netloc = f"{user}@{host}" if user else host
    path = "/" + quote(settings["dbname"], safe="")
    return str(urlunsplit(("postgresql", netloc, path, query, "")))
