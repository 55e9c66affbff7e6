"""What crosses the Temporal boundary in a backup run: its input, each step's input and result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.states import BackupType, RunStatus, Trigger

BACKUP_WORKFLOW = "BackupWorkflow"


@dataclass
class BackupRequest:
    application_id: str
    workspace_id: str
    policy_id: str
    storage_id: str
    trigger: Trigger
    backup_type: BackupType
    include_volumes: bool
    include_database: bool
    retention_days: int
    execution_id: str | None = None  # manual runs: the row the API created


@dataclass
class BeginBackup:
    request: BackupRequest
    workflow_id: str
    run_id: str
    schedule_id: str | None = None


@dataclass
class ExecutionRef:
    execution_id: str
    volumes: list[str]
    include_database: bool
    # the application's named databases (MariaDB, Redis) to dump; refs recorded before
    # there were any read as none
    databases: list[str] = field(default_factory=list)


@dataclass
class NamedDumpJob:
    execution_id: str
    database: str  # a named database (the main PostgreSQL one is dump_database's)


@dataclass
class SnapshotStep:
    consistent: bool
    note: str
    volumes: dict[str, str]  # volume name -> folder the upload reads


@dataclass
class UploadJob:
    execution_id: str
    volume: str
    path: str
    backup_type: BackupType


@dataclass
class PartResult:
    part: str
    snapshot_id: str
    bytes_processed: int
    data_added: int
    files: int
    reused: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecordJob:
    execution_id: str
    parts: list[PartResult]
    snapshot: SnapshotStep
    started_at: str


@dataclass
class StoredManifest:
    snapshot_id: str
    manifest: dict[str, Any]
    size_bytes: int


@dataclass
class SuccessJob:
    execution_id: str
    stored: StoredManifest


@dataclass
class FailJob:
    """The outcome of a run that did not succeed; only the metadata database is needed."""

    begin: BeginBackup
    execution_id: str | None  # None when the run failed before it had a row
    message: str
    status: RunStatus = RunStatus.FAILED  # failed or cancelled


@dataclass
class FailRecorded:
    execution_id: str | None
    settled: bool  # False: the row had ended already (nothing to alert twice)
