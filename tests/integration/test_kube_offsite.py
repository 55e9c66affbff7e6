"""A Kubernetes application restored and drilled from its offsite copy, the primary gone.

The application lives in the Kubernetes API fake (its movers run as local processes); it is
backed up through the API and copied to a real ``rclone serve restic --append-only`` or
moto's S3 server, then the primary storage's folder is deleted. The movers that read the
backup reach the target themselves, its place and credentials handed to them in their run
Secrets only, and none of the restore's or drill's movers mounts the backup storage.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import psycopg
import pytest
from kubernetes import client
from temporalio.client import Client as TemporalClient

from adapters.kubernetes.names import RUN_LABEL
from adapters.restic_remote import HANDED
from core.settings import Settings
from tests.fakes.kube import FakeKube
from tests.integration.test_kube_platform import (
    CLAIMS,
    App,
    app,
    cairn_on_path,
    cairn_settings,
    ended,
    folder_hashes,
    kube_worker,
    leftovers,
    mover_pods,
    register,
    replicas,
    snapshot_classes,
    storage_root,
    table_hash,
)
from tests.integration.test_offsite import (
    add_target,
    copied,
    remotes,
    s3_site,
    site,
    targets_of,
)
from tests.support import backups
from tests.support.api import ApiClient, World, expect, wait_for
from tests.support.backups import run_backup
from tests.support.kube import HOME, kube, kube_api, namespace
from tests.support.kube_rbac import uncovered
from tests.support.offsite_servers import OffsiteSite, S3Site

pytestmark = pytest.mark.integration
__all__ = [  # fixtures used by name
    "app",
    "cairn_on_path",
    "cairn_settings",
    "kube",
    "kube_api",
    "kube_worker",
    "namespace",
    "s3_site",
    "site",
    "snapshot_classes",
    "storage_root",
]


@pytest.fixture(params=["rest", "s3"])
def target_site(request: pytest.FixtureRequest) -> OffsiteSite | S3Site:
    """Where the copy goes: rclone's REST server, or moto's S3 (a bucket without deletes)."""
    found: OffsiteSite | S3Site = request.getfixturevalue(
        "site" if request.param == "rest" else "s3_site"
    )
    return found


async def copied_app(
    api: ApiClient, world: World, app: App, kube: FakeKube, site: OffsiteSite | S3Site
) -> tuple[backups.App, str, dict[str, Any]]:
    """``app`` registered through the API, its policy copying to a target on ``site``, and a
    backup of it copied there: the application as the API tests know it, the target's id
    and the backup."""
    workspace, app_path = await register(api, world, app)
    owner = world.auth("owner")
    policy = await expect(await api.get(f"{app_path}/backup-policy", headers=owner), 200)
    storage = await expect(
        await api.get(
            f"/api/v1/workspaces/{workspace}/backup-storages/{policy['storage_id']}",
            headers=world.auth("ws_admin"),
        ),
        200,
    )
    shop = backups.App(
        id=app_path.rsplit("/", 1)[1],
        workspace=workspace,
        storage=storage["id"],
        storage_pve_id=storage["proxmox_storage_id"],
        dbname=app.dbname,
        db_url=app.server.url(app.dbname, driver="postgresql"),
        volumes={volume: kube.pvc_path(app.namespace, claim) for volume, claim in CLAIMS.items()},
        marker="",
    )
    target_id = await add_target(api, world, workspace, site)
    body = {"storage_id": shop.storage, "schedule": "0 3 * * *", "offsite_target_id": target_id}
    await expect(await api.post(shop.policy, json=body, headers=owner), 200)
    backup = await run_backup(api, world, shop, seconds=240)
    assert backup["status"] == "succeeded", backup["error_message"]
    await copied(api, world, shop, backup["id"])
    return shop, target_id, backup


def damage(app: App, kube: FakeKube) -> None:
    """Every file of both claims removed, two thirds of the rows deleted."""
    for claim in CLAIMS.values():
        for path in sorted(kube.pvc_path(app.namespace, claim).rglob("*"), reverse=True):
            if path.is_file():
                path.unlink()
    with psycopg.connect(app.server.url(app.dbname, driver="postgresql"), autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE id > 100")


def storage_volumes(pod: dict[str, Any]) -> list[str]:
    """The pod's volumes that are not a claim (the backup storage is an NFS export here)."""
    return [v["name"] for v in pod["spec"].get("volumes") or [] if "persistentVolumeClaim" not in v]


