"""Bodies of restores."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from api.schemas.applications import DatabaseUrl
from api.schemas.backups import Timeline
from api.schemas.common import Input, Output, Slug

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
    database: bool = Field(default=False, description="selective: bring the database back")
    volumes: list[Slug] = Field(
        default_factory=list, max_length=64, description="selective: volumes to bring back"
    )
    target: RestoreTarget | None = None

    @model_validator(mode="after")
    def _what(self) -> RestoreRequest:
        if self.restore_type == "full" and (self.database or self.volumes):
            raise ValueError(
                "a full restore brings back everything; name parts only with selective"
            )
        if self.restore_type == "selective" and not (self.database or self.volumes):
            raise ValueError("a selective restore names the database, volumes or both")
        if len(set(self.volumes)) != len(self.volumes):
            raise ValueError("volumes are listed more than once")
        return self


class RestoreOut(Output):
    id: uuid.UUID
    backup_id: uuid.UUID
    application_id: uuid.UUID
    status: str
    restore_type: str
    database: bool
    volumes: list[str]
    target: dict[str, Any] | None
    notes: dict[str, Any] | None
    workflow_id: str | None
    temporal_ui_url: str | None
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    created_at: datetime | None


class RestoreDetail(RestoreOut):
    timeline: Timeline | None = None
    timeline_error: str | None = None
