"""What crosses the Temporal boundary in a backup's offsite copy, and the states of a copy."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.states import CopyStatus

OFFSITE_COPY_WORKFLOW = "OffsiteCopyWorkflow"


def copy_workflow_id(execution_id: str, target_id: str) -> str:
    """One copy workflow per backup and target: a second start joins nothing, it is refused."""
    return f"offsite-copy-{execution_id}-{target_id}"


@dataclass
class CopyJob:
    execution_id: str
    target_id: str


@dataclass
class CopyOutcome:
    job: CopyJob
    status: CopyStatus
    message: str | None = None
    snapshot_ids: list[str] = field(default_factory=list)
