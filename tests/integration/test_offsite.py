"""Offsite copies against a real append-only restic REST server (``rclone serve restic``).

Nothing is replaced: restic copies into rclone's server, Temporal runs the copy workflow the
backup starts, and the immutability is proven with the very credentials cairn holds.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from psycopg.types.json import Jsonb
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.retention import RetentionActivities
from adapters.restic import Restic
from adapters.restic_remote import Remote
from contracts.copy import copy_workflow_id
from core.settings import Settings
from db.models import Application, OffsiteTarget
from db.session import make_engine, make_sessionmaker
from devstack.postgres import PostgresServer
from repository.offsite import everyday_remote, maintenance_remote
from tests.conftest import free_port
from tests.support import histories
from tests.support.api import ApiClient, World, expect, new_workspace, wait_for
from tests.support.backups import (
    App,
    make_app,
    repository_of,
    run_backup,
    table_hashes,
    tree_hashes,
)
from tests.support.database import libpq_url
from tests.support.offsite_servers import LOCK_DAYS, LOCKED_BUCKET, OffsiteSite, S3Site
from worker.metrics_endpoint import serve_metrics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OffsiteSite]:
    started = OffsiteSite.started(tmp_path_factory.mktemp("offsite"))
    try:
        yield started
    finally:
        started.stop()


def targets_of(workspace: str) -> str:
    return f"/api/v1/workspaces/{workspace}/offsite-targets"


async def add_target(
    api: ApiClient, world: World, workspace: str, site: OffsiteSite | S3Site, **extra: object
) -> str:
    created = await expect(
        await api.post(
            targets_of(workspace),
            json={**site.target_body(protection_days=14), **extra},
            headers=world.auth("ws_admin"),
        ),
        201,
    )
    return str(created["id"])


async def copied(api: ApiClient, world: World, app: App, backup_id: str) -> Any:
    return await wait_for(
        api,
        f"{app.backups}/{backup_id}/copies",
        world.auth("owner"),
        lambda places: places[-1]["where"] == "offsite" and places[-1]["status"] == "copied",
        seconds=180,
    )


async def second_copy_waiting(
    api: ApiClient, world: World, app: App, site: OffsiteSite
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The application's backups copied to a new target on ``site``: a first backup copied,
    then the target stopped and a second backup made, whose copy waits for the target.
    Returns the target's id and both backups."""
    target_id = await add_target(api, world, app.workspace, site)
    policy = {"storage_id": app.storage, "schedule": "0 3 * * *", "offsite_target_id": target_id}
    await expect(await api.post(app.policy, json=policy, headers=world.auth("owner")), 200)
    first = await run_backup(api, world, app)
    await copied(api, world, app, first["id"])
    site.everyday.stop()
    second = await run_backup(api, world, app)
    assert second["status"] == "succeeded"
    return target_id, first, second


def restic(remote: Remote, *args: str) -> subprocess.CompletedProcess[str]:
    """restic itself on the offsite repository, as anyone holding these credentials could."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
    env |= {"RESTIC_REPOSITORY": remote.location, "RESTIC_PASSWORD": remote.password}
    return subprocess.run(
        ["restic", "--no-cache", *args], env=env, capture_output=True, text=True, check=False
    )


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
LABEL = re.compile(r'(\w+)="([^"]*)"')


def samples(text: str) -> Samples:
    """A Prometheus text exposition, each sample keyed by its name and its set of labels."""
    found: Samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            name, _, labels = series.partition("{")
            found[(name, frozenset(LABEL.findall(labels)))] = float(value)
    return found


def sample(found: Samples, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly these labels, if exposed."""
    return found.get((name, frozenset(labels.items())))


async def scrape_api(api: ApiClient, world: World) -> Samples:
    """The API's /metrics, as Prometheus scrapes it (a platform administrator's token)."""
    answer = await api.get("/metrics", headers=world.auth("platform_admin"))
    assert answer.status_code == 200, answer.text
    return samples(answer.text)


def scrape_worker() -> Samples:
    """The worker's own endpoint (the tests' workers run in this process, so it serves
    their counters), scraped over HTTP with the scrape token."""
    token, port = secrets.token_urlsafe(16), free_port()
    server = serve_metrics("127.0.0.1", port, token)
    try:
        answer = httpx.get(
            f"http://127.0.0.1:{port}/", headers={"Authorization": f"Bearer {token}"}
        )
    finally:
        server.shutdown()
        server.server_close()
    assert answer.status_code == 200, answer.text
    return samples(answer.text)


def stored_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / "data").rglob("*") if p.is_file())


