"""A named database's URL (MariaDB/MySQL, Redis: docs/engines.md): its engine, named by its
scheme, and the URL split from its password.

Like ``core/database_url.py`` for the main PostgreSQL database: the stored settings hold the
password-free URL, the password lives sealed in ``applications.platform_secrets``. What each
engine asks of the rest of the URL is the engine's own check (``adapters/engines/``).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

ENGINES: Final = {"mysql": "mariadb", "mariadb": "mariadb", "redis": "redis", "rediss": "redis"}
"""scheme -> engine"""
KNOWN: Final = ", ".join(f"{scheme}://" for scheme in ENGINES)


def engine_of(url: str) -> str:
    """The engine of ``url``'s scheme; ``ValueError`` naming the schemes known."""
    scheme = urlsplit(url).scheme
    if scheme not in ENGINES:
        raise ValueError(f"unknown database engine {scheme or '(no scheme)'!r}; known: {KNOWN}")
    return ENGINES[scheme]


def password_free(url: str) -> tuple[str, str | None]:
    """The URL without its password (safe to store, show and log), and the password;
    ``ValueError`` for a URL without a host or with a bad port."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("must name a host")
    port = parts.port  # ValueError: not a port
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    where = f"{host}:{port}" if port else host
    credentials, at, _ = parts.netloc.rpartition("@")
    user = credentials.partition(":")[0] if at else ""
    netloc = f"{user}@{where}" if user else where
    password = unquote(parts.password) if parts.password else None
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), password
