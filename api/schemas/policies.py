"""Bodies of backup policies and the live state of their schedules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, StringConstraints

from api.schemas.common import Input, Output
from core.retention_rule import LIMITS
from core.states import BackupType

PolicyBackupType = Literal[BackupType.FULL, BackupType.INCREMENTAL]
KEEP_LAST = "keep the newest N successful backups (restic --keep-last); 0: off"
KEEP_DAILY = "keep the newest backup of each of the last N days, in the policy's time zone"
KEEP_WEEKLY = "keep the newest backup of each of the last N ISO weeks"
KEEP_MONTHLY = "keep the newest backup of each of the last N months"
KEEP_YEARLY = "keep the newest backup of each of the last N years"


class PolicyIn(Input):
    """Create or update: on update, a field left out keeps its stored value.

    ``include_database`` and ``include_volumes`` left out on create follow the application
    (a part it has is included, one it lacks is not), so the default policy can always run.
    """

    storage_id: uuid.UUID
    enabled: StrictBool = True
    schedule: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="cron: minute hour day-of-month month day-of-week, or @daily and friends"
    )
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"
    retention_days: StrictInt | None = Field(
        default=None,
        ge=1,
        le=LIMITS["retention_days"],
        description="keep every backup started within this many days; null: no age rule."
        " Default on create: 30 when no keep_* count is given",
    )
    keep_last: StrictInt = Field(default=0, ge=0, le=LIMITS["keep_last"], description=KEEP_LAST)
    keep_daily: StrictInt = Field(default=0, ge=0, le=LIMITS["keep_daily"], description=KEEP_DAILY)
    keep_weekly: StrictInt = Field(
        default=0, ge=0, le=LIMITS["keep_weekly"], description=KEEP_WEEKLY
    )
    keep_monthly: StrictInt = Field(
        default=0, ge=0, le=LIMITS["keep_monthly"], description=KEEP_MONTHLY
    )
    keep_yearly: StrictInt = Field(
        default=0, ge=0, le=LIMITS["keep_yearly"], description=KEEP_YEARLY
    )
    backup_type: PolicyBackupType = BackupType.FULL
    include_volumes: StrictBool | None = Field(
        default=None,
        description="default on create: whether the application has volumes; true needs one",
    )
    include_database: StrictBool | None = Field(
        default=None,
        description="default on create: whether the application has a database; true needs one",
    )
    offsite_target_id: uuid.UUID | None = Field(
        default=None,
        description="an offsite target of the workspace every successful backup is copied to;"
        " null: none",
    )
    continuous_archiving: StrictBool = Field(
        default=False,
        description="stream the database's WAL into the storage for restores to a moment"
        " (docs/pitr.md); needs a database on a local platform",
    )
    archive_window_days: StrictInt = Field(
        default=7, ge=1, le=35, description="how many days back a restore to a moment reaches"
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
    retention_days: int | None
    keep_last: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    keep_yearly: int
    backup_type: PolicyBackupType
    include_volumes: bool
    include_database: bool
    offsite_target_id: uuid.UUID | None = None
    continuous_archiving: bool = False
    archive_window_days: int = 7
    created_at: datetime
    updated_at: datetime
    schedule_id: str
    schedule_state: ScheduleStateOut | None = None
    schedule_error: str | None = Field(
        default=None, description="why the live state could not be read from Temporal"
    )
    overdue: bool = Field(
        default=False,
        description="no successful backup since the schedule owed one, past the grace"
        " (docs/alerts.md); false while paused",
    )
    overdue_since: datetime | None = Field(
        default=None, description="when the missed run's grace ran out"
    )


class TriggerOut(Output):
    schedule_id: str
    triggered_at: datetime
    overlap: str


class RetentionRuleOut(Output):
    retention_days: int | None
    keep_last: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    keep_yearly: int
    timezone: str


class RetentionItem(Output):
    backup_id: uuid.UUID
    started_at: datetime
    status: str
    protected: bool
    reasons: list[str] = Field(
        description="why it is kept (e.g. 'daily 2026-11-20', 'last 3', 'protected',"
        " 'newest successful') or why it would be pruned"
    )


class RetentionPreviewOut(Output):
    rule: RetentionRuleOut
    proposed: bool = Field(description="true: a rule given in the query, not the saved one")
    evaluated_at: datetime
    keep: list[RetentionItem] = Field(description="newest first")
    prune: list[RetentionItem] = Field(description="what the next prune removes, newest first")
