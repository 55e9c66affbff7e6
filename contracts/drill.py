"""What crosses the Temporal boundary in a restore drill."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.states import RunStatus, Trigger

DRILL_WORKFLOW = "RestoreDrillWorkflow"
# The scratch copy's cleanup is tried this often (the workflow's retry policy); the activity's
# last attempt notes the failure on the row instead of failing.
CLEANUP_ATTEMPTS = 10


@dataclass
class DrillRequest:
    """What starts a drill: a policy's drill schedule or the API."""

    application_id: str
    workspace_id: str
    trigger: Trigger
    drill_id: str | None = None  # manual runs: the row the API created
    schedule_id: str | None = None  # scheduled runs: the schedule that started it


@dataclass
class BeginDrill:
    request: DrillRequest
    workflow_id: str
    run_id: str


@dataclass
class DrillPlan:
    drill_id: str
    backup_id: str | None  # None: a drill to a moment, recovered from the WAL archive
    database: bool
    volumes: list[str]
    target_time: str | None = None
    """A drill to a moment (docs/pitr.md): the moment as recorded on the drill (a stamp, or
    ``latest``); None: a drill of a backup."""
    databases: list[str] = field(default_factory=list)
    """The named databases (MariaDB, Redis) the backup holds; plans recorded before drills
    knew them read as none."""


@dataclass
class DrillVolume:
    drill_id: str
    volume: str


@dataclass
class DrillDatabase:
    drill_id: str
    database: str  # a named database (the main PostgreSQL one is restore_drill_database's)


@dataclass
class DatabaseDrilled:
    """A named database loaded into scratch and measured as backed up."""

    bytes: int
    summary: str


@dataclass
class Verified:
    volume_bytes: int
    summary: str


@dataclass
class Recovered:
    """A drill's database recovered to its moment and verified against the recovered server."""

    database_bytes: int
    summary: str


@dataclass
class CheckOutcome:
    name: str
    outcome: str  # passed | failed | error
    message: str


@dataclass
class FinishDrill:
    """The outcome to record; only the metadata database is needed."""

    begin: BeginDrill
    drill_id: str | None  # None when the run failed before it had a row
    status: RunStatus  # succeeded, failed or cancelled
    message: str | None = None
    recovery_seconds: float | None = None
    bytes_restored: int | None = None
    checks: list[CheckOutcome] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class DrillRecorded:
    drill_id: str | None
    settled: bool  # True when this call ended the row (so the run alerts once)