async def remotes(settings: Settings, app_id: str, target_id: str) -> tuple[Remote, Remote]:
    """The application's offsite repository with the everyday and the maintenance credentials."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            application = await session.get(Application, uuid.UUID(app_id))
            target = await session.get(OffsiteTarget, uuid.UUID(target_id))
            assert application is not None and target is not None
            everyday = await everyday_remote(session, settings, application, target)
            maintenance = await maintenance_remote(session, settings, application, target)
            assert maintenance is not None
            return everyday, maintenance
    finally:
        await engine.dispose()


async def test_a_target_is_stored_only_once_checked_and_its_secrets_never_show(
    api: ApiClient, world: World, site: OffsiteSite, settings: Settings
) -> None:
    workspace = await new_workspace(api, world)
    admin = world.auth("ws_admin")
    body = site.target_body()

    async def refused(changes: dict[str, Any], status: int = 422, who: str = "ws_admin") -> Any:
        answer = await api.post(
            targets_of(workspace), json={**body, **changes}, headers=world.auth(who)
        )
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        return answer.json()

    await refused({"url": "ftp://127.0.0.1:1"})
    await refused({"url": "http://offsite.example.com"})  # plain http off the loopback
    await refused({"url": f"http://a:b@127.0.0.1:{site.everyday.port}"})
    await refused({"protection_days": 0})
    await refused({"protection_days": "14"})
    await refused({"kind": "s3"})
    await refused({"surprise": True})
    down = await refused({"url": "http://127.0.0.1:9"})
    assert "connection refused" in down["detail"]
    wrong = await refused({"credentials": {"username": "cairn", "password": "wrong"}})
    assert "401" in wrong["detail"]
    deletes = await refused(
        {"url": site.maintenance.url, "credentials": site.maintenance.credentials}
    )
    assert "append-only" in deletes["detail"]
    assert deletes["errors"][0]["field"] == "body.url"
    await refused({}, 403, "member")
    listed = await expect(await api.get(targets_of(workspace), headers=admin), 200)
    assert listed["items"] == []

    created = await expect(await api.post(targets_of(workspace), json=body, headers=admin), 201)
    assert created["credentials_set"] and created["maintenance_credentials_set"]
    assert created["immutability"]["deletes_refused"]  # what the check proved, recorded
    assert created["immutability"]["overwrites_refused"]
    assert site.everyday.password not in str(created)
    await refused({}, 409)  # the same name again
    other = world.workspaces["b"]
    await expect(
        await api.get(f"{targets_of(other)}/{created['id']}", headers=world.auth("other_admin")),
        404,
    )
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        row = conn.execute(
            "SELECT t::text FROM offsite_targets t WHERE id = %s", (created["id"],)
        ).fetchone()
        audit = conn.execute(
            "SELECT details::text FROM audit_events WHERE target_id = %s AND action = %s",
            (created["id"], "offsite_target.create"),
        ).fetchone()
    assert row is not None and audit is not None
    for secret in (site.everyday.password, site.maintenance.password):
        assert secret not in row[0] and secret not in audit[0]


async def test_a_copy_cairn_cannot_delete_restores_without_the_primary(
    api: ApiClient,
    world: World,
    worker: None,
    database_server: PostgresServer,
    site: OffsiteSite,
    settings: Settings,
    temporal_client: Client,
    tmp_path: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path / "app")
    target_id = await add_target(api, world, app.workspace, site)
    policy = {"storage_id": app.storage, "schedule": "0 3 * * *", "offsite_target_id": target_id}
    saved = await expect(await api.post(app.policy, json=policy, headers=world.auth("owner")), 200)
    assert saved["offsite_target_id"] == target_id

    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup
    places = await copied(api, world, app, backup["id"])
    assert [p["where"] for p in places] == ["primary", "offsite"]
    parts = len(backup["metadata"]["parts"]) + 1  # and the manifest's snapshot
    assert places[1]["copied_at"] and len(places[1]["snapshot_ids"]) == parts
    await histories.record(
        temporal_client, copy_workflow_id(backup["id"], target_id), "offsite-copy-succeeded"
    )

    everyday, maintenance = await remotes(settings, app.id, target_id)
    # cairn's own credentials cannot remove history: restic's forget --prune is refused (after
    # restic's own retries, most of a minute: the reads below go on meanwhile, without a lock)...
    snapshot = places[1]["snapshot_ids"][0]
    forget = asyncio.create_task(asyncio.to_thread(restic, everyday, "forget", "--prune", snapshot))
    # ...and so is a DELETE of a snapshot file or a pack, over the REST protocol itself
    base = everyday.url
    auth = (everyday.username, everyday.secret)
    async with httpx.AsyncClient(auth=auth) as http:
        packs = (
            await http.get(f"{base}/data/", headers={"Accept": "application/vnd.x.restic.rest.v2"})
        ).json()
        for file in (f"snapshots/{snapshot}", f"data/{packs[0]['name']}"):
            assert (await http.delete(f"{base}/{file}")).status_code == 403
            assert (await http.post(f"{base}/{file}", content=b"junk")).status_code == 403
    # the primary storage's folder is gone: the offsite copy brings the volumes back whole
    shutil.rmtree(settings.storage_mount_root / app.storage_pve_id)
    for volume, path in app.volumes.items():
        part = f"part=volume:{volume}"
        found = restic(everyday, "--no-lock", "snapshots", "--json", "--tag", part)
        ids = [s for s in places[1]["snapshot_ids"] if s in found.stdout]
        assert len(ids) == 1, found.stdout
        into = tmp_path / "from-offsite" / volume
        restored = restic(everyday, "--no-lock", "restore", ids[0], "--target", str(into))
        assert restored.returncode == 0, restored.stderr
        assert tree_hashes(into) == tree_hashes(path)

    refused = await forget
    assert refused.returncode != 0 and "403" in refused.stderr, refused.stderr[-2000:]
    # the copy is whole afterwards: every snapshot there, every pack reads back
    check = restic(maintenance, "check", "--read-data")
    assert check.returncode == 0, check.stderr
    listed = restic(everyday, "snapshots", "--json")
    assert all(s in listed.stdout for s in places[1]["snapshot_ids"])


async def test_a_copy_outlives_an_outage_adds_nothing_twice_and_expires_only_when_unprotected(
    api: ApiClient,
    world: World,
    worker: None,
    database_server: PostgresServer,
    site: OffsiteSite,
    settings: Settings,
    temporal_client: Client,
    tmp_path: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path / "app")
    target_id = await add_target(api, world, app.workspace, site)
    policy = {"storage_id": app.storage, "schedule": "0 3 * * *", "offsite_target_id": target_id}
    await expect(await api.post(app.policy, json=policy, headers=world.auth("owner")), 200)
    first = await run_backup(api, world, app)
    await copied(api, world, app, first["id"])
    owner, application = world.auth("owner"), f"/api/v1/applications/{app.id}"
    series = {"workspace_id": app.workspace, "application_id": app.id, "target_id": target_id}
    everyday, _ = await remotes(settings, app.id, target_id)
    repo = site.root / "workspaces" / app.workspace / "applications" / app.id
    before = stored_bytes(repo)

    site.everyday.stop()
    try:
        second = await run_backup(api, world, app)  # the backup does not wait for the copy
        assert second["status"] == "succeeded"
        # the copy's row is written by its own workflow's first step, which may come a
        # moment after the backup's workflow closed (a loaded machine showed it)
        pending = await wait_for(
            api,
            f"{app.backups}/{second['id']}/copies",
            world.auth("owner"),
            lambda places: len(places) == 2,
            seconds=30,
        )
        assert pending[1]["status"] == "pending"
        await asyncio.sleep(12)  # past the copy's first attempts
        # the application shows its lag, and so does the API's /metrics
        lag = (await expect(await api.get(application, headers=owner), 200))["offsite"]
        assert (
            lag["target_id"] == target_id
            and lag["copies_pending"] == 1
            and lag["copies_failed"] == 0
        )
        assert lag["lag_seconds"] >= 12 and lag["last_copied_at"] is not None
        scraped = await scrape_api(api, world)
        assert (sample(scraped, "cairn_offsite_lag_seconds", **series) or 0) >= 12
        assert sample(scraped, "cairn_offsite_copies_behind", **series, status="pending") == 1
    finally:
        site.everyday.start()
    places = await copied(api, world, app, second["id"])
    assert places[1]["copied_at"]
    lag = (await expect(await api.get(application, headers=owner), 200))["offsite"]
    assert lag["lag_seconds"] == 0 and lag["copies_pending"] == 0
    assert lag["last_copied_at"] == places[1]["copied_at"]
    assert sample(await scrape_api(api, world), "cairn_offsite_lag_seconds", **series) == 0
    # the worker counted the attempts the outage failed and the copies that landed
    counted = scrape_worker()
    assert (sample(counted, "cairn_offsite_copy_attempts_failed_total") or 0) >= 1
    assert (sample(counted, "cairn_offsite_copies_finished_total", status="copied") or 0) >= 2

    # a repeated copy (as after a killed worker) finds everything there: no snapshot twice
    handle = await temporal_client.start_workflow(
        "OffsiteCopyWorkflow",
        {"execution_id": second["id"], "target_id": target_id},
        id=f"{copy_workflow_id(second['id'], target_id)}-again",
        task_queue="cairn-control",
    )
    again = await handle.result()
    assert sorted(again) == sorted(places[1]["snapshot_ids"])
    listed = restic(everyday, "snapshots", "--json", "--tag", f"execution={second['id']}")
    assert listed.stdout.count('"id"') == len(again)
    # the second backup's unchanged data (the volumes' random blob) was not sent again
    assert stored_bytes(repo) - before < before / 2

    # offsite retention: both backups pruned at the primary, but only the first copy is past
    # the target's 14 days of protection; the second, 13 days old, stays
    ids = (first["id"], second["id"])
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE backup_executions SET status = 'pruned' WHERE id = ANY(%s)", (list(ids),)
        )
        for backup_id, days in zip(ids, (20, 13), strict=True):
            conn.execute(
                "UPDATE backup_copies SET copied_at = now() - make_interval(days => %s)"
                " WHERE execution_id = %s",
                (days, backup_id),
            )
    workflow_id = f"offsite-retention-{uuid.uuid4().hex[:8]}"
    expired = await temporal_client.execute_workflow(
        "OffsiteRetentionWorkflow", id=workflow_id, task_queue="cairn-control"
    )
    assert expired.get(target_id) == [first["id"]]
    await histories.record(temporal_client, workflow_id, "offsite-retention")
    for backup_id, left in zip(ids, (0, len(again)), strict=True):
        listed = restic(everyday, "snapshots", "--json", "--tag", f"execution={backup_id}")
        assert listed.stdout.count('"id"') == left
    places = await expect(
        await api.get(f"{app.backups}/{first['id']}/copies", headers=world.auth("owner")), 200
    )
    assert places[1]["status"] == "expired"
    _, maintenance = await remotes(settings, app.id, target_id)
    check = restic(maintenance, "check")
    assert check.returncode == 0, check.stderr


async def restore_without_the_primary(
    api: ApiClient,
    world: World,
    app: App,
    backup_id: str,
    source: str,
    target_id: str,
    settings: Settings,
) -> None:
    """Changes the data, deletes the primary storage's folder, restores from the copy: every
    row and file comes back, and no step recreated the primary."""
    tables = table_hashes(app.db_url)
    files = {name: tree_hashes(path) for name, path in app.volumes.items()}
    with psycopg.connect(app.db_url) as conn:
        conn.execute("DELETE FROM items WHERE id % 2 = 0")
    for path in app.volumes.values():
        shutil.rmtree(path / "nested")
        (path / "file-0.txt").write_text("changed")
    primary = settings.storage_mount_root / app.storage_pve_id
    shutil.rmtree(primary)

    owner = world.auth("owner")
    body = {"restore_type": "full", "source": source}
    restores = f"{app.backups}/{backup_id}/restore"
    accepted = await expect(await api.post(restores, json=body, headers=owner), 202)
    assert accepted["offsite_target_id"] == target_id
    restore = await wait_for(
        api,
        f"/api/v1/applications/{app.id}/restores/{accepted['id']}",
        owner,
        lambda r: (
            r["status"] in ("succeeded", "failed", "cancelled")
            and (r.get("timeline") or {}).get("workflow_status") not in (None, "running")
        ),
        seconds=180,
    )
    assert restore["status"] == "succeeded", restore["error_message"]
    assert table_hashes(app.db_url) == tables
    assert {name: tree_hashes(path) for name, path in app.volumes.items()} == files
    assert not primary.exists()  # no step wrote to (or recreated) the primary storage


async def test_a_full_restore_reads_the_offsite_copy_when_the_primary_is_gone(
    api: ApiClient,
    world: World,
    worker: None,
    database_server: PostgresServer,
    site: OffsiteSite,
    settings: Settings,
    tmp_path: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path / "app")
    target_id = await add_target(api, world, app.workspace, site)
    policy = {"storage_id": app.storage, "schedule": "0 3 * * *", "offsite_target_id": target_id}
    await expect(await api.post(app.policy, json=policy, headers=world.auth("owner")), 200)
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup
    await copied(api, world, app, backup["id"])
    restores = f"{app.backups}/{backup['id']}/restore"
    owner = world.auth("owner")

    # only a finished copy is read: another target without one is refused, an unknown is 404
    other = await expect(
        await api.post(
            targets_of(app.workspace),
            json=site.target_body(name="elsewhere"),
            headers=world.auth("ws_admin"),
        ),
        201,
    )
    for source, status in ((other["id"], 409), (str(uuid.uuid4()), 404), ("nearby", 422)):
        body = {"restore_type": "full", "source": source}
        answer = await api.post(restores, json=body, headers=owner)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")

    await restore_without_the_primary(api, world, app, backup["id"], "offsite", target_id, settings)
    # restic removed its own lock files: the append-only server lets it, and only those
    repo = site.root / "workspaces" / app.workspace / "applications" / app.id
    assert not any((repo / "locks").iterdir())

    # a drill reads the copy as the restore did, the primary still gone; like a restore, it
    # is refused a target without a finished copy
    drills = f"/api/v1/applications/{app.id}/drills"
    refused = await api.post(drills, json={"source": other["id"]}, headers=owner)
    assert refused.status_code == 409, refused.text
    accepted = await expect(await api.post(drills, json={"source": "offsite"}, headers=owner), 202)
    assert accepted["offsite_target_id"] == target_id
    drill = await wait_for(
        api,
        f"{drills}/{accepted['id']}",
        owner,
        lambda d: d["status"] in ("succeeded", "failed", "cancelled"),
        seconds=180,
    )
    assert drill["status"] == "succeeded", drill["error_message"]
    assert drill["backup_id"] == backup["id"] and drill["offsite_target_id"] == target_id
    assert not (settings.storage_mount_root / app.storage_pve_id).exists()


@pytest.fixture(scope="module")
def s3_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Site]:
    started = S3Site.started(tmp_path_factory.mktemp("s3"))
    try:
        yield started
    finally:
        started.stop()


async def test_an_s3_bucket_without_deletes_takes_copies_and_gives_them_back(
    api: ApiClient,
    world: World,
    worker: None,
    database_server: PostgresServer,
    s3_site: S3Site,
    settings: Settings,
    tmp_path: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path / "app")
    targets, admin = targets_of(app.workspace), world.auth("ws_admin")
    # credentials that may delete are refused (moto enforces the users' IAM policies), even on
    # a bucket with object lock: a plain delete there adds a delete marker (HTTP 204)
    body = s3_site.target_body(credentials=s3_site.maintenance, bucket=LOCKED_BUCKET)
    refused = await api.post(targets, json=body, headers=admin)
    assert refused.status_code == 422, refused.text
    assert "s3:DeleteObject" in refused.json()["detail"]
    bucketless = {**s3_site.target_body(), "url": s3_site.endpoint}
    assert (await api.post(targets, json=bucketless, headers=admin)).status_code == 422
    # each target records what immutability its bucket gives, as the check found it
    plain = await expect(await api.post(targets, json=s3_site.target_body(), headers=admin), 201)
    assert plain["immutability"] == {
        "deletes_refused": True,
        "overwrites_refused": False,
        "versioning": None,
        "object_lock": None,
        "unreadable": [],
    }
    body = s3_site.target_body(name="locked", bucket=LOCKED_BUCKET)
    created = await expect(await api.post(targets, json=body, headers=admin), 201)
    assert created["kind"] == "s3" and s3_site.everyday["password"] not in str(created)
    assert created["immutability"]["versioning"] == "Enabled"
    assert created["immutability"]["object_lock"] == {"mode": "COMPLIANCE", "days": LOCK_DAYS}
    target_id = str(created["id"])

    policy = {"storage_id": app.storage, "schedule": "0 3 * * *", "offsite_target_id": target_id}
    await expect(await api.post(app.policy, json=policy, headers=world.auth("owner")), 200)
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup
    places = await copied(api, world, app, backup["id"])

    # cairn's everyday credentials cannot delete a snapshot or a pack (403 by the policy)...
    prefix = f"cairn/workspaces/{app.workspace}/applications/{app.id}/"
    everyday, maintenance = s3_site.client(s3_site.everyday), s3_site.client(s3_site.maintenance)
    snapshot = f"{prefix}snapshots/{places[1]['snapshot_ids'][0]}"
    listed = everyday.list_objects_v2(Bucket=LOCKED_BUCKET, Prefix=f"{prefix}data/")
    pack = listed["Contents"][0]["Key"]
    for key in (snapshot, pack):
        with pytest.raises(ClientError, match="AccessDenied"):
            everyday.delete_object(Bucket=LOCKED_BUCKET, Key=key)
    # ...but S3 cannot refuse an overwrite: the locked bucket keeps the original version, which
    # not even the maintenance credentials may delete, and putting it back mends the copy (a
    # PUT into the locked bucket needs a checksum header: boto3 and restic send one)
    original = everyday.get_object(Bucket=LOCKED_BUCKET, Key=pack)["Body"].read()
    everyday.put_object(Bucket=LOCKED_BUCKET, Key=pack, Body=b"junk")
    versions = maintenance.list_object_versions(Bucket=LOCKED_BUCKET, Prefix=pack)["Versions"]
    (kept,) = [v["VersionId"] for v in versions if not v["IsLatest"]]
    with pytest.raises(ClientError, match="AccessDenied"):
        maintenance.delete_object(Bucket=LOCKED_BUCKET, Key=pack, VersionId=kept)
    kept_body = maintenance.get_object(Bucket=LOCKED_BUCKET, Key=pack, VersionId=kept)["Body"]
    maintenance.put_object(Bucket=LOCKED_BUCKET, Key=pack, Body=kept_body.read())
    assert everyday.get_object(Bucket=LOCKED_BUCKET, Key=pack)["Body"].read() == original
    await restore_without_the_primary(api, world, app, backup["id"], target_id, target_id, settings)


async def prune_on_primary(settings: Settings, policy_id: str) -> list[str]:
    """The primary's retention of one policy, as the daily sweep runs it (forget, mark
    ``pruned``, restic prune), with the worker's own activity and a real restic."""
    engine = make_engine(settings.database_url)
    try:
        retention = RetentionActivities(
            make_sessionmaker(engine), settings, Restic(settings.restic_bin)
        )
        return await ActivityEnvironment().run(retention.apply_retention, policy_id)
    finally:
        await engine.dispose()


