"""Bodies of backup policies and the live state of their schedules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from api.schemas.common import Input, Output


class PolicyIn(Input):
    """Create or update: on update, a field left out keeps its stored value.

    ``include_database`` and ``include_volumes`` left out on create follow the application
    (a part it has is included, one it lacks is not), so the default policy can always run.
    """

    storage_id: uuid.UUID
    enabled: bool = True
    schedule: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="cron: minute hour day-of-month month day-of-week, or @daily and friends"
    )
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"
    retention_days: int = Field(default=30, ge=1, le=3650)
    backup_type: Literal["full", "incremental"] = "full"
    include_volumes: bool | None = Field(
        default=None,
        description="default on create: whether the application has volumes; true needs one",
    )
    include_database: bool | None = Field(
        default=None,
        description="default on create: whether the application has a database; true needs one",
    )


class ScheduleRun(Output):
    workflow_id: str | None
    run_id: str | None
    scheduled_at: datetime
    started_at: datetime
    status: str | None


class ScheduleStateOut(Output):
    present: bool
    paused: bool | None
    note: str | None
    next_runs: list[datetime]
    recent_runs: list[ScheduleRun]


class PolicyOut(Output):
    id: uuid.UUID
    application_id: uuid.UUID
    storage_id: uuid.UUID
    enabled: bool
    schedule: str
    timezone: str
    retention_days: int
    backup_type: Literal["full", "incremental"]
    include_volumes: bool
    include_database: bool
    created_at: datetime
    updated_at: datetime
    schedule_id: str
    schedule_state: ScheduleStateOut | None = None
    schedule_error: str | None = Field(
        default=None, description="why the live state could not be read from Temporal"
    )


class TriggerOut(Output):
    schedule_id: str
    triggered_at: datetime
    overlap: str
