"""Bodies of restore drills and of an application's drill policy."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    AliasChoices,
    AliasPath,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.schemas.backups import Timeline
from api.schemas.common import DisplayName, Input, Output
from api.schemas.policies import ScheduleStateOut
from api.schemas.recovery import moment
from api.schemas.restores import ReadSource
from contracts.archive import LATEST, RANDOM
from core.states import RunStatus
from services.recovery_window import Moment

MAX_CHECKS = 20
MAX_CHECK_SQL = 4000

DrillStatus = Literal[
    RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED
]


def _query(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a query, not only spaces")
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class DrillCheck(Input):
    """A query run read-only against the restored copy; it must return a single true value."""

    name: Annotated[DisplayName, StringConstraints(max_length=100)]
    sql: Annotated[
        str, StringConstraints(min_length=1, max_length=MAX_CHECK_SQL), AfterValidator(_query)
    ] = Field(
        description="one statement, e.g. SELECT count(*) > 0 FROM orders; run in a READ ONLY"
        " transaction with a statement timeout in the scratch database"
    )


class DrillPolicyIn(Input):
    """The whole drill policy: a PUT replaces every field (left out: the default)."""

    schedule: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="cron in the backup policy's time zone, e.g. '0 4 * * 0' (Sundays 04:00)"
    )
    enabled: StrictBool = True
    checks: list[DrillCheck] = Field(default_factory=list, max_length=MAX_CHECKS)
    target_time: Literal["latest", "random"] | None = Field(
        default=None,
        description="scheduled drills recover a moment of the WAL archive instead of restoring"
        " the newest backup (continuous archiving on): `latest`, or `random` (a moment drawn"
        " from the window at each drill, its gaps left out); null: the newest backup",
    )
    source: ReadSource = Field(
        default="primary",
        description="where scheduled drills read the backup: the primary storage, the newest"
        " backup with a finished offsite copy at any target (`offsite`) or at the target of"
        " this id (docs/offsite.md); not with target_time",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> DrillPolicyIn:
        names = [check.name for check in self.checks]
        if len(set(names)) != len(names):
            raise ValueError("check names must be unique: a failed drill names its check")
        return self


class DrillCheckOut(Output):
    name: str
    sql: str


class DrillPolicyRow(Output):
    """What the drill policy's row holds (``model_validate(row, from_attributes=True)``)."""

    id: uuid.UUID
    policy_id: uuid.UUID
    enabled: bool
    schedule: str
    checks: list[DrillCheckOut]
    target_time: Literal["latest", "random"] | None = Field(
        description="what scheduled drills restore: a moment of the WAL archive (`latest`,"
        " `random`), or null: the newest backup"
    )
    source: ReadSource = Field(
        description="where scheduled drills read the backup: `primary`, `offsite` (the newest"
        " backup with a finished copy at any target) or a target's id (its newest copied one)"
    )
    created_at: datetime

    @field_validator("source", mode="before")
    @classmethod
    def _primary(cls, value: object) -> object:
        return "primary" if value is None else value  # the row's null: the primary storage

    updated_at: datetime


class DrillPolicyOut(DrillPolicyRow):
    application_id: uuid.UUID
    timezone: str = Field(description="the backup policy's time zone, which the schedule uses")
    schedule_id: str
    schedule_state: ScheduleStateOut | None = None
    schedule_error: str | None = Field(
        default=None, description="why the live state could not be read from Temporal"
    )
    overdue: bool = Field(
        default=False,
        description="no successful drill since the schedule owed one, past the grace"
        " (docs/alerts.md); false while disabled",
    )
    overdue_since: datetime | None = None


class CheckResultOut(Output):
    name: str
    outcome: Literal["passed", "failed", "error"]
    message: str


class DrillStart(Input):
    """A drill started now (the body may be left out: the newest backup, read from the
    primary storage)."""

    source: ReadSource = "primary"
    backup_id: uuid.UUID | None = Field(
        default=None,
        description="the backup to drill; null: the newest successful one. A backup the"
        " primary's retention pruned is drilled from its offsite copy (source offsite or a"
        " target id)",
    )
    target_time: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="drill a moment of the WAL archive instead of a backup (continuous"
        " archiving on): an RFC 3339 time with its offset, `latest`, or `random` (a moment"
        " drawn from the window, its gaps left out, recorded on the drill)",
    )

    @field_validator("target_time")
    @classmethod
    def _moment(cls, value: str | None) -> str | None:
        if value is not None and value != RANDOM:
            moment(value)
        return value

    @model_validator(mode="after")
    def _a_moment_or_a_backup(self) -> DrillStart:
        if self.target_time is not None and {"source", "backup_id"} & self.model_fields_set:
            raise ValueError(
                "a drill to a moment recovers from the WAL archive, not a backup: leave out"
                " source and backup_id"
            )
        return self

    def target(self) -> Moment | None:
        """The moment asked, as the service takes it."""
        if self.target_time in (None, LATEST, RANDOM):
            return cast(Moment | None, self.target_time)
        return moment(self.target_time)


class DrillOut(Output):
    """Read from the row (``model_validate(row, from_attributes=True)``) or from an answer."""

    id: uuid.UUID
    application_id: uuid.UUID
    backup_id: uuid.UUID | None = Field(
        validation_alias=AliasChoices("backup_id", "backup_execution_id"),
        description="the backup restored; null once deleted",
    )
    status: DrillStatus
    trigger: str
    workflow_id: str | None
    run_id: str | None
    schedule_id: str | None
    started_at: datetime | None
    completed_at: datetime | None
    recovery_seconds: float | None = Field(
        description="restore start to verified copy, in seconds (succeeded drills)"
    )
    bytes_restored: int | None
    checks: list[CheckResultOut] | None
    error_message: str | None
    cleanup: str | None = Field(
        default=None,
        validation_alias=AliasChoices("cleanup", AliasPath("details", "cleanup")),
        description="what happened to the scratch database and folder",
    )
    notes: dict[str, Any] | None = Field(
        default=None, validation_alias=AliasChoices("notes", AliasPath("details", "notes"))
    )
    target_time: str | None = Field(
        default=None,
        validation_alias=AliasChoices("target_time", AliasPath("details", "target_time")),
        description="a drill to a moment: the moment recovered to (RFC 3339) or `latest`;"
        " null: a drill of a backup",
    )
    target_time_random: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "target_time_random", AliasPath("details", "target_time_random")
        ),
        description="true: target_time was drawn at random from the window when requested",
    )
    offsite_target_id: uuid.UUID | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "offsite_target_id", AliasPath("details", "offsite_target_id")
        ),
        description="the offsite target whose copy the drill reads; null: the primary storage",
    )
    offsite_chosen: str | None = Field(
        default=None,
        validation_alias=AliasChoices("offsite_chosen", AliasPath("details", "offsite_chosen")),
        description="a scheduled drill of a drill policy reading offsite: which backup it chose"
        " and why (the newest with a finished copy there; newer ones not copied yet passed over)",
    )
    temporal_ui_url: str | None = None
    created_at: datetime


class DrillDetail(DrillOut):
    timeline: Timeline | None = None
    timeline_error: str | None = None
