"""Field types shared by several resources; strict, so bad input never reaches the database."""

from __future__ import annotations

import ipaddress
import posixpath
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

Slug = Annotated[
    str,
    StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"),
]
"""A DNS-label name: lowercase letters, digits and inner hyphens, at most 63 characters."""

DisplayName = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Email = Annotated[
    str,
    StringConstraints(
        min_length=3, max_length=320, pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+\.[^@\s]+$"
    ),
]


def _clean_absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be an absolute path")
    if posixpath.normpath(value) != value or value == "/":
        raise ValueError("must be a normalised path below / (no '..', '.', '//' or trailing '/')")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    return value


AbsolutePath = Annotated[
    str, StringConstraints(max_length=4096), AfterValidator(_clean_absolute_path)
]


class Input(BaseModel):
    """Base of request bodies: unknown fields are refused rather than silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class _WithExtra:
    """A row's attributes, plus what the API shows of it without storing it (a link, a
    derived name), for ``model_validate(..., from_attributes=True)``."""

    def __init__(self, row: object, extra: dict[str, Any]) -> None:
        self._row, self._extra = row, extra

    def __getattr__(self, name: str) -> Any:
        if name in self._extra:
            return self._extra[name]
        return getattr(self._row, name)


class Output(BaseModel):
    """Base of answers: built from a database row's attributes, never by hand."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, row: object, **extra: Any) -> Self:
        """The answer for ``row``; ``extra`` gives (or overrides) fields the row lacks."""
        return cls.model_validate(_WithExtra(row, extra) if extra else row, from_attributes=True)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def web_url(value: str, *, what: str = "", query: bool = True, credentials: str = "") -> str:
    """An outside server cairn calls (an offsite REST server, a notification webhook):
    HTTPS, or HTTP on this host only (tests, a tunnel); no credentials in it (``credentials``
    says where they go), no fragment, a query only when ``query``."""
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"must be an https:// URL{what}")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError("must use https:// (plain http:// only on a loopback address)")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"must not carry credentials{credentials}")
    if parts.fragment or (parts.query and not query):
        raise ValueError(
            "must not have a fragment" if query else "must not have a query or a fragment"
        )
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise ValueError(f"has an invalid port: {exc}") from None
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain spaces or control characters")
    return value
