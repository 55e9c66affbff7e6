"""Every state a run or a storage can be in, what starts a run and a workspace's plans: one
home for the words.

They are ``StrEnum``s, so a member is the very string stored in the database, sent in a
workflow payload and shown by the API; rows and payloads written before keep their meaning.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A backup, restore or drill run; backups alone can end ``pruned`` (retention)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"


LIVE = (RunStatus.PENDING, RunStatus.RUNNING)
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class StorageStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNAVAILABLE = "unavailable"
    ERROR = "error"
    DELETING = "deleting"


class CopyStatus(StrEnum):
    """A backup's copy at an offsite target (``backup_copies.status``)."""

    PENDING = "pending"
    COPIED = "copied"
    FAILED = "failed"
    EXPIRED = "expired"  # removed by offsite retention, after its protection period


class Trigger(StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"


class BackupType(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"


class Plan(StrEnum):
    """A workspace's plan, as the PaaS sets it."""

    FREE = "free"
    PRO = "pro"
    DEDICATED = "dedicated"


def has_backups(plan: str) -> bool:
    """Backups live on the Dedicated plan only: the one plan check (a workspace row's plan)."""
    return plan == Plan.DEDICATED
