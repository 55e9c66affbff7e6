"""What crosses the Temporal boundary for an application's continuous archiving (docs/pitr.md).

Field names are stored in workflow histories: never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass

ARCHIVER_WORKFLOW = "ArchiverWorkflow"
TARGET_TIME = "target_time"
"""The key of a restore row's ``details`` holding the moment restored to: a stamp or LATEST."""
LATEST = "latest"
RANDOM = "random"
"""A drill's moment asked as ``random``: drawn from the window once, when it is requested."""
DRAWN = "target_time_random"
"""The key of a drill row's ``details``: true when its ``TARGET_TIME`` was drawn at random."""
RESTORED_DATABASE = "restored_database"
"""The key of a restore row's ``details`` holding the identity (``system_identifier:oid``) of
the new database a restore to a moment made on the application's server: the archiver
accepts it beside the live database (the application's own data), by identity, not name."""
SLOT_LOST = "archive.slot_lost"
"""The audit action the archiver writes when its slot was lost (the window has a gap from the
last archived moment); ``services/archive_notices.py`` tells each one once."""
STRETCH_SECONDS = 3600
"""How long one ``archive_wal`` activity streams before the workflow continues as new."""


def archiver_id(application_id: object) -> str:
    """The one archiver of an application: starting it twice finds the running one."""
    return f"archiver-{application_id}"


@dataclass(frozen=True)
class ArchiverJob:
    """One stretch of an application's archiver; ``base_backup_due`` is an ISO time, None
    when no base backup was taken yet."""

    application_id: str
    base_backup_due: str | None = None
    stretch_seconds: int = STRETCH_SECONDS
    base_backup_hours: int = 24


@dataclass(frozen=True)
class StretchJob:
    application_id: str
    seconds: int


@dataclass(frozen=True)
class Stretch:
    """What one stretch shipped and what the server keeps for the archiver."""

    shipments: int
    last_until: str | None  # every commit up to this server time is in the repository
    restarts: int  # times pg_receivewal was started again after it ended
    retained_bytes: int  # WAL the slot makes the server keep
    keep_limit_bytes: int | None  # the server's max_slot_wal_keep_size; None: unbounded
    slot_lost: bool  # the server removed WAL the slot needed: the window has a gap