@pytest.mark.usefixtures("worker")
async def test_a_kubernetes_application_is_restored_and_drilled_from_its_copy_alone(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    api: ApiClient,
    world: World,
    target_site: OffsiteSite | S3Site,
    temporal_client: TemporalClient,
    kube_worker: Settings,
) -> None:
    ns = app.namespace
    site = target_site
    shop, target_id, backup = await copied_app(api, world, app, kube, site)
    owner = world.auth("owner")
    listed = await expect(await api.get(f"{shop.backups}/{backup['id']}", headers=owner), 200)
    assert listed["restorable_from"] == ["primary", target_id]
    files_before = {c: folder_hashes(kube.pvc_path(ns, c)) for c in CLAIMS.values()}
    rows_before = table_hash(app.server, app.dbname)
    restores = f"{shop.backups}/{backup['id']}/restore"

    # the refusals of a local application's restore: a target without a finished copy of
    # the backup 409, a target the workspace does not have 404
    other = await expect(
        await api.post(
            targets_of(shop.workspace),
            json=site.target_body(name="elsewhere"),
            headers=world.auth("ws_admin"),
        ),
        201,
    )
    for source, status in ((other["id"], 409), ("6f1c0a52-0000-4000-8000-000000000000", 404)):
        answer = await api.post(
            restores, json={"restore_type": "full", "source": source}, headers=owner
        )
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")

    # the primary storage gone, the application's volumes and database damaged
    primary = kube_worker.storage_mount_root / shop.storage_pve_id
    shutil.rmtree(primary)
    damage(app, kube)
    since = kube.store.revision
    kube.reset_requests()
    accepted = await expect(
        await api.post(restores, json={"restore_type": "full", "source": "offsite"}, headers=owner),
        202,
    )
    assert accepted["offsite_target_id"] == target_id
    restore = await wait_for(
        api, f"/api/v1/applications/{shop.id}/restores/{accepted['id']}", owner, ended, seconds=240
    )
    assert restore["status"] == "succeeded", restore["error_message"]
    assert table_hash(app.server, app.dbname) == rows_before
    assert {c: folder_hashes(kube.pvc_path(ns, c)) for c in CLAIMS.values()} == files_before
    assert replicas(kube_api, ns) == (2, 1)
    assert leftovers(kube, ns) == []

    # a drill reads the copy the same way, into scratch copies it removes
    drills = f"/api/v1/applications/{shop.id}/drills"
    started = await expect(await api.post(drills, json={"source": "offsite"}, headers=owner), 202)
    assert started["offsite_target_id"] == target_id
    # its row and its workflow ended (the cleanup runs after the row says succeeded)
    drill = await wait_for(api, f"{drills}/{started['id']}", owner, ended, seconds=240)
    assert drill["status"] == "succeeded", drill["error_message"]
    assert leftovers(kube, ns) == []
    assert uncovered(kube.used_in()) == set()  # deploy/kubernetes/ RBAC allows every request
    assert not primary.exists()  # nothing wrote to (or recreated) the primary storage

    # no mover mounted the backup storage; those that read the backup were handed the copy
    # through their run Secrets, which were made in cairn's namespace and are gone
    pods = mover_pods(kube, since)
    assert pods and all(storage_volumes(pod) == [] for pod in pods), [
        (p["metadata"]["name"], storage_volumes(p)) for p in pods
    ]
    readers = [p for p in pods if "--offsite" in p["spec"]["containers"][0]["command"]]
    kinds = {p["metadata"]["labels"]["batch.kubernetes.io/job-name"].split("-")[1] for p in readers}
    assert kinds == {"rdb", "rvol", "ddb", "dvol"}
    for pod in readers:
        job = pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        for name in (*HANDED, "RESTIC_PASSWORD"):
            assert env[name] == {
                "name": name,
                "valueFrom": {"secretKeyRef": {"name": job, "key": name}},
            }
    events = kube.store.events_after(since)
    run_secrets = {
        (e.type, e.object["metadata"]["name"])
        for e in events
        if e.resource.kind == "Secret" and e.object["metadata"]["namespace"] == HOME
    }
    for pod in readers:
        job = pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
        assert {("ADDED", job), ("DELETED", job)} <= run_secrets
    runs = {accepted["id"], started["id"]}
    assert [
        s["metadata"]["name"]
        for s in kube.list("", "secrets", HOME)
        if (s["metadata"].get("labels") or {}).get(RUN_LABEL) in runs
    ] == []

    # neither the target's password nor the copy's is anywhere but in those Secrets
    everyday, _maintenance = await remotes(kube_worker, shop.id, target_id)
    objects = json.dumps([e.object for e in events if e.resource.kind != "Secret"])
    assert kube.kubelet is not None
    pod_logs = b"\n".join(kube.kubelet.every_log_line()).decode(errors="replace")
    histories = [
        (await temporal_client.get_workflow_handle(workflow_id).fetch_history()).to_json()
        for workflow_id in (f"restore-{accepted['id']}", f"drill-{started['id']}")
    ]
    answers = json.dumps([accepted, restore, started, drill])
    for password in (everyday.secret, everyday.password):  # the target's, the copy's
        assert password not in objects
        assert password not in pod_logs
        assert all(password not in history for history in histories)
        assert password not in answers
