"""Tools the worker needs break under it: restic becomes unrunnable, the storage becomes
read-only. The backup ends ``failed`` with the tool's own words, the failure webhook fires,
the row is not left ``running``, and the application can be backed up again once the tool
is back."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable

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
)

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SETTLE_SECONDS = 90


async def failed_then_recovered(
    stack: Stack,
    figures: Figures,
    app: App,
    run: Run,
    words: tuple[str, ...],
    repair: Callable[[], None],
) -> None:
    """The common verdict of a broken tool, then the repair and a backup that succeeds."""
    owner = stack.world.auth("owner")
    await settle(stack.api, run, owner, lambda: run.started + SETTLE_SECONDS)
    text = figures.text()
    assert run.body is not None, (text, stack.worker.tail())
    body = run.body
    assert body["status"] == "failed", text
    assert body["timeline"]["workflow_status"] == "failed", text
    message = body["error_message"] or ""
    assert any(w in message.lower() for w in words), (f"not the tool's words: {message!r}", text)
    assert "exceeds size limit" not in message, message
    assert stack.webhook.for_execution(body["id"]), ("no failure webhook", text)
    assert open_rows(stack.settings) == 0, text
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
