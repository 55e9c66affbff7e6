"""What starts a backup run: carried by a policy's schedule or a manual trigger."""

from __future__ import annotations

from dataclasses import dataclass

BACKUP_WORKFLOW = "BackupWorkflow"


@dataclass
class BackupRequest:
    application_id: str
    workspace_id: str
    policy_id: str
    storage_id: str
    trigger: str  # manual | schedule
    backup_type: str  # full | incremental
    include_volumes: bool
    include_database: bool
    retention_days: int
    execution_id: str | None = None  # manual runs: the row the API created
