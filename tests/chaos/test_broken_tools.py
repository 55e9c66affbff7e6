"""Tools the worker needs break under it: restic becomes unrunnable, the storage becomes
read-only (remounted, or made immutable). The run ends ``failed`` with the tool's own words
(never as a dead worker, never with a cause Temporal dropped for its size), the failure
webhook fires, the row is not left ``running``, and the application can be backed up again
once the tool is back."""

from __future__ import annotations

import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.backups import App, make_app
from tests.support.chaos import (
    REPORTS,
    Figures,
    ResticSwitch,
    Run,
    Stack,
    backup_run,
    open_rows,
    remount_read_only,
    settle,
    trigger_restore,
)

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SETTLE_SECONDS = 90


async def failed_truthfully(
    stack: Stack, figures: Figures, run: Run, words: tuple[str, ...]
) -> dict[str, Any]:
    """The common verdict of a broken tool: failed in the tool's words, alerted, closed."""
    owner = stack.world.auth("owner")
    await settle(stack.api, run, owner, lambda: run.started + SETTLE_SECONDS)
    text = figures.text()
    assert run.body is not None, (text, stack.worker.tail())
    body = run.body
    assert body["status"] == "failed", text
    assert body["timeline"]["workflow_status"] == "failed", text
    message = body["error_message"] or ""
    assert any(w in message.lower() for w in words), (f"not the tool's words: {message!r}", text)
    assert "no answer from the worker" not in message, message
    temporal = await stack.api.app.state.temporal.get()  # type: ignore[attr-defined]
    history = await temporal.get_workflow_handle(run.workflow_id or "").fetch_history()
    assert "exceeds size limit" not in history.to_json().lower(), message
    assert stack.webhook.for_execution(body["id"]), ("no failure webhook", text)
    assert open_rows(stack.settings) == 0, text
    return body


async def failed_then_recovered(
    stack: Stack,
    figures: Figures,
    app: App,
    run: Run,
    words: tuple[str, ...],
    repair: Callable[[], None],
) -> None:
    """The common verdict of a broken tool, then the repair and a backup that succeeds."""
    await failed_truthfully(stack, figures, run, words)
    await recovered(stack, figures, app, repair)


async def recovered(stack: Stack, figures: Figures, app: App, repair: Callable[[], None]) -> None:
    owner = stack.world.auth("owner")
    repair()
    again = await backup_run(stack, app)  # refused (409) if the failed row still blocked the app
    figures.runs.append(again)
    await settle(stack.api, again, owner, lambda: again.started + SETTLE_SECONDS)
    assert again.status == "succeeded", (figures.text(), stack.worker.tail())


async def test_restic_unrunnable_mid_run(stack: Stack, seed: int) -> None:
    rng = random.Random(seed)
    figures = Figures("restic made unrunnable mid-run", seed=seed)
    REPORTS.append(figures)
    app = await make_app(stack.api, stack.world, stack.pg, stack.app_folder("app"))
    run = await backup_run(stack, app)
    figures.runs.append(run)
    how = rng.choice(("exit 127", "missing"))
    if how == "missing":
        stack.restic.remove()
    else:
        stack.restic.broken()
    figures.faults.append(f"restic {how} right after the trigger was accepted")
    words = (ResticSwitch.MESSAGE.lower(), "exit 127", "no such file", "restic")
    try:
        await failed_then_recovered(stack, figures, app, run, words, stack.restic.working)
    finally:
        print(figures.text())


def private_mounts_work() -> bool:
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    return probe.returncode == 0


async def test_storage_read_only(stack: Stack, seed: int) -> None:
    if not private_mounts_work():
        pytest.skip("no mount namespaces here (unshare --mount refused): cannot remount read-only")
    figures = Figures("backup storage made read-only", seed=seed)
    REPORTS.append(figures)
    worker = stack.replace_worker(private_mounts=True)
    app = await make_app(stack.api, stack.world, stack.pg, stack.app_folder("app"))
    first = await backup_run(stack, app)  # the repository exists before the storage breaks
    figures.runs.append(first)
    await settle(stack.api, first, stack.world.auth("owner"), lambda: first.started + 60)
    assert first.status == "succeeded", (figures.text(), worker.tail())
    storage = stack.settings.storage_mount_root
    remount_read_only(worker, storage)
    figures.faults.append(f"{storage} remounted read-only for the worker")

    def writable_again() -> None:
        subprocess.run(
            ["nsenter", "--target", str(worker.pid), "--mount", "--", "umount", str(storage)],
            check=True,
            capture_output=True,
        )

    run = await backup_run(stack, app)
    figures.runs.append(run)
    try:
        await failed_then_recovered(
            stack, figures, app, run, ("read-only file system",), writable_again
        )
    finally:
        print(figures.text())


def immutable_folders_work() -> bool:
    """``chattr +i`` needs root and a file system that keeps the flag (ext4, xfs, btrfs)."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        probe.mkdir()
        made = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, check=False)
        if made.returncode != 0:
            return False
        try:
            (probe / "x").touch()
        except OSError:
            return True
        finally:
            subprocess.run(["chattr", "-i", str(probe)], capture_output=True, check=False)
        return False


def seconds_recorded(body: dict[str, Any]) -> float:
    started, ended = body["started_at"], body["completed_at"]
    return (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds()


async def test_storage_made_immutable(stack: Stack, seed: int) -> None:
    """``chattr -R +i`` on the storage folder: restic cannot even take its lock there.

    A plain ``chattr +i`` on the storage folder or on the repository folder does not stop
    a backup (only the folder's own entries are frozen, restic writes in its subfolders);
    recursively, it used to end after minutes as "no answer from the worker" while restic
    retried its lock, with its Go stack trace as the failure.
    """
    if not immutable_folders_work():
        pytest.skip("chattr +i is refused here (not root, or a file system without the flag)")
    figures = Figures("backup storage made immutable (chattr -R +i)", seed=seed)
    REPORTS.append(figures)
    owner = stack.world.auth("owner")
    app = await make_app(stack.api, stack.world, stack.pg, stack.app_folder("app"))
    first = await backup_run(stack, app)
    figures.runs.append(first)
    await settle(stack.api, first, owner, lambda: first.started + 60)
    assert first.status == "succeeded", (figures.text(), stack.worker.tail())
    storage = stack.settings.storage_mount_root / app.storage_pve_id

    def chattr(flag: str) -> None:
        subprocess.run(["chattr", "-R", flag, str(storage)], check=True, capture_output=True)

    chattr("+i")
    figures.faults.append(f"chattr -R +i {storage}")
    try:
        run = await backup_run(stack, app)
        figures.runs.append(run)
        body = await failed_truthfully(stack, figures, run, ("storage is read-only",))
        assert seconds_recorded(body) < 30, (body["error_message"], figures.text())
        assert "github.com/" not in body["error_message"], body["error_message"]

        code, accepted = await trigger_restore(stack.api, app, first.id, owner)
        assert code == 202, accepted
        stack.restore_ids.append(accepted["id"])
        path = f"/api/v1/applications/{app.id}/restores/{accepted['id']}"
        restore = Run("restore", accepted["id"], path, app.id, time.monotonic())
        restore.workflow_id = accepted["workflow_id"]
        figures.runs.append(restore)
        body = await failed_truthfully(stack, figures, restore, ("storage is read-only",))
        assert seconds_recorded(body) < 30, (body["error_message"], figures.text())
    finally:
        chattr("-i")
        print(figures.text())
    await recovered(stack, figures, app, lambda: None)
