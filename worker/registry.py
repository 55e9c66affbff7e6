"""Every workflow and activity cairn runs, and the task queue each activity is served on.

One list for the worker (``worker/main.py``) and for the replay test, so a workflow added
here is both served and proven to replay its recorded histories.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.archive import ArchiveActivities
from activities.backup import BackupActivities
from activities.channels import ChannelActivities
from activities.copy import CopyActivities
from activities.drill import DrillActivities
from activities.notify import Notifier
from activities.offsite_retention import OffsiteRetentionActivities
from activities.overdue_notices import OverdueNotifier
from activities.recovery import RecoveryActivities
from activities.restore import RestoreActivities
from activities.retention import RetentionActivities
from activities.runs import RunActivities
from activities.schedule_repair import ScheduleActivities
from activities.storage import StorageActivities
from activities.storage_notices import StorageNotifier
from adapters.restic import Restic
from adapters.storage_backend import backend_for
from core.settings import Settings
from workflows.archiver import ArchiverWorkflow
from workflows.backup import BackupWorkflow
from workflows.channel_notices import ChannelNoticesWorkflow
from workflows.copy import OffsiteCopyWorkflow
from workflows.drill import RestoreDrillWorkflow
from workflows.offsite_retention import OffsiteRetentionWorkflow
from workflows.overdue_notices import OverdueNoticesWorkflow
from workflows.reconcile import ReconcileSchedulesWorkflow
from workflows.restore import RestoreWorkflow
from workflows.restore_to_time import RestoreToTimeWorkflow
from workflows.retention import RetentionSweepWorkflow
from workflows.settle_runs import SettleRunsWorkflow
from workflows.storage import (
    DeleteStorageWorkflow,
    ProvisionStorageWorkflow,
    RefreshStorageUsageWorkflow,
)

# Every workflow runs on the control queue.
WORKFLOWS: list[type] = [
    ProvisionStorageWorkflow,
    DeleteStorageWorkflow,
    RefreshStorageUsageWorkflow,
    ReconcileSchedulesWorkflow,
    BackupWorkflow,
    RestoreWorkflow,
    RetentionSweepWorkflow,
    SettleRunsWorkflow,
    RestoreDrillWorkflow,
    ArchiverWorkflow,
    RestoreToTimeWorkflow,
    OffsiteCopyWorkflow,
    OffsiteRetentionWorkflow,
    OverdueNoticesWorkflow,
    ChannelNoticesWorkflow,
]


@dataclass(frozen=True)
class Activities:
    """The activities of each queue: control steps touch only the database, Temporal and
    PVE; data steps read or write backup data."""

    control: list[Callable[..., Any]]
    data: list[Callable[..., Any]]


def activities(
    client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> Activities:
    """Every activity, bound to the resources it works with."""
    backend = backend_for(settings)
    restic = Restic(settings.restic_bin, cache_dir=settings.restic_cache)
    storage = StorageActivities(sessions, settings, backend)
    backups = BackupActivities(sessions, settings, restic, backend, client)
    restores = RestoreActivities(sessions, settings, restic)
    retention = RetentionActivities(sessions, settings, restic)
    drills = DrillActivities(sessions, settings, restic)
    copies = CopyActivities(sessions, settings, restic)
    offsite_retention = OffsiteRetentionActivities(sessions, settings, restic)
    recovery = RecoveryActivities(sessions, settings, restic)
    return Activities(
        control=[
            *storage.control(),
            *backups.control(),
            *restores.control(),
            Notifier(settings, client, sessions).notify_failure,
            OverdueNotifier(sessions, settings, client).notify_overdue,
            StorageNotifier(sessions, client).notify_nearly_full,
            ChannelActivities(sessions, settings).channels_for_notice,
            ChannelActivities(sessions, settings).send_channel_notice,
            ScheduleActivities(client, sessions, settings).reconcile_policy_schedules,
            RunActivities(client, sessions).settle_closed_runs,
            *drills.control(),
            *copies.control(),
            *offsite_retention.control(),
            *recovery.control(),
        ],
        data=[
            *storage.data(),
            *backups.data(),
            *restores.data(),
            *retention.data(),
            *drills.data(),
            *ArchiveActivities(sessions, settings, restic).data(),
            *recovery.data(),
            *copies.data(),
            *offsite_retention.data(),
        ],
    )
