"""An offsite copy interrupted twice at once: the ``cairn worker`` process killed (SIGKILL,
its ``restic copy`` child with it) mid-copy, and the target away for most of a minute. After
a restart the same copy ends ``copied`` with one snapshot per part, and the target holds
less than twice the data. Runtime about 90 s, most of it the heartbeat timeout and the
outage.

Runs its own Temporal dev server (``test_worker_crash.isolated``) so that only the worker
process under test serves the task queues; the copy is slowed by the target's bandwidth
limit so the kill lands while restic uploads.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from contracts.copy import copy_workflow_id
from core.settings import Settings
from tests.integration.test_offsite import (
    add_target,
    remotes,
    restic,
    site,  # noqa: F401  (the fixture)
    stored_bytes,
)
from tests.integration.test_worker_crash import (
    _bulk_app,
    isolated,  # noqa: F401  (the fixture)
    start_worker,
)
from tests.support.api import build_world, expect, running_app, wait_for
from tests.support.backups import finished, random_file
from tests.support.offsite_servers import OffsiteSite

pytestmark = pytest.mark.integration

VOLUME_MB = 32
LIMIT_KIB = 4096  # about 8 s for the whole volume: the kill lands mid-copy
# The worker's second attempt comes a heartbeat timeout and a backoff after the kill (~35 s)
# and fails on the absent target; the third comes ~20 s later and finds it back.
OUTAGE_SECONDS = 50


async def copy_attempts(temporal: Client, workflow_id: str) -> int:
    """How many times the copy step was started (its history's highest attempt)."""
    attempts = 0
    async for event in temporal.get_workflow_handle(workflow_id).fetch_history_events():
        if event.HasField("activity_task_started_event_attributes"):
            attempts = max(attempts, event.activity_task_started_event_attributes.attempt)
    return attempts


async def test_a_copy_killed_mid_upload_and_cut_off_for_a_minute_resumes_without_duplicates(
    isolated: Settings,  # noqa: F811
    site: OffsiteSite,  # noqa: F811
    tmp_path: Path,
) -> None:
    volume = tmp_path / "bulk"
    volume.mkdir()
    random_file(volume / "random.bin", VOLUME_MB)
    log = tmp_path / "worker.log"
    worker = start_worker(isolated, log)
    try:
        async with running_app(isolated) as client:
            world = await build_world(client)
            base, owner = await _bulk_app(client, world, volume)
            app = await expect(await client.get(base, headers=owner), 200)
            target_id = await add_target(
                client, world, app["workspace_id"], site, upload_limit_kib=LIMIT_KIB
            )
            policy = await expect(await client.get(f"{base}/backup-policy", headers=owner), 200)
            body = {
                "storage_id": policy["storage_id"],
                "schedule": policy["schedule"],
                "include_database": False,
                "offsite_target_id": target_id,
            }
            await expect(await client.post(f"{base}/backup-policy", json=body, headers=owner), 200)
            accepted = await expect(await client.post(f"{base}/backups", headers=owner), 202)
            backup = await wait_for(
                client, f"{base}/backups/{accepted['id']}", owner, finished, seconds=120
            )
            assert backup["status"] == "succeeded", backup["error_message"]
            repositories = isolated.storage_mount_root.glob("*/workspaces/*/applications/*")
            (primary,) = [r for r in repositories if r.name == app["id"]]
            sent = stored_bytes(primary)
            repo = site.root / "workspaces" / app["workspace_id"] / "applications" / app["id"]

            # mid-copy: restic has put more than half of the data at the target (a pack whole,
            # the next one on its way: rclone drops that one when the connection breaks)
            deadline = time.monotonic() + 120
            while not ((repo / "data").is_dir() and stored_bytes(repo) > sent * 0.6):
                assert time.monotonic() < deadline, "restic never started the copy"
                await asyncio.sleep(0.05)
            os.killpg(worker.pid, signal.SIGKILL)  # the worker and its restic child
            worker.wait()
            at_kill = stored_bytes(repo)
            assert at_kill < sent, "the copy ended before the kill"
            site.everyday.stop()  # and the target goes away for a minute
            cut_off = time.monotonic()
            worker = start_worker(isolated, log)
            await asyncio.sleep(OUTAGE_SECONDS)
            site.everyday.start()
            places = await wait_for(
                client,
                f"{base}/backups/{backup['id']}/copies",
                owner,
                lambda p: p[-1]["status"] in ("copied", "failed"),
                seconds=300,
            )
            resumed_after = time.monotonic() - cut_off
            temporal = await client.app.state.temporal.get()  # type: ignore[attr-defined]
            attempts = await copy_attempts(temporal, copy_workflow_id(backup["id"], target_id))
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
    assert places[-1]["status"] == "copied", (places, log.read_text()[-3000:])
    assert attempts >= 3  # the killed one, one or more against the absent target, the last
    assert len(places[-1]["snapshot_ids"]) == 2  # the manifest and the volume, once each
    everyday, maintenance = await remotes(isolated, app["id"], target_id)
    listed = restic(everyday, "snapshots", "--json", "--tag", f"execution={backup['id']}")
    assert listed.stdout.count('"id"') == 2, listed.stdout
    # what the killed restic uploaded without indexing it is sent again (restic's index, not
    # cairn, decides): the target holds less than twice the backup, never two copies
    final = stored_bytes(repo)
    assert final < 2 * sent, (at_kill, final, sent)
    print(
        f"primary {sent} B, at the kill {at_kill} B, at the target after {final} B,"
        f" copied {resumed_after:.0f} s after the kill"
    )
    check = restic(maintenance, "check", "--read-data")
    assert check.returncode == 0, check.stderr
