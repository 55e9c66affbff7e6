"""Bodies of restores."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    AliasPath,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.schemas.applications import DatabaseUrl
from api.schemas.backups import Timeline
from api.schemas.common import Input, Output, Slug
from contracts.archive import TARGET_TIME
from core.restore_details import StoredTarget

# Where a restore or a drill reads the backup.
ReadSource = Annotated[
    Literal["primary", "offsite"] | uuid.UUID,
    Field(
        description="where the backup is read: its primary storage, its latest finished offsite"
        " copy (`offsite`), or the copy at the offsite target of this id (docs/offsite.md)"
    ),
]
DatabaseName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]


class RestoreTarget(Input):
    """Where the database goes instead of over the original; exactly one field."""

    database_name: DatabaseName | None = Field(
        default=None,
        description="a new database on the application's server; never cairn's metadata"
        " database, a system database or another application's database",
    )
    database_url: DatabaseUrl | None = Field(
        default=None,
        description="another server or database, platform administrators only; its password"
        " is stored sealed",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> RestoreTarget:
        if (self.database_name is None) == (self.database_url is None):
            raise ValueError("give exactly one of database_name and database_url")
        return self


class RestoreRequest(Input):
    restore_type: Literal["full", "selective"]
    database: StrictBool = Field(default=False, description="selective: bring the database back")
    volumes: list[Slug] = Field(
        default_factory=list, max_length=64, description="selective: volumes to bring back"
    )
    config: StrictBool = Field(
        default=False,
        description="selective: bring the configuration objects back (Kubernetes: the"
        " ConfigMaps and Secrets the backup holds)",
    )
    databases: list[Slug] = Field(
        default_factory=list,
        max_length=16,
        description="selective: named databases (MariaDB, Redis) to bring back; `database`"
        " is the main PostgreSQL one",
    )
    target: RestoreTarget | None = None
    source: ReadSource = "primary"

    @model_validator(mode="after")
    def _what(self) -> RestoreRequest:
        named = bool(self.database or self.volumes or self.config or self.databases)
        check_parts(
            self.restore_type,
            named,
            self.volumes,
            self.databases,
            "the database, volumes, the configuration, named databases, or several",
        )
        return self


def check_parts(
    restore_type: str, named: bool, volumes: list[str], databases: list[str], parts: str
) -> None:
    """A full restore names no part, a selective one some (``parts``: which it may name),
    none twice."""
    if restore_type == "full" and named:
        raise ValueError("a full restore brings back everything; name parts only with selective")
    if restore_type == "selective" and not named:
        raise ValueError(f"a selective restore names {parts}")
    if len(set(volumes)) != len(volumes):
        raise ValueError("volumes are listed more than once")
    if len(set(databases)) != len(databases):
        raise ValueError("databases are listed more than once")


class SourceBackup(Input):
    """Another application of the workspace and one of its succeeded backups."""

    application_id: uuid.UUID = Field(
        description="the application whose backup is read; restoring needs its owner or a"
        " workspace administrator, as for the target"
    )
    backup_id: uuid.UUID


NameMap = Annotated[
    dict[Slug, Slug],
    Field(
        max_length=64,
        description="the source's name -> the target's name; a part not named keeps its name",
    ),
]


class RestoreFromApplicationRequest(Input):
    """Another application's backup restored into this one (docs/restore-into-another-app.md)."""

    source: SourceBackup
    restore_type: Literal["full", "selective"]
    database: StrictBool = Field(
        default=False, description="selective: the source's database into this one's"
    )
    volumes: list[Slug] = Field(
        default_factory=list, max_length=64, description="selective: the source's volumes"
    )
    databases: list[Slug] = Field(
        default_factory=list,
        max_length=16,
        description="selective: the source's named databases (MariaDB, Redis)",
    )
    volume_map: NameMap = Field(default_factory=dict)
    database_map: NameMap = Field(default_factory=dict)
    confirm: Annotated[str, StringConstraints(max_length=255)] | None = Field(
        default=None,
        description="this (the target) application's name, typed to confirm that its live"
        " data is replaced (422 `confirmation-required` otherwise)",
    )

    @model_validator(mode="after")
    def _what(self) -> RestoreFromApplicationRequest:
        named = bool(self.database or self.volumes or self.databases)
        check_parts(
            self.restore_type,
            named,
            self.volumes,
            self.databases,
            "the database, volumes, named databases, or several",
        )
        return self


class SourceOut(Output):
    """Where a restore into another application took its data from."""

    application_id: uuid.UUID
    application_name: str = Field(description="the source's name when the restore was asked")
    backup_id: uuid.UUID
    volume_map: dict[str, str] = Field(description="the source's volume -> this application's")
    database_map: dict[str, str] = Field(
        description="the source's named database -> this application's"
    )


class UploadOut(Output):
    """The dump an application owner uploaded to restore from (docs/restore-from-upload.md)."""

    format: str = Field(description="custom: pg_dump --format=custom")
    bytes: int = Field(description="the size received")
    sha256: str = Field(description="of the bytes received, hex")
    row_counts: dict[str, int] | None = Field(
        default=None, description="rows per table the dump holds, once the worker read it"
    )
    forgotten: bool = Field(
        default=False,
        description="true once retention dropped the dump from the repository after the restore",
    )


def _from_details(key: str) -> AliasChoices:
    """A field shown flat that the row keeps in its ``details`` (core.restore_details)."""
    return AliasChoices(key, AliasPath("details", key))


class RestoreOut(Output):
    """Read from the row (``model_validate(row, from_attributes=True)``) or from an answer."""

    id: uuid.UUID
    backup_id: uuid.UUID | None = Field(
        validation_alias=AliasChoices("backup_id", "backup_execution_id"),
        description="null: a restore to a moment (target_time) or from an upload (upload)",
    )
    application_id: uuid.UUID
    status: str
    restore_type: str
    database: bool = Field(default=False, validation_alias=_from_details("database"))
    volumes: list[str] = Field(default_factory=list, validation_alias=_from_details("volumes"))
    config: bool = Field(default=False, validation_alias=_from_details("config"))
    databases: list[str] = Field(default_factory=list, validation_alias=_from_details("databases"))
    target: dict[str, Any] | None = Field(default=None, validation_alias=_from_details("target"))
    offsite_target_id: uuid.UUID | None = Field(
        default=None, validation_alias=_from_details("offsite_target_id")
    )
    source: SourceOut | None = Field(
        default=None,
        validation_alias=_from_details("source"),
        description="another application's backup restored into this one; null: its own",
    )
    upload: UploadOut | None = Field(
        default=None,
        validation_alias=_from_details("upload"),
        description="a dump uploaded by the owner, restored instead of a backup",
    )
    notes: dict[str, Any] | None = Field(default=None, validation_alias=_from_details("notes"))
    workflow_id: str | None
    temporal_ui_url: str | None = None
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    created_at: datetime | None
    target_time: str | None = Field(
        default=None,
        validation_alias=_from_details(TARGET_TIME),
        description="a restore to a moment: the moment (RFC 3339) or latest (docs/pitr.md)",
    )

    @field_validator("target")
    @classmethod
    def _without_secret(cls, target: dict[str, Any] | None) -> dict[str, Any] | None:
        """The sealed password of a target URL stays in the row; an empty target is none."""
        return StoredTarget.from_dict(target).shown() if target else None


class RestoreDetail(RestoreOut):
    timeline: Timeline | None = None
    timeline_error: str | None = None