async def test_a_backup_pruned_on_the_primary_restores_and_drills_from_its_copy(
    api: ApiClient,
    world: World,
    worker: None,
    database_server: PostgresServer,
    site: OffsiteSite,
    settings: Settings,
    tmp_path: Path,
) -> None:
    keep_one = {"retention_days": None, "keep_last": 1}
    app = await make_app(api, world, database_server, tmp_path / "app", policy=keep_one)
    owner = world.auth("owner")
    uncopied = await run_backup(api, world, app)  # before the policy names a target
    target_id = await add_target(api, world, app.workspace, site)
    policy = {"storage_id": app.storage, "schedule": "0 3 * * *", "offsite_target_id": target_id}
    saved = await expect(await api.post(app.policy, json=policy | keep_one, headers=owner), 200)
    assert saved["keep_last"] == 1 and saved["retention_days"] is None
    backup = await run_backup(api, world, app)
    assert uncopied["status"] == backup["status"] == "succeeded", (uncopied, backup)
    await copied(api, world, app, backup["id"])
    tables = table_hashes(app.db_url)
    files = {name: tree_hashes(path) for name, path in app.volumes.items()}
    # the data changes, a newer backup is taken and copied; retention keeps only that one
    with psycopg.connect(app.db_url) as conn:
        conn.execute("DELETE FROM items WHERE id % 3 = 0")
        conn.execute("INSERT INTO items (name) VALUES ('after the pruned backup')")
    for path in app.volumes.values():
        shutil.rmtree(path / "nested")
        (path / "file-0.txt").write_text("changed after the pruned backup")
    newest = await run_backup(api, world, app)
    assert newest["status"] == "succeeded", newest
    await copied(api, world, app, newest["id"])
    assert sorted(await prune_on_primary(settings, saved["id"])) == sorted(
        [uncopied["id"], backup["id"]]
    )
    repo = await repository_of(settings, app.id, app.storage)
    primary = Restic(settings.restic_bin).snapshots(repo, [f"execution={backup['id']}"])
    assert primary == []  # gone from the primary storage, for real

    # the listing tells what each backup can still be restored from
    listed = (await expect(await api.get(app.backups, headers=owner), 200))["items"]
    shown = {b["id"]: b for b in listed}
    assert shown[backup["id"]]["status"] == "pruned"
    assert shown[backup["id"]]["restorable_from"] == [target_id]
    assert [(c["target_id"], c["status"]) for c in shown[backup["id"]]["copies"]] == [
        (target_id, "copied")
    ]
    assert shown[uncopied["id"]]["restorable_from"] == []
    assert shown[uncopied["id"]]["copies"] == []
    assert shown[newest["id"]]["restorable_from"] == ["primary", target_id]
    detail = await expect(await api.get(f"{app.backups}/{backup['id']}", headers=owner), 200)
    assert detail["restorable_from"] == [target_id]

    async def refused(backup_id: str, source: str, kind: str, *words: str) -> None:
        answer = await api.post(
            f"{app.backups}/{backup_id}/restore",
            json={"restore_type": "full", "source": source},
            headers=owner,
        )
        assert answer.status_code == 409, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        assert problem["type"].endswith(f"/problems/{kind}"), problem
        assert all(word in problem["detail"] for word in words), problem["detail"]

    # read from the primary: refused, saying why and where it still is
    await refused(backup["id"], "primary", "backup-pruned-on-primary", "pruned", '"offsite"')
    await refused(
        uncopied["id"], "primary", "backup-pruned-on-primary", "no offsite copy", "none was"
    )
    # a pruned backup without a copy: nothing holds it any more
    await refused(
        uncopied["id"], "offsite", "backup-pruned-without-offsite-copy", "pruned", "no finished"
    )
    await refused(uncopied["id"], target_id, "backup-pruned-without-offsite-copy", "at that")
    drills = f"/api/v1/applications/{app.id}/drills"
    for body in (
        {"backup_id": backup["id"]},
        {"backup_id": uncopied["id"], "source": "offsite"},
    ):
        answer = await api.post(drills, json=body, headers=owner)
        assert answer.status_code == 409, answer.text
    restores = (
        await expect(await api.get(f"/api/v1/applications/{app.id}/restores", headers=owner), 200)
    )["items"]
    assert restores == []  # the refusals started nothing

    # from its copy, the pruned backup comes back: every row and file as it was then
    accepted = await expect(
        await api.post(
            f"{app.backups}/{backup['id']}/restore",
            json={"restore_type": "full", "source": "offsite"},
            headers=owner,
        ),
        202,
    )
    assert accepted["offsite_target_id"] == target_id
    restore = await wait_for(
        api,
        f"/api/v1/applications/{app.id}/restores/{accepted['id']}",
        owner,
        lambda r: (
            r["status"] in ("succeeded", "failed", "cancelled")
            and (r.get("timeline") or {}).get("workflow_status") not in (None, "running")
        ),
        seconds=180,
    )
    assert restore["status"] == "succeeded", restore["error_message"]
    assert table_hashes(app.db_url) == tables
    assert {name: tree_hashes(path) for name, path in app.volumes.items()} == files

    # and a drill of it reads the copy too
    accepted = await expect(
        await api.post(
            drills, json={"backup_id": backup["id"], "source": target_id}, headers=owner
        ),
        202,
    )
    drill = await wait_for(
        api,
        f"{drills}/{accepted['id']}",
        owner,
        lambda d: d["status"] in ("succeeded", "failed", "cancelled"),
        seconds=180,
    )
    assert drill["status"] == "succeeded", drill["error_message"]
    assert drill["backup_id"] == backup["id"] and drill["offsite_target_id"] == target_id


