"""Seeded random SIGKILLs of ``cairn worker`` (with its restic / pg_dump children) at any step of
backups and restores of several applications, the worker restarted after each kill.

Every run must end in the status Temporal gives its workflow, within a bounded time after the
last fault; no row stays ``running``; no (execution, part) has two restic snapshots; every
succeeded restore brings the application back byte for byte; every failed or cancelled run
sent its webhook.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client

from db.models import BackupRepository
from db.session import make_engine, make_sessionmaker
from repository.store import read_password
from tests.support.backups import App, make_app
from tests.support.chaos import (
    REPORTS,
    Figures,
    Run,
    Stack,
    app_state,
    disturb,
    open_rows,
    settle,
    snapshot_parts,
    started_steps,
    trigger_backup,
    trigger_restore,
)

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

APPS = 4
# per application, in order: 4 backups and 2 restores, so 24 runs in all
PLAN = ("backup", "backup", "restore", "backup", "restore", "backup")
KILLS = 8
SETTLE_SECONDS = 120  # a run must be terminal this long after its start or the last fault
# Where a kill may aim; "any" kills at a random moment whatever runs.
STEPS = (
    "any",
    "any",
    "any",
    "begin_backup",
    "check_quota",
    "snapshot_volumes",
    "dump_database",
    "upload_volume",
    "store_manifest",
    "record_success",
    "release_backup",
    "apply_retention",
    "begin_restore",
    "verify_backup",
    "quiesce",
    "restore_database",
    "restore_volume",
    "verify_restore",
    "resume",
    "finish_restore",
)


@dataclass
class Chaos:
    stack: Stack
    rng: random.Random
    figures: Figures
    in_flight: dict[str, str] = field(default_factory=dict)  # run id -> workflow id
    last_fault: float = 0.0
    worker_since: float = 0.0  # wall clock time the current worker started
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def deadline(self, run: Run) -> Any:
        return lambda: max(run.started, self.last_fault) + SETTLE_SECONDS

    async def pending(self, client: Client) -> list[str]:
        """Activities the live worker has started in the runs in flight (those of a killed
        worker stay pending until their timeout)."""
        names = []
        for workflow_id in list(self.in_flight.values()):
            names += await started_steps(client, workflow_id, since=self.worker_since)
        return names

    async def kill_loop(self) -> None:
        client = await self.stack.api.app.state.temporal.get()  # type: ignore[attr-defined]
        for number in range(1, KILLS + 1):
            await asyncio.sleep(self.rng.uniform(1.5, 6.0))
            aim = self.rng.choice(STEPS)
            seen: list[str] = []
            waited = time.monotonic()
            while not self.done.is_set() and time.monotonic() - waited < 10:
                seen = await self.pending(client)
                if (aim == "any" and self.in_flight) or aim in seen:
                    break
                await asyncio.sleep(0.1)
            if self.done.is_set():
                return
            worker = self.stack.worker
            worker.kill()
            self.last_fault = time.monotonic()
            hit = len(self.in_flight)
            worker.start()
            self.worker_since = time.time()
            found = "" if aim == "any" or aim in seen else " (not reached in 10s)"
            self.figures.faults.append(
                f"SIGKILL #{number} aimed at {aim}{found}: {hit} runs in flight,"
                f" started activities {sorted(seen) or 'none'}"
            )


async def drive(chaos: Chaos, app: App, index: int) -> None:
    """Runs the plan on one application, one run at a time, checking restores as it goes."""
    api, owner, figures = chaos.stack.api, chaos.stack.world.auth("owner"), chaos.figures
    states: dict[str, dict[str, Any]] = {}
    succeeded: list[str] = []
    for step, kind in enumerate(PLAN):
        if kind == "restore" and not succeeded:
            kind = "backup"
        if kind == "backup":
            state = app_state(app)
            code, body = await trigger_backup(api, app, owner)
            path = f"{app.backups}/{body['id']}" if code == 202 else ""
        else:
            backup_id = chaos.rng.choice(succeeded)
            disturb(app, f"{index}-{step}")
            code, body = await trigger_restore(api, app, backup_id, owner)
            path = f"/api/v1/applications/{app.id}/restores/{body['id']}" if code == 202 else ""
        if code != 202:
            figures.notes.append(f"app {index}: {kind} #{step} refused {code}: {body}")
            return
        run = Run(kind, body["id"], path, app.id, time.monotonic())
        if kind == "restore":
            run.backup_id = backup_id
            chaos.stack.restore_ids.append(run.id)
        figures.runs.append(run)
        chaos.in_flight[run.id] = body["workflow_id"]
        try:
            await settle(api, run, owner, chaos.deadline(run))
        finally:
            chaos.in_flight.pop(run.id, None)
        if run.body is None:
            return  # stuck: the next trigger would be refused, the figures tell
        if kind == "backup":
            states[run.id] = state
            if run.status == "succeeded":
                succeeded.append(run.id)
        elif run.status == "succeeded":
            figures.restores_checked += 1
            if app_state(app) == states[backup_id]:
                figures.restores_identical += 1
            else:
                figures.notes.append(f"restore {run.id} of {backup_id} is not identical")


async def duplicates(stack: Stack) -> int:
    engine = make_engine(stack.settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            repos = list(await session.scalars(select(BackupRepository)))
    finally:
        await engine.dispose()
    extra = 0
    for repo in repos:
        counts = snapshot_parts(repo.path, read_password(stack.settings, repo))
        extra += sum(n - 1 for n in counts.values() if n > 1)
    return extra


async def test_random_sigkills_of_the_worker_leave_every_run_truthful(
    stack: Stack, seed: int
) -> None:
    rng = random.Random(seed)
    figures = Figures("worker SIGKILL at random steps", seed=seed)
    REPORTS.append(figures)
    apps = [
        await make_app(stack.api, stack.world, stack.pg, stack.app_folder(f"app-{i}"))
        for i in range(APPS)
    ]
    chaos = Chaos(stack, rng, figures)
    killer = asyncio.create_task(chaos.kill_loop())
    try:
        await asyncio.wait_for(
            asyncio.gather(*(drive(chaos, app, i) for i, app in enumerate(apps))),
            timeout=KILLS * 20 + SETTLE_SECONDS + 120,
        )
    finally:
        chaos.done.set()
        await asyncio.gather(killer, return_exceptions=True)
    await asyncio.sleep(2)  # notifications are the workflows' last step; give the POST a beat
    for run in figures.runs:
        if run.status in ("failed", "cancelled") and not stack.webhook.for_execution(run.id):
            figures.webhooks_missing += 1
    figures.duplicates = await duplicates(stack)
    left_running = open_rows(stack.settings)
    figures.notes.append(f"rows left running or pending in the database: {left_running}")
    print(figures.text())

    assert len(figures.runs) >= 20, (figures.text(), stack.worker.tail())
    assert not figures.stuck(), (figures.text(), stack.worker.tail())
    assert not figures.untruthful(), figures.text()
    assert left_running == 0, figures.text()
    assert figures.duplicates == 0, figures.text()
    assert figures.webhooks_missing == 0, figures.text()
    assert figures.restores_identical == figures.restores_checked, figures.text()
    assert figures.restores_checked >= 1, figures.text()
    # A SIGKILLed restic leaves its lock in the repository; a later run that fails on it is a
    # backup lost to an earlier crash, not to its own fault.
    locked = [
        r.id for r in figures.runs if "already locked" in str((r.body or {}).get("error_message"))
    ]
    assert not locked, ("runs failed on a stale restic lock", figures.text())
