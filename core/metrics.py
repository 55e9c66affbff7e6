"""Prometheus metrics the worker records as backups happen (the API derives its own from the DB)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

BACKUPS_STARTED = Counter("cairn_backups_started_total", "Backups started", ["trigger"])
BACKUPS_SUCCEEDED = Counter("cairn_backups_succeeded_total", "Backups succeeded", ["trigger"])
BACKUPS_FAILED = Counter("cairn_backups_failed_total", "Backups failed or cancelled", ["trigger"])
BACKUP_DURATION = Histogram(
    "cairn_backup_duration_seconds",
    "Wall time of successful backups",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400),
)
BACKUP_SIZE = Histogram(
    "cairn_backup_size_bytes",
    "Bytes read by successful backups",
    buckets=tuple(float(2**n) for n in range(20, 42, 2)),
)
LAST_SUCCESS = Gauge(
    "cairn_backup_last_success_timestamp_seconds",
    "When the newest successful backup of an application completed",
    ["application_id"],
)
RESTORES_STARTED = Counter("cairn_restores_started_total", "Restores started")
RESTORES_SUCCEEDED = Counter("cairn_restores_succeeded_total", "Restores succeeded")
RESTORES_FAILED = Counter("cairn_restores_failed_total", "Restores failed or cancelled")
RESTORE_DURATION = Histogram(
    "cairn_restore_duration_seconds",
    "Wall time of finished restores, by outcome",
    ["status"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400),
)

DRILLS_FAILED = Counter("cairn_drills_failed_total", "Restore drills failed or cancelled")
DRILL_LAST_SUCCESS = Gauge(
    "cairn_drill_last_success_timestamp_seconds",
    "When the newest successful restore drill of an application finished",
    ["application_id"],
)
DRILL_RECOVERY_SECONDS = Gauge(
    "cairn_drill_recovery_seconds",
    "Recovery time (restore start to verified copy) of an application's last successful drill",
    ["application_id"],
)
OFFSITE_COPIES_FINISHED = Counter(
    "cairn_offsite_copies_finished_total",
    "Offsite copies that ended, by outcome (copied; failed once their day of retries is spent)",
    ["status"],
)
OFFSITE_COPY_ATTEMPTS_FAILED = Counter(
    "cairn_offsite_copy_attempts_failed_total",
    "Attempts of offsite copies that failed (a target away, a killed restic); each is retried",
)


def count_unsuccessful(kind: str, trigger: str | None, started_at: datetime | None) -> None:
    """A backup, restore or drill that ended failed or cancelled, however it was settled."""
    if kind == "backup":
        BACKUPS_FAILED.labels(trigger or "manual").inc()
        return
    if kind == "drill":
        DRILLS_FAILED.inc()
        return
    RESTORES_FAILED.inc()
    if started_at is not None:
        RESTORE_DURATION.labels("failed").observe((datetime.now(UTC) - started_at).total_seconds())


# The archiver of an application with continuous archiving (docs/pitr.md), set by the worker
# running its stream; forgotten when archiving is turned off (stop_archiving on this worker).
ARCHIVER_LAST_ARCHIVED = Gauge(
    "cairn_archiver_last_archived_timestamp_seconds",
    "Server time up to which every commit of the application is in its storage (the last WAL"
    " shipment's until); time() minus it is the archiver's lag",
    ["application_id"],
)
ARCHIVER_LAG = Gauge(
    "cairn_archiver_lag_seconds",
    "Seconds from the last WAL shipment's until to the archiver's latest look (every 5 s)",
    ["application_id"],
)
ARCHIVER_RETAINED = Gauge(
    "cairn_archiver_slot_retained_bytes",
    "WAL the application's server keeps for the archiver's replication slot",
    ["application_id"],
)
ARCHIVER_KEEP_LIMIT = Gauge(
    "cairn_archiver_slot_keep_limit_bytes",
    "The server's max_slot_wal_keep_size (absent when unbounded): the most the slot may keep",
    ["application_id"],
)
ARCHIVER_SLOT_LOST = Gauge(
    "cairn_archiver_slot_lost",
    "1 when the server removed WAL the archiver's slot still needed (wal_status lost): the"
    " recovery window has a gap from then on",
    ["application_id"],
)
_ARCHIVER = (
    ARCHIVER_LAST_ARCHIVED,
    ARCHIVER_LAG,
    ARCHIVER_RETAINED,
    ARCHIVER_KEEP_LIMIT,
    ARCHIVER_SLOT_LOST,
)


def archiver_seen(
    application_id: str,
    archived_until: datetime | None,
    retained_bytes: int,
    keep_limit_bytes: int | None,
    lost: bool,
) -> None:
    """What the archiver's latest look found (``archived_until``: None before its first
    shipment in this process)."""
    if archived_until is not None:
        ARCHIVER_LAST_ARCHIVED.labels(application_id).set(archived_until.timestamp())
        lag = (datetime.now(UTC) - archived_until).total_seconds()
        ARCHIVER_LAG.labels(application_id).set(max(0.0, lag))
    ARCHIVER_RETAINED.labels(application_id).set(retained_bytes)
    if keep_limit_bytes is not None:
        ARCHIVER_KEEP_LIMIT.labels(application_id).set(keep_limit_bytes)
    ARCHIVER_SLOT_LOST.labels(application_id).set(1 if lost else 0)


def archiver_stopped(application_id: str) -> None:
    """Archiving turned off: its series go, so no alert fires on an archiver meant to stop."""
    for gauge in _ARCHIVER:
        with contextlib.suppress(KeyError):  # never seen on this worker
            gauge.remove(application_id)
