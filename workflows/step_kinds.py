"""How each kind of step runs: one bundle of activity options per kind, named by what it does.

A call site spreads its kind (``await steps.upload_volume(job, summary=..., **TRANSFER)``)
and states only what is its own (the summary, whether a cancel waits), so two steps of one
kind cannot drift apart and a kind's queue, timeouts and retries are changed in one place.
The budgets themselves are in ``workflows/retries.py``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypedDict

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from contracts.task_queues import DATA_TASK_QUEUE
    from workflows.retries import (
        ALERT_RETRY,
        ALERT_STEP,
        BEGIN_BUDGET,
        CLEANUP_RETRY,
        CONTROL_RETRY,
        CONTROL_STEP,
        DATA_RETRY,
        DRILL_CHECKS_STEP,
        DRILL_CLEANUP_RETRY,
        HEARTBEAT,
        LISTING_STEP,
        METADATA_BUDGET,
        METADATA_RETRY,
        METADATA_STEP,
        OFFSITE_COPY_BUDGET,
        OFFSITE_COPY_RETRY,
        PERIODIC_RETRY,
        PREPARE_STEP,
        PRUNE_HEARTBEAT,
        PURGE_STEP,
        RECONCILE_STEP,
        RESUME_RETRY,
        SETTLE_RUNS_STEP,
        SNAPSHOT_STEP,
        STORAGE_CALL_RETRY,
        STORAGE_CALL_STEP,
        TRANSFER_STEP,
        USAGE_READING_STEP,
        VERIFY_RESULT_STEP,
    )


class StepKind(TypedDict, total=False):
    """The options every step of one kind shares: its queue, timeouts and retries."""

    task_queue: str
    start_to_close_timeout: timedelta
    schedule_to_close_timeout: timedelta
    heartbeat_timeout: timedelta
    retry_policy: RetryPolicy


class Options(StepKind, total=False):
    """How one call of a step runs: its kind's options, and its own cancellation and label.

    The call's own keys are not part of a kind, so a call can spread its kind and name them.
    """

    cancellation_type: workflow.ActivityCancellationType
    summary: str


# A cancelled step that writes backup or application data must have stopped before the run
# goes on: partial snapshots or scratch copies are cleaned up, the application is resumed and
# the outcome recorded only once nothing writes any more.
WAIT = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED

# Metadata steps: the database only, on the workflow's own (control) queue.
# Recording a run's outcome: record_success, record_failure, finish_restore, finish_drill.
RECORD: StepKind = {
    "start_to_close_timeout": METADATA_STEP,
    "schedule_to_close_timeout": METADATA_BUDGET,
    "retry_policy": METADATA_RETRY,
}
# A run's first step (begin_backup, begin_restore, begin_drill): gives up sooner.
BEGIN: StepKind = {**RECORD, "schedule_to_close_timeout": BEGIN_BUDGET}

# Steps on the data queue that heartbeat and ride out a hiccup of the storage or a tool;
# each kind below adds its time budget (or its own retries).
_DATA: StepKind = {"task_queue": DATA_TASK_QUEUE, "heartbeat_timeout": HEARTBEAT}
_DATA_RETRIED: StepKind = {**_DATA, "retry_policy": DATA_RETRY}
# Moving a whole part's data: dump_database, dump_named_database, upload_volume, verify_backup,
# restore_database, restore_named_database, restore_volume, restore_drill_database,
# restore_drill_volume, drill_named_database, and the prune of old backups.
TRANSFER: StepKind = {**_DATA_RETRIED, "start_to_close_timeout": TRANSFER_STEP}
# The retention sweep's prune (apply_retention): a transfer with more heartbeat slack.
PRUNE: StepKind = {**TRANSFER, "heartbeat_timeout": PRUNE_HEARTBEAT}
# Around the data: store_manifest, restore_config, verify_drill_backup.
PREPARE: StepKind = {**_DATA_RETRIED, "start_to_close_timeout": PREPARE_STEP}
# Proving restored data: verify_restore, verify_drill.
VERIFY_RESULT: StepKind = {**_DATA_RETRIED, "start_to_close_timeout": VERIFY_RESULT_STEP}
# A drill's checks against its scratch copy: run_drill_checks.
DRILL_CHECKS: StepKind = {**_DATA_RETRIED, "start_to_close_timeout": DRILL_CHECKS_STEP}
# Copying a backup to its offsite target (copy_to_offsite): a transfer retried for a day.
OFFSITE_COPY: StepKind = {
    **_DATA,
    "start_to_close_timeout": TRANSFER_STEP,
    "schedule_to_close_timeout": OFFSITE_COPY_BUDGET,
    "retry_policy": OFFSITE_COPY_RETRY,
}
# Releasing a backup's platform resources, best effort: release_backup, clean_up_failed.
CLEANUP: StepKind = {**_DATA, "start_to_close_timeout": PREPARE_STEP, "retry_policy": CLEANUP_RETRY}
# Removing a drill's scratch copy in every outcome: clean_up_drill.
DRILL_CLEANUP: StepKind = {**CLEANUP, "retry_policy": DRILL_CLEANUP_RETRY}
# Every backup of a storage removed on a forced delete: remove_storage_backups.
PURGE: StepKind = {**_DATA, "start_to_close_timeout": PURGE_STEP, "retry_policy": CONTROL_RETRY}
# Listing the policies the retention sweep prunes: list_retained_policies.
LISTING: StepKind = {
    "task_queue": DATA_TASK_QUEUE,
    "start_to_close_timeout": LISTING_STEP,
    "retry_policy": CONTROL_RETRY,
}

# Calls to the application's platform or the storage from the control queue, heartbeating.
# The quota check and stopping the application: check_quota, quiesce.
PLATFORM: StepKind = {
    "start_to_close_timeout": PREPARE_STEP,
    "heartbeat_timeout": HEARTBEAT,
    "retry_policy": DATA_RETRY,
}
# Taking the volumes' snapshots: snapshot_volumes.
SNAPSHOT: StepKind = {**PLATFORM, "start_to_close_timeout": SNAPSHOT_STEP}
# Starting the application again after a restore: resume.
RESUME: StepKind = {**PLATFORM, "retry_policy": RESUME_RETRY}

# Storage management, on the control queue.
# A call to the PVE API: provision_storage, deprovision_storage.
STORAGE_CALL: StepKind = {
    "start_to_close_timeout": STORAGE_CALL_STEP,
    "retry_policy": STORAGE_CALL_RETRY,
}
# Database rows and listings: forget_storage, set_storage_status, list_monitored_storages.
CONTROL: StepKind = {"start_to_close_timeout": CONTROL_STEP, "retry_policy": CONTROL_RETRY}

# Periodic jobs, on the control queue: their next run tries again.
# One storage's usage reading: refresh_storage_usage.
USAGE_READING: StepKind = {
    "start_to_close_timeout": USAGE_READING_STEP,
    "retry_policy": PERIODIC_RETRY,
}
# Settling the rows of closed runs: settle_closed_runs.
SETTLE_RUNS: StepKind = {
    "start_to_close_timeout": SETTLE_RUNS_STEP,
    "heartbeat_timeout": HEARTBEAT,
    "retry_policy": PERIODIC_RETRY,
}
# Repairing the policies' schedules: reconcile_policy_schedules.
RECONCILE: StepKind = {"start_to_close_timeout": RECONCILE_STEP, "retry_policy": PERIODIC_RETRY}

# The failure alert: notify_failure.
ALERT: StepKind = {"start_to_close_timeout": ALERT_STEP, "retry_policy": ALERT_RETRY}
