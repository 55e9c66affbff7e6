"""Bodies of backup executions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from api.schemas.common import Input, Output
from core.states import RunStatus

Status = Literal[
    RunStatus.RUNNING,
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.PRUNED,
]
"""What a backup can be (never pending: its row is written when it starts)."""


class BackupTrigger(Input):
    """Empty for now: a manual backup runs with the policy's settings."""


class Step(Output):
    activity_id: str
    step: str
    status: str
    scheduled_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    attempts: int
    last_failure: str | None


class Timeline(Output):
    workflow_status: str | None
    steps: list[Step]
    progress: dict[str, Any] | None = Field(
        description="live heartbeat of the running data step: bytes_done, total_bytes, percent"
    )


class OffsiteCopyBrief(Output):
    """A backup's copy at one offsite target, as its listing shows it (``…/copies`` has all)."""

    target_id: uuid.UUID
    target_name: str
    status: str = Field(description="pending, copied, failed or expired")
    copied_at: datetime | None


class BackupOut(Output):
    id: uuid.UUID
    application_id: uuid.UUID
    policy_id: uuid.UUID | None = Field(description="null once the policy was deleted")
    status: str
    trigger: str
    workflow_id: str | None
    run_id: str | None
    schedule_id: str | None
    size_bytes: int | None
    backup_path: str | None
    started_at: datetime
    completed_at: datetime | None
    error_message: str | None
    metadata: dict[str, Any] | None
    temporal_ui_url: str | None
    last_verified_by_drill_at: datetime | None = Field(
        default=None, description="when a successful restore drill last proved this backup"
    )
    protected: bool = Field(description="retention never prunes a protected backup")
    protected_by: str | None
    protected_at: datetime | None
    copies: list[OffsiteCopyBrief] = Field(
        default_factory=list, description="the backup's offsite copies (docs/offsite.md)"
    )
    restorable_from: list[str] = Field(
        default_factory=list,
        description="the `source` values a restore of it accepts now: `primary` while its"
        " storage holds it, and the id of each offsite target holding a finished copy (all a"
        " backup the primary's retention pruned keeps)",
    )


class BackupDetail(BackupOut):
    timeline: Timeline | None = None
    timeline_error: str | None = None