async def test_a_target_is_renamed_limited_and_its_credentials_rotated(
    api: ApiClient,
    world: World,
    worker: None,
    database_server: PostgresServer,
    settings: Settings,
    temporal_client: Client,
    tmp_path: Path,
) -> None:
    # a site of its own: its passwords change under the test's feet
    own = OffsiteSite.started(tmp_path / "rotating")
    try:
        await rotation(api, world, database_server, settings, temporal_client, tmp_path, own)
    finally:
        own.stop()


async def rotation(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    settings: Settings,
    temporal_client: Client,
    tmp_path: Path,
    site: OffsiteSite,
) -> None:
    app = await make_app(api, world, database_server, tmp_path / "app")
    admin, owner = world.auth("ws_admin"), world.auth("owner")
    target_id = await add_target(api, world, app.workspace, site)
    target = f"{targets_of(app.workspace)}/{target_id}"
    policy = {"storage_id": app.storage, "schedule": "0 3 * * *", "offsite_target_id": target_id}
    await expect(await api.post(app.policy, json=policy, headers=owner), 200)
    first = await run_backup(api, world, app)
    await copied(api, world, app, first["id"])
    before = await expect(await api.get(target, headers=admin), 200)
    old_everyday, old_maintenance = site.everyday.password, site.maintenance.password

    # the operator changes both passwords on the server: the stored ones stop working
    for server in (site.everyday, site.maintenance):
        server.stop()
        server.password = secrets.token_urlsafe(16)
        server.start()
    fresh, maintenance = site.everyday.credentials, site.maintenance.credentials

    def audited(action: str) -> list[str]:
        with psycopg.connect(libpq_url(settings.database_url)) as conn:
            rows = conn.execute(
                "SELECT details::text FROM audit_events WHERE target_id = %s AND action = %s",
                (target_id, action),
            ).fetchall()
        return [row[0] for row in rows]

    async def refused(body: dict[str, Any], status: int, who: str = "ws_admin") -> Any:
        answer = await api.patch(target, json=body, headers=world.auth(who))
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        return answer.json()

    wrong = {"username": "cairn", "password": old_everyday}
    failed = await refused({"name": "renamed", "credentials": wrong}, 422)
    assert failed["type"].endswith("/offsite-target-check-failed") and "401" in failed["detail"]
    assert failed["errors"][0]["field"] == "body.credentials"
    stale = {"username": "maintenance", "password": old_maintenance}
    failed = await refused({"maintenance_credentials": stale}, 422)
    assert failed["errors"][0]["field"] == "body.maintenance_credentials", failed
    assert "401" in failed["detail"]
    # the everyday endpoint is append-only: as maintenance credentials it is refused
    failed = await refused(
        {"maintenance_url": site.everyday.url, "maintenance_credentials": fresh}, 422
    )
    assert "delete" in failed["detail"], failed
    for body in (
        {},
        {"protection_days": 7},  # lowered: never
        {"name": None},
        {"credentials": None},
        {"upload_limit_kib": 0},
        {"upload_limit_kib": "fast"},
        {"url": "http://127.0.0.1:1"},  # a target elsewhere is a new target
        {"maintenance_url": site.maintenance.url},  # without the credentials for it
        {"credentials": {"username": "cairn"}},
    ):
        problem = await refused(body, 422)
        assert problem["errors"], (body, problem)
    await refused({"name": "renamed"}, 403, "member")
    other = world.workspaces["b"]
    answer = await api.patch(
        f"{targets_of(other)}/{target_id}",
        json={"name": "renamed"},
        headers=world.auth("other_admin"),
    )
    assert answer.status_code == 404, answer.text
    answer = await api.patch(
        f"{targets_of(app.workspace)}/{uuid.uuid4()}", json={"name": "x"}, headers=admin
    )
    assert answer.status_code == 404, answer.text
    assert await expect(await api.get(target, headers=admin), 200) == before  # nothing changed
    assert audited("offsite_target.update") == []

    changed = await expect(
        await api.patch(
            target,
            json={
                "name": "renamed",
                "upload_limit_kib": 4096,
                "protection_days": 21,
                "credentials": fresh,
                "maintenance_credentials": maintenance,
            },
            headers=admin,
        ),
        200,
    )
    assert (changed["name"], changed["upload_limit_kib"], changed["protection_days"]) == (
        "renamed",
        4096,
        21,
    )
    assert changed["credentials_set"] and changed["maintenance_credentials_set"]
    assert changed["immutability"]["deletes_refused"] is True
    assert changed["url"] == before["url"] and changed["kind"] == before["kind"]
    (details,) = audited("offsite_target.update")
    assert '"rotated"' in details and "renamed" in details
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        row = conn.execute(
            "SELECT t::text FROM offsite_targets t WHERE id = %s", (target_id,)
        ).fetchone()
    assert row is not None
    for secret in (fresh["password"], maintenance["password"]):
        assert secret not in str(changed) and secret not in row[0] and secret not in details
    cleared = await expect(
        await api.patch(target, json={"upload_limit_kib": None}, headers=admin), 200
    )
    assert cleared["upload_limit_kib"] is None and cleared["name"] == "renamed"

    # the next copy goes with the new everyday credentials
    second = await run_backup(api, world, app)
    assert second["status"] == "succeeded", second
    places = await copied(api, world, app, second["id"])
    assert places[1]["target_name"] == "renamed"
    # and offsite retention with the new maintenance ones; it spares the copy while a
    # restore reads it (the backup pruned on the primary, its copy past its protection)
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute("UPDATE backup_executions SET status = 'pruned' WHERE id = %s", (first["id"],))
        conn.execute(
            "UPDATE backup_copies SET copied_at = now() - interval '30 days'"
            " WHERE execution_id = %s",
            (first["id"],),
        )
        conn.execute(
            "INSERT INTO backup_restores (id, backup_execution_id, application_id, workflow_id,"
            " status, restore_type, details) VALUES (%s, %s, %s, %s, 'running', 'full', %s)",
            (
                reading := uuid.uuid4(),
                first["id"],
                app.id,
                f"restore-{reading}",
                Jsonb({"offsite_target_id": target_id}),
            ),
        )

    async def offsite_retention() -> Any:
        return await temporal_client.execute_workflow(
            "OffsiteRetentionWorkflow",
            id=f"offsite-retention-{uuid.uuid4().hex[:8]}",
            task_queue="cairn-control",
        )

    assert not (await offsite_retention()).get(target_id)
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute("UPDATE backup_restores SET status = 'succeeded' WHERE id = %s", (reading,))
    assert (await offsite_retention()).get(target_id) == [first["id"]]


