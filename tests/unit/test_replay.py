"""Recorded histories of real runs still replay against today's workflow code."""

from __future__ import annotations

import json

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.support.histories import HISTORIES
from workflows.backup import BackupWorkflow
from workflows.drill import RestoreDrillWorkflow
from workflows.reconcile import ReconcileSchedulesWorkflow
from workflows.restore import RestoreWorkflow
from workflows.retention import RetentionSweepWorkflow
from workflows.settle_runs import SettleRunsWorkflow
from workflows.storage import WORKFLOWS

RECORDED = sorted(HISTORIES.glob("*.json"))


def test_histories_are_recorded() -> None:
    names = {path.stem for path in RECORDED}
    assert {"backup-succeeded", "backup-quota-exceeded", "backup-cancelled",
            "storage-provision-ceph", "storage-provision-rejected",
            "storage-delete-forced", "restore-succeeded", "restore-verify-failed",
            "restore-cancelled", "runs-settle", "drill-succeeded",
            "drill-check-failed", "drill-cancelled", "retention-sweep"} <= names  # fmt: skip


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_history_replays(path: object) -> None:
    from pathlib import Path

    assert isinstance(path, Path)
    events = json.loads(path.read_text())
    workflow_id = path.stem
    history = WorkflowHistory.from_json(workflow_id, events)
    replayer = Replayer(
        workflows=[
            *WORKFLOWS,
            BackupWorkflow,
            ReconcileSchedulesWorkflow,
            RestoreWorkflow,
            SettleRunsWorkflow,
            RestoreDrillWorkflow,
            RetentionSweepWorkflow,
        ]
    )
    await replayer.replay_workflow(history)
