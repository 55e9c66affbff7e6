"""Scheduled drills that read an offsite copy (docs/drills.md, docs/offsite.md): the drill
policy's ``source``, the real Temporal schedule triggered, a real append-only rclone target,
the primary storage's folder gone."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client, ScheduleOverlapPolicy

from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.integration.test_cli import cairn
from tests.integration.test_drills import TERMINAL, finished_drill
from tests.integration.test_offsite import (
    second_copy_waiting,
    site,  # noqa: F401  (the fixture)
    targets_of,
)
from tests.support.api import ApiClient, World, expect, wait_for
from tests.support.backups import make_app
from tests.support.database import libpq_url
from tests.support.offsite_servers import OffsiteSite
from tests.support.served import served  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

CHECK = {"name": "items present", "sql": "SELECT count(*) > 0 FROM items"}


async def test_a_scheduled_drill_reads_the_newest_copied_backup_when_the_primary_is_gone(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    site: OffsiteSite,  # noqa: F811
    settings: Settings,
    temporal_client: Client,
    served: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path / "app")
    owner = world.auth("owner")
    url = f"/api/v1/applications/{app.id}/drill-policy"
    drills = f"/api/v1/applications/{app.id}/drills"
    created = await expect(
        await api.put(url, json={"schedule": "0 4 * * 0", "checks": [CHECK]}, headers=owner), 201
    )
    assert created["source"] == "primary"
    empty = await expect(
        await api.post(
            targets_of(app.workspace),
            json=site.target_body(name="empty"),
            headers=world.auth("ws_admin"),
        ),
        201,
    )
    theirs = await expect(
        await api.post(
            targets_of(world.workspaces["b"]),
            json=site.target_body(name=f"theirs-{uuid.uuid4().hex[:6]}"),
            headers=world.auth("other_admin"),
        ),
        201,
    )

    # bad sources: refused as a manual drill refuses them, nothing changed
    body = {"schedule": "0 4 * * 0", "checks": [CHECK]}
    for source, status in (
        (str(uuid.uuid4()), 404),
        (theirs["id"], 404),
        ("nearby", 422),
        ("", 422),
        (7, 422),
    ):
        answer = await api.put(url, json={**body, "source": source}, headers=owner)
        assert answer.status_code == status, (source, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    # a moment is recovered from the WAL archive, never from a copy: 422 on source. The flag
    # alone is set (for the PUT's check only; no archiver is wanted here), else the
    # archiving-off 422 on target_time would come first
    with psycopg.connect(libpq_url(settings.database_url), autocommit=True) as conn:
        flag = "UPDATE backup_policies SET continuous_archiving = %s WHERE application_id = %s"
        conn.execute(flag, (True, app.id))
        try:
            problem = await expect(
                await api.put(
                    url, json={**body, "source": "offsite", "target_time": "latest"}, headers=owner
                ),
                422,
            )
        finally:
            conn.execute(flag, (False, app.id))
    assert [e["field"] for e in problem["errors"]] == ["body.source"], problem
    assert "WAL archive, which offsite copies do not hold" in problem["errors"][0]["message"]
    assert await expect(await api.get(url, headers=owner), 200) | {"schedule_state": None} == (
        created | {"schedule_state": None}
    )

    # two backups: the first copied, the second's copy waits for the stopped target
    target_id, first, second = await second_copy_waiting(api, world, app, site)
    try:
        primary = settings.storage_mount_root / app.storage_pve_id
        shutil.rmtree(primary)  # the second backup can never be copied now
    finally:
        site.everyday.start()
    schedule = temporal_client.get_schedule_handle(created["schedule_id"])

    async def scheduled(done: Any = finished_drill) -> dict[str, Any]:
        """The drill the schedule starts now, at its end."""
        page = await expect(await api.get(drills, headers=owner), 200)
        known = {d["id"] for d in page["items"]}
        await schedule.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
        page = await wait_for(
            api,
            drills,
            owner,
            lambda p: bool(p["items"]) and p["items"][0]["id"] not in known and done(p["items"][0]),
            seconds=180,
        )
        drill = page["items"][0]
        assert drill["trigger"] == "schedule", drill
        return dict(drill)

    # a target holding no copy: the drill fails saying so, and the target cannot be deleted
    await expect(await api.put(url, json={**body, "source": empty["id"]}, headers=owner), 200)
    refused = await api.delete(
        f"{targets_of(app.workspace)}/{empty['id']}", headers=world.auth("ws_admin")
    )
    assert refused.status_code == 409 and "drill policy" in refused.text, refused.text
    failed = await scheduled(lambda d: d["status"] in TERMINAL)
    assert failed["status"] == "failed" and failed["backup_id"] is None, failed
    assert failed["error_message"] == (
        "begin: the drill policy reads an offsite copy, and no backup of the application has a"
        f" finished copy at offsite target {empty['id']} yet; wait for a copy or set the source"
        " to primary"
    )

    # the CLI sets source offsite; the drill reads the newest copied backup: the first
    ran = await cairn(
        served,
        world.tokens["owner"],
        tmp_path,
        *("drills", "policy", "--app", app.id, "--from", "offsite", "-o", "json"),
    )
    assert ran.code == 0, ran
    assert ran.json()["source"] == "offsite" and ran.json()["checks"] == [CHECK]
    await expect(
        await api.delete(
            f"{targets_of(app.workspace)}/{empty['id']}", headers=world.auth("ws_admin")
        ),
        204,
    )
    drill = await scheduled()
    assert drill["status"] == "succeeded", drill["error_message"]
    assert drill["backup_id"] == first["id"] and drill["offsite_target_id"] == target_id
    assert second["id"] != first["id"]
    assert drill["offsite_chosen"].startswith(
        "the newest backup with a finished offsite copy at any target, copied to offsite"
        f" ({target_id}) at "
    ), drill["offsite_chosen"]
    assert drill["offsite_chosen"].endswith("; 1 newer backup(s) not copied at any target yet")
    assert [c["outcome"] for c in drill["checks"]] == ["passed"]
    assert not primary.exists()  # no step read (or recreated) the primary storage