async def test_an_s3_target_s_new_credentials_are_checked_before_they_are_stored(
    api: ApiClient, world: World, s3_site: S3Site, settings: Settings
) -> None:
    workspace = await new_workspace(api, world)
    admin = world.auth("ws_admin")
    body = s3_site.target_body(name="s3-rotating")
    created = await expect(await api.post(targets_of(workspace), json=body, headers=admin), 201)
    target = f"{targets_of(workspace)}/{created['id']}"
    # keys that may delete are refused as everyday credentials, keys that may not delete are
    # refused as maintenance credentials (offsite retention could not remove a copy)
    for change, field in (
        ({"credentials": s3_site.maintenance}, "body.credentials"),
        ({"maintenance_credentials": s3_site.everyday}, "body.maintenance_credentials"),
    ):
        answer = await api.patch(target, json={"name": "renamed", **change}, headers=admin)
        assert answer.status_code == 422, answer.text
        problem = answer.json()
        assert problem["errors"][0]["field"] == field, problem
        assert "delete" in problem["detail"]
    assert await expect(await api.get(target, headers=admin), 200) == created
    # the right keys pass both checks (signed S3 deletes, moto enforcing the users' policies)
    changed = await expect(
        await api.patch(
            target,
            json={
                "credentials": s3_site.everyday,
                "maintenance_credentials": s3_site.maintenance,
            },
            headers=admin,
        ),
        200,
    )
    assert changed["immutability"] == created["immutability"]
    assert s3_site.everyday["password"] not in str(changed)
