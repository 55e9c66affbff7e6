"""Outages of what cairn stands on, in the middle of a backup: the Temporal server stopped and
started again with its state, the metadata database's connections cut, the metadata database
refusing connections for most of a minute. The run ends in a status that tells the truth."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.support.backups import make_app
from tests.support.chaos import (
    REPORTS,
    Figures,
    Stack,
    backup_run,
    database_down,
    kill_connections,
    open_rows,
    read,
    settle,
    wait_for_step,
)

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

DATA_STEPS = {
    "snapshot_volumes",
    "dump_database",
    "upload_volume",
    "store_manifest",
    "record_success",
}
SETTLE_SECONDS = 120


def check(figures: Figures, stack: Stack) -> None:
    """The common verdict: terminal, equal to Temporal, nothing open, a webhook on failure."""
    text = figures.text()
    assert not figures.stuck(), (text, stack.worker.tail())
    assert not figures.untruthful(), text
    for run in figures.runs:
        if run.status in ("failed", "cancelled"):
            assert stack.webhook.for_execution(run.id), ("no webhook", text)
    assert open_rows(stack.settings) == 0, text


async def test_temporal_server_stopped_and_restarted_mid_backup(stack: Stack, seed: int) -> None:
    rng = random.Random(seed)
    figures = Figures("Temporal dev server stopped and restarted mid-backup", seed=seed)
    REPORTS.append(figures)
    app = await make_app(stack.api, stack.world, stack.pg, stack.app_folder("app"))
    temporal = await stack.api.app.state.temporal.get()  # type: ignore[attr-defined]
    run = await backup_run(stack, app)
    figures.runs.append(run)
    aim = rng.choice(sorted(DATA_STEPS))
    reached = await wait_for_step(temporal, run.workflow_id or "", {aim}, 20)
    down = rng.uniform(10, 20)
    stack.temporal.stop()
    await asyncio.sleep(down)
    stack.temporal.start()
    restarted = time.monotonic()
    figures.faults.append(f"Temporal stopped {down:.0f}s, aimed at {aim} (reached: {reached})")
    if not stack.worker.alive():
        figures.notes.append("the worker exited while Temporal was down; restarted it")
        stack.worker.start()
    await settle(stack.api, run, stack.world.auth("owner"), lambda: restarted + SETTLE_SECONDS)
    figures.notes.append(f"worker alive after the outage: {stack.worker.alive()}")
    print(figures.text())
    check(figures, stack)


async def test_metadata_connections_killed_mid_backup(stack: Stack, seed: int) -> None:
    rng = random.Random(seed)
    figures = Figures("metadata database connections killed mid-backup", seed=seed)
    REPORTS.append(figures)
    app = await make_app(stack.api, stack.world, stack.pg, stack.app_folder("app"))
    run = await backup_run(stack, app)
    figures.runs.append(run)
    started, killed, rounds = time.monotonic(), 0, 0
    while time.monotonic() - started < 10:
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        killed += kill_connections(stack.pg, stack.dbname)
        rounds += 1
    last = time.monotonic()
    figures.faults.append(f"pg_terminate_backend x{rounds} over 10s: {killed} connections cut")
    await settle(stack.api, run, stack.world.auth("owner"), lambda: last + SETTLE_SECONDS)
    print(figures.text())
    check(figures, stack)
    # cut connections are reopened: nothing about the backup itself failed
    assert run.status == "succeeded", (run.body or {}).get("error_message")


async def test_metadata_database_refusing_connections_for_most_of_a_minute(
    stack: Stack, seed: int
) -> None:
    rng = random.Random(seed)
    figures = Figures("metadata database refuses connections mid-backup", seed=seed)
    REPORTS.append(figures)
    app = await make_app(stack.api, stack.world, stack.pg, stack.app_folder("app"))
    temporal = await stack.api.app.state.temporal.get()  # type: ignore[attr-defined]
    run = await backup_run(stack, app)
    figures.runs.append(run)
    aim = rng.choice(sorted(DATA_STEPS))
    reached = await wait_for_step(temporal, run.workflow_id or "", {aim}, 20)
    down = rng.uniform(35, 50)
    answers: list[int] = []
    with database_down(stack.pg, stack.dbname):
        until = time.monotonic() + down
        while time.monotonic() < until:
            response = await stack.api.get(run.path, headers=stack.world.auth("owner"))
            answers.append(response.status_code)
            await asyncio.sleep(2)
    back = time.monotonic()
    figures.faults.append(
        f"metadata database refused connections {down:.0f}s, aimed at {aim} (reached: {reached})"
    )
    figures.notes.append(f"API answers while it was down: {sorted(set(answers))}")
    await settle(stack.api, run, stack.world.auth("owner"), lambda: back + SETTLE_SECONDS)
    print(figures.text())
    check(figures, stack)
    # a realistic outage is outlasted: the backup completes once the database is back
    assert run.status == "succeeded", (run.body or {}).get("error_message")
    assert set(answers) <= {200, 503}, f"the API answered {sorted(set(answers))} while down"
    assert await read(stack.api, run.path, stack.world.auth("owner")) is not None
