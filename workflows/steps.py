"""The activities the workflows call, by the name the worker registers and the type they return.

Workflows never import the activities (code that does I/O); they call each step by its
registered name (an activity method is registered under the method's name). The names are
the ones recorded in every history, so they never change. ``tests/unit/test_replay.py``
checks each name and result type against the registry the worker serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Unpack, cast

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.backup import (
        BeginBackup,
        ExecutionRef,
        FailJob,
        FailRecorded,
        NamedDumpJob,
        PartResult,
        RecordJob,
        SnapshotStep,
        StoredManifest,
        SuccessJob,
        UploadJob,
    )
    from contracts.channels import ChannelNotice, ChannelSend
    from contracts.copy import CopyJob, CopyOutcome
    from contracts.drill import (
        BeginDrill,
        CheckOutcome,
        DatabaseDrilled,
        DrillDatabase,
        DrillPlan,
        DrillRecorded,
        DrillVolume,
        FinishDrill,
        Recovered,
        Verified,
    )
    from contracts.notify import FailureEvent
    from contracts.restore import FinishRestore, NamedDatabaseJob, RestorePlan, VolumeJob
    from contracts.storage import StorageJob, StorageStatusChange, StorageUsage
    from workflows.step_kinds import Options

ArgT = TypeVar("ArgT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Step(Generic[ArgT, ResultT]):
    """An activity that takes one argument."""

    name: str
    result_type: type[ResultT]

    async def __call__(self, arg: ArgT, **options: Unpack[Options]) -> ResultT:
        result = await workflow.execute_activity(
            self.name, arg, result_type=self.result_type, **options
        )
        return cast(ResultT, result)


@dataclass(frozen=True)
class Listing(Generic[ResultT]):
    """An activity that takes no argument (it reads what to do from the database)."""

    name: str
    result_type: type[ResultT]

    async def __call__(self, **options: Unpack[Options]) -> ResultT:
        result = await workflow.execute_activity(self.name, result_type=self.result_type, **options)
        return cast(ResultT, result)


NONE = type(None)

# activities/backup.py
begin_backup = Step[BeginBackup, ExecutionRef]("begin_backup", ExecutionRef)
check_quota = Step[str, int]("check_quota", int)
snapshot_volumes = Step[str, SnapshotStep]("snapshot_volumes", SnapshotStep)
dump_database = Step[str, PartResult]("dump_database", PartResult)
dump_named_database = Step[NamedDumpJob, PartResult]("dump_named_database", PartResult)
upload_volume = Step[UploadJob, PartResult]("upload_volume", PartResult)
store_manifest = Step[RecordJob, StoredManifest]("store_manifest", StoredManifest)
record_success = Step[SuccessJob, int]("record_success", int)
record_failure = Step[FailJob, FailRecorded]("record_failure", FailRecorded)
clean_up_failed = Step[str, str]("clean_up_failed", str)
release_backup = Step[str, str]("release_backup", str)

# activities/copy.py
offsite_target_of = Step[str, str | None]("offsite_target_of", str | None)  # type: ignore[arg-type]
start_copy = Step[CopyJob, None]("start_copy", NONE)
copy_to_offsite = Step[CopyJob, list[str]]("copy_to_offsite", list[str])
finish_copy = Step[CopyOutcome, None]("finish_copy", NONE)

# activities/offsite_retention.py
list_offsite_targets = Listing[list[str]]("list_offsite_targets", list[str])
apply_offsite_retention = Step[str, list[str]]("apply_offsite_retention", list[str])

# activities/retention.py
list_retained_policies = Listing[list[str]]("list_retained_policies", list[str])
apply_retention = Step[str, list[str]]("apply_retention", list[str])

# activities/restore.py
begin_restore = Step[str, RestorePlan]("begin_restore", RestorePlan)
verify_backup = Step[str, str]("verify_backup", str)
quiesce = Step[str, str]("quiesce", str)
resume = Step[str, str]("resume", str)
restore_database = Step[str, str]("restore_database", str)
restore_volume = Step[VolumeJob, str]("restore_volume", str)
restore_named_database = Step[NamedDatabaseJob, str]("restore_named_database", str)
restore_config = Step[str, str]("restore_config", str)
verify_restore = Step[str, dict[str, Any]]("verify_restore", dict[str, Any])
finish_restore = Step[FinishRestore, bool]("finish_restore", bool)

# activities/drill.py
begin_drill = Step[BeginDrill, DrillPlan]("begin_drill", DrillPlan)
verify_drill_backup = Step[str, str]("verify_drill_backup", str)
restore_drill_database = Step[str, int]("restore_drill_database", int)
restore_drill_volume = Step[DrillVolume, str]("restore_drill_volume", str)
drill_named_database = Step[DrillDatabase, DatabaseDrilled]("drill_named_database", DatabaseDrilled)
verify_drill = Step[DrillPlan, Verified]("verify_drill", Verified)
run_drill_checks = Step[DrillPlan, list[CheckOutcome]]("run_drill_checks", list[CheckOutcome])
finish_drill = Step[FinishDrill, DrillRecorded]("finish_drill", DrillRecorded)
clean_up_drill = Step[str, str]("clean_up_drill", str)
# activities/recovery.py: a drill to a moment
recover_drill_database = Step[str, Recovered]("recover_drill_database", Recovered)

# activities/storage.py
provision_storage = Step[StorageJob, None]("provision_storage", NONE)
deprovision_storage = Step[StorageJob, None]("deprovision_storage", NONE)
remove_storage_backups = Step[StorageJob, int]("remove_storage_backups", int)
set_storage_status = Step[StorageStatusChange, None]("set_storage_status", NONE)
forget_storage = Step[str, None]("forget_storage", NONE)
list_monitored_storages = Listing[list[str]]("list_monitored_storages", list[str])
refresh_storage_usage = Step[str, StorageUsage]("refresh_storage_usage", StorageUsage)

# activities/runs.py, activities/notify.py and the policy-schedule repair
settle_closed_runs = Listing[list[FailureEvent]]("settle_closed_runs", list[FailureEvent])
notify_failure = Step[FailureEvent, None]("notify_failure", NONE)
notify_overdue = Listing[int]("notify_overdue", int)
notify_nearly_full = Listing[int]("notify_nearly_full", int)  # activities/storage_notices.py

# activities/channels.py: notices to the workspaces' notification channels
channels_for_notice = Step[ChannelNotice, list[str]]("channels_for_notice", list[str])
send_channel_notice = Step[ChannelSend, str]("send_channel_notice", str)
reconcile_policy_schedules = Listing[dict[str, Any]]("reconcile_policy_schedules", dict[str, Any])
