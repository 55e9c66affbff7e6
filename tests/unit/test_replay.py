"""Recorded histories of real runs still replay against today's workflow code."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any, cast

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from core.settings import Settings
from tests.support.histories import HISTORIES
from worker import registry
from workflows import steps

RECORDED = sorted(HISTORIES.glob("*.json"))


def test_histories_are_recorded() -> None:
    names = {path.stem for path in RECORDED}
    assert {
        "backup-succeeded",
        "backup-quota-exceeded",
        "backup-cancelled",
        "storage-provision-ceph",
        "storage-provision-rejected",
        "storage-delete-forced",
        "storage-usage-refresh",
        "restore-succeeded",
        "restore-verify-failed",
        "restore-cancelled",
        "runs-settle",
        "drill-succeeded",
        "drill-check-failed",
        "drill-cancelled",
        "drill-named-databases",
        "retention-sweep",
        "policy-schedules-reconcile",
    } <= names


def test_every_workflow_has_a_recorded_history() -> None:
    started = {
        json.loads(p.read_text())["events"][0]["workflowExecutionStartedEventAttributes"][
            "workflowType"
        ]["name"]
        for p in RECORDED
    }
    served = {workflow._Definition.must_from_class(cls).name for cls in registry.WORKFLOWS}
    assert served - started == set()


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
    await Replayer(workflows=registry.WORKFLOWS).replay_workflow(history)


def test_workflows_call_activities_by_the_names_and_types_the_worker_serves(
    tmp_path: Path,
) -> None:
    """A renamed activity would strand every run in flight; a wrong type would misread it."""
    unused = cast(Any, None)
    served = registry.activities(unused, Settings(storage_mount_root=tmp_path), unused)
    returns = {}
    for method in [*served.control, *served.data]:
        definition = activity._Definition.must_from_callable(method)
        returns[definition.name] = typing.get_type_hints(method)["return"]
    called = {
        step.name: step.result_type
        for step in vars(steps).values()
        if isinstance(step, (steps.Step, steps.Listing))
    }
    assert {name: returns.get(name) for name in called} == called
