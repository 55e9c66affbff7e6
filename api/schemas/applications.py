"""Bodies of applications; the platform settings are a tagged union on ``kind``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from api.schemas.common import AbsolutePath, Input, Output, Slug
from core.database_url import split_database_url


def _valid_database_url(value: str) -> str:
    split_database_url(value)
    return value


DatabaseUrl = Annotated[
    str, StringConstraints(max_length=2048), AfterValidator(_valid_database_url)
]


Argument = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[^\x00]+$")]


class LocalHooks(Input):
    """Commands (argv, no shell) the worker runs to stop and start the application's writes."""

    stop: list[Argument] | None = Field(default=None, min_length=1, max_length=32)
    start: list[Argument] | None = Field(default=None, min_length=1, max_length=32)


class LocalPlatformIn(Input):
    kind: Literal["local"]
    database_url: DatabaseUrl | None = Field(
        default=None,
        description="postgresql://user:password@host:port/dbname; the password is stored"
        " encrypted; never cairn's metadata database or a system database",
    )
    volumes: dict[Slug, AbsolutePath] = Field(
        default_factory=dict,
        max_length=64,
        description="volume name -> folder on the worker host, inside an allowed root"
        " (CAIRN_VOLUME_ROOTS); never a system folder, the storage root or cairn's data folder",
    )
    hooks: LocalHooks | None = None


class ApplicationCreate(Input):
    name: Slug
    owner_id: uuid.UUID
    platform: LocalPlatformIn


class LocalPlatformOut(Output):
    kind: Literal["local"]
    database_url: str | None = Field(description="without the password")
    database_password_set: bool
    volumes: dict[str, str]
    hooks: dict[str, list[str] | None] | None = None


class ApplicationOut(Output):
    id: uuid.UUID
    workspace_id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    platform: LocalPlatformOut
    created_at: datetime
    updated_at: datetime
