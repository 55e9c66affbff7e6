"""The Kubernetes platform through the platform contract, against the Kubernetes API fake.

restic, pg_dump and pg_restore are real; the mover Jobs run ``cairn mover`` as local
processes (the fake's kubelet), with the claims and the NFS storage mapped to folders. Each
test works in its own namespace with its own PostgreSQL database, dropped in ``finally``,
and ends by checking that nothing cairn made for a run is left in the fake.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client
from psycopg import sql
from temporalio.client import Client as TemporalClient

from adapters import volume_root
from adapters.kubernetes import rebind, sharing
from adapters.kubernetes.movers import MOVER_SERVICE_ACCOUNT, Mover, Placement, job_manifest
from adapters.kubernetes.names import MANAGED_BY, ROLE_LABEL, run_labels, run_name
from adapters.kubernetes.platform import (
    RESTORE_OF,
    SWAP_ANNOTATION,
    KubernetesPlatform,
    service_host,
)
from adapters.kubernetes.rebind import REBIND, REPLACED
from adapters.kubernetes.snapshots import SELECTED_NODE
from adapters.kubernetes.volume_swap import swap_in_place
from adapters.local_platform import scratch_database
from adapters.platform import PlatformError, Scratch, SqlCheck, VolumeFigures, VolumeUpload
from adapters.restic import Progress, Repository, Restic
from contracts.task_queues import CONTROL_TASK_QUEUE
from core import crypto, secret_contexts
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.fakes.kube import CSI_DRIVER, SECOND_CSI_DRIVER, SECOND_STORAGE_CLASS, FakeKube
from tests.fakes.kube.kubelet import NODE_NAME
from tests.support import histories
from tests.support.api import ApiClient, World, expect, new_workspace, wait_for
from tests.support.backups import finished
from tests.support.kube import (
    HOME,
    CairnCalls,
    apps,
    cairn,
    core,
    kube,
    kube_api,
    namespace,
    rbac_equals_what_cairn_used,
    recorded,
)
from tests.support.kube_rbac import Permission, uncovered
from workflows.restore import RestoreWorkflow

pytestmark = pytest.mark.integration
__all__ = [  # fixtures used by name
    "cairn",
    "kube",
    "kube_api",
    "namespace",
    "rbac_equals_what_cairn_used",
]

SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
NFS_SERVER, NFS_EXPORT = "10.0.0.5", "/export/cairn"
GOOD_CLASS, STUCK_CLASS = "csi-snapclass", "stuck-snapclass"
RETAIN_CLASS, SHARED_CLASS = "retained-snapclass", "shared-snapclass"
CLAIMS = {"data": "data-pvc", "uploads": "uploads-pvc"}
LEAK_RUNS = 20  # backups, and as many restores, with Retain classes (issue 29)


@pytest.fixture(scope="module", autouse=True)
def cairn_on_path() -> Iterator[None]:
    """Mover pods run ``cairn mover`` from PATH, which the fake's kubelet takes at its start."""
    before = os.environ["PATH"]
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{before}"
    yield
    os.environ["PATH"] = before


@pytest.fixture(scope="module")
def storage_root(kube: FakeKube, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CAIRN_STORAGE_MOUNT_ROOT of the worker, which the mover pods reach as an NFS export."""
    root = tmp_path_factory.mktemp("storages")
    root.chmod(0o711)  # the export's root: movers of any user reach their repositories
    kube.map_nfs(NFS_SERVER, NFS_EXPORT, root)
    return root


# name -> (driver, deletionPolicy, the driver's default, parameters)
SNAPSHOT_CLASSES = {
    GOOD_CLASS: (CSI_DRIVER, "Delete", False, {}),
    STUCK_CLASS: (CSI_DRIVER, "Delete", False, {"fake.cairn.dev/never-ready": "true"}),
    RETAIN_CLASS: (CSI_DRIVER, "Retain", False, {}),
    SHARED_CLASS: (SECOND_CSI_DRIVER, "Retain", True, {}),
}


@pytest.fixture(scope="module")
def snapshot_classes(kube_api: client.ApiClient) -> Iterator[None]:
    custom: Any = client.CustomObjectsApi(kube_api)
    for name, (driver, policy, default, parameters) in SNAPSHOT_CLASSES.items():
        meta: dict[str, Any] = {"name": name}
        if default:
            meta["annotations"] = {"snapshot.storage.kubernetes.io/is-default-class": "true"}
        custom.create_cluster_custom_object(
            SNAPSHOT_GROUP,
            "v1",
            "volumesnapshotclasses",
            {
                "metadata": meta,
                "driver": driver,
                "deletionPolicy": policy,
                "parameters": parameters,
            },
        )
    yield
    for name in SNAPSHOT_CLASSES:
        custom.delete_cluster_custom_object(SNAPSHOT_GROUP, "v1", "volumesnapshotclasses", name)


@pytest.fixture(scope="module")
def cairn_settings(
    kube: FakeKube, storage_root: Path, snapshot_classes: None, database_url: str
) -> Settings:
    return Settings(
        database_url=database_url,  # cairn's own database, which movers are told to refuse
        kubeconfig=kube.kubeconfig,
        storage_mount_root=storage_root,
        kube_storage_volume={"nfs": {"server": NFS_SERVER, "path": NFS_EXPORT}},
        kube_snapshot_class=GOOD_CLASS,
        kube_snapshot_timeout_seconds=4,
        kube_mover_timeout_seconds=60,
        mover_run_as_user=0,  # the fake runs processes as this user; the field is validated
    )


@dataclass
class App:
    namespace: str
    dbname: str
    server: PostgresServer
    repo: Repository
    settings: dict[str, Any]


@pytest.fixture
def app(
    kube: FakeKube,
    kube_api: client.ApiClient,
    namespace: str,
    database_server: PostgresServer,
    storage_root: Path,
    cairn_settings: Settings,
) -> Iterator[App]:
    """An application in ``namespace``: two claims with files, two workloads, a ConfigMap,
    Secrets (one holding the database password) and a PostgreSQL database with rows."""
    for claim in CLAIMS.values():
        core(kube_api).create_namespaced_persistent_volume_claim(
            namespace,
            {
                "metadata": {"name": claim},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
    folders = {claim: _bound(kube, namespace, claim) for claim in CLAIMS.values()}
    (folders["data-pvc"] / "nested").mkdir()
    (folders["data-pvc"] / "nested" / "a.bin").write_bytes(os.urandom(200_000))
    (folders["data-pvc"] / "notes.txt").write_text("hello from the data volume\n")
    (folders["uploads-pvc"] / "img.png").write_bytes(os.urandom(50_000))
    for kind, name, replicas in (("deployment", "web", 2), ("stateful_set", "db", 1)):
        labels = {"app": f"shop-{name}"}
        spec: dict[str, Any] = {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "shop:1"}]},
            },
        }
        if kind == "stateful_set":
            spec["serviceName"] = name
        getattr(apps(kube_api), f"create_namespaced_{kind}")(
            namespace, {"metadata": {"name": name}, "spec": spec}
        )
    core(kube_api).create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"mode": "production"}}
    )
    password = f"db-{secrets.token_hex(8)}"
    core(kube_api).create_namespaced_secret(
        namespace, {"metadata": {"name": "db-credentials"}, "stringData": {"password": password}}
    )
    core(kube_api).create_namespaced_secret(
        namespace, {"metadata": {"name": "api-keys"}, "stringData": {"stripe": "sk-1"}}
    )
    dbname = f"cairn_kube_{uuid.uuid4().hex[:10]}"
    database_server.create_database(dbname)
    try:
        with _connect(database_server, dbname) as conn:
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY, item text)")
            conn.execute("INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 300) g")
        repo = Repository(
            storage_root / "stor1" / "workspaces" / "w1" / "applications" / namespace,
            secrets.token_urlsafe(32),
        )
        repo.path.parent.mkdir(parents=True, exist_ok=True)
        Restic().init(repo)
        yield App(
            namespace,
            dbname,
            database_server,
            repo,
            {
                "namespace": namespace,
                "context": None,
                "workloads": {"names": ["deployment/web", "statefulset/db"]},
                "volumes": dict(CLAIMS),
                "snapshot_class": None,
                "database": {
                    "host": database_server.socket_dir or database_server.host,
                    "port": database_server.port,
                    "dbname": dbname,
                    "user": database_server.user,
                    "password_secret": {"name": "db-credentials", "key": "password"},
                },
                "config": {"include": "all"},
            },
        )
    finally:
        database_server.drop_database(dbname)


def _bound(kube: FakeKube, namespace: str, claim: str) -> Path:
    deadline = time.monotonic() + 20
    while True:
        try:
            return kube.pvc_path(namespace, claim)
        except LookupError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _connect(server: PostgresServer, dbname: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(
        host=server.socket_dir or server.host,
        port=server.port,
        user=server.user,
        dbname=dbname,
        autocommit=True,
    )


def table_hash(server: PostgresServer, dbname: str) -> str:
    with _connect(server, dbname) as conn:
        row = conn.execute(
            sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM orders t")
        ).fetchone()
        return str(row[0]) if row else ""


def folder_hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def config_state(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    return {
        "settings": core(api).read_namespaced_config_map("settings", namespace).data,
        "db-credentials": core(api).read_namespaced_secret("db-credentials", namespace).data,
        "api-keys": core(api).read_namespaced_secret("api-keys", namespace).data,
    }


def replicas(api: client.ApiClient, namespace: str) -> tuple[int, int]:
    return (
        apps(api).read_namespaced_deployment("web", namespace).spec.replicas,
        apps(api).read_namespaced_stateful_set("db", namespace).spec.replicas,
    )


def leftovers(kube: FakeKube, namespace: str) -> list[str]:
    """What cairn made for a run and did not remove, in the application's namespace and in
    cairn's (pods go after their Job, gracefully; the application's own pods are not
    cairn's), and the contents of snapshot clones."""

    def ours(obj: dict[str, Any]) -> bool:
        labels = obj["metadata"].get("labels") or {}
        return (
            labels.get("app.kubernetes.io/managed-by") == MANAGED_BY["app.kubernetes.io/managed-by"]
        )

    def found() -> list[str]:
        left = []
        for where in (namespace, HOME):
            left += [f"job {j['metadata']['name']}" for j in kube.list("batch", "jobs", where)]
            left += [
                f"{plural} {o['metadata']['name']}"
                for plural in ("pods", "persistentvolumeclaims", "secrets")
                for o in kube.list("", plural, where)
                if ours(o)
            ]
            left += [
                f"volumesnapshot {s['metadata']['name']}"
                for s in kube.list(SNAPSHOT_GROUP, "volumesnapshots", where)
            ]
            left += [
                f"networkpolicy {p['metadata']['name']}"
                for p in kube.list("networking.k8s.io", "networkpolicies", where)
                if ours(p)
            ]
        left += [
            f"volumesnapshotcontent {c['metadata']['name']}"
            for c in kube.list(SNAPSHOT_GROUP, "volumesnapshotcontents")
            if ours(c)
        ]
        return left

    deadline = time.monotonic() + 30
    while (left := found()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def mover_pods(kube: FakeKube, since: int) -> list[dict[str, Any]]:
    """The mover pods created after the store's revision ``since``."""
    return [
        event.object
        for event in kube.store.events_after(since)
        if event.type == "ADDED"
        and event.resource.kind == "Pod"
        and (event.object["metadata"].get("labels") or {}).get(ROLE_LABEL) == "mover"
    ]


def where_movers_ran(pods: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Each mover Job's name (the kind and run of the pod's name) -> (namespace, account)."""
    return {
        pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]: (
            pod["metadata"]["namespace"],
            pod["spec"]["serviceAccountName"],
        )
        for pod in pods
    }


def mover_users(pods: list[dict[str, Any]]) -> dict[str, int | None]:
    """Each mover's kind (``rvol``, ``rroot``, …) -> the user its pod was given."""
    return {
        pod["metadata"]["labels"]["batch.kubernetes.io/job-name"].split("-")[1]: pod["spec"][
            "securityContext"
        ].get("runAsUser")
        for pod in pods
    }


def platform_of(
    app: App, cairn_settings: Settings, calls: CairnCalls, **changes: Any
) -> KubernetesPlatform:
    """The application's platform, every call of it recorded for the comparison with RBAC."""
    platform = KubernetesPlatform(
        {**app.settings, **changes}, {}, cairn=cairn_settings, restic=Restic()
    )
    return recorded(platform, calls)


def backed_up_volume(platform: KubernetesPlatform, repo: Repository, volume: str) -> VolumeUpload:
    """A backup of one volume alone (snapshot, upload, release) into ``repo``."""
    run = str(uuid.uuid4())
    try:
        handle = platform.snapshot(run, [volume]).volumes[volume]
        return platform.upload_volume(
            run,
            volume,
            handle,
            repo,
            [f"execution={run}"],
            parent=None,
            force=False,
            progress=lambda _p: None,
        )
    finally:
        platform.release(run)


def new_repository(storage: Path, namespace: str) -> Repository:
    """A restic repository for ``namespace`` under the backup storage mounted at ``storage``,
    initialised by the worker (so root's, mode 0700)."""
    repo = Repository(storage / "stor1" / namespace, secrets.token_urlsafe(32))
    repo.path.parent.mkdir(parents=True)
    Restic().init(repo)
    return repo


@pytest.fixture(autouse=True)
def requests_allowed_by_rbac(cairn: CairnCalls) -> Iterator[None]:
    """After each test: every request cairn made so far is granted by deploy/kubernetes/."""
    yield
    assert uncovered(cairn.used) == set()


def test_backup_damage_restore_gives_back_every_byte(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    cairn_settings: Settings,
    cairn: CairnCalls,
) -> None:
    platform = platform_of(app, cairn_settings, cairn)
    ns = app.namespace
    volumes = {claim: kube.pvc_path(ns, claim) for claim in CLAIMS.values()}
    files_before = {claim: folder_hashes(folder) for claim, folder in volumes.items()}
    rows_before = table_hash(app.server, app.dbname)
    config_before = config_state(kube_api, ns)

    backup = str(uuid.uuid4())
    tags = [f"execution={backup}"]
    seen: list[Progress] = []
    since = kube.store.revision
    platform.check_targets(True, platform.volume_names())
    point = platform.snapshot(backup, platform.volume_names())
    assert point.consistent and set(point.volumes) == set(CLAIMS)
    again = platform.snapshot(backup, platform.volume_names())  # a retried step
    assert again.volumes == point.volumes
    assert len(kube.list(SNAPSHOT_GROUP, "volumesnapshots", ns)) == len(CLAIMS)
    dump = platform.dump_database(backup, app.repo, [*tags, "part=database"], seen.append)
    assert dump.row_counts == {"public.orders": 300} and seen
    uploads = {
        volume: platform.upload_volume(
            backup,
            volume,
            handle,
            app.repo,
            [*tags, f"part={volume}"],
            parent=None,
            force=False,
            progress=seen.append,
        )
        for volume, handle in point.volumes.items()
    }
    assert uploads["data"].files == 2 and uploads["uploads"].files == 1
    config = platform.export_config(backup, app.repo, [*tags, "part=config"])
    assert config is not None
    platform.release(backup)
    assert leftovers(kube, ns) == []
    # every mover of the backup ran in cairn's namespace, as its own account; the database
    # password reached the dump through the mover's run Secret there
    backup_pods = mover_pods(kube, since)
    assert set(where_movers_ran(backup_pods).values()) == {(HOME, MOVER_SERVICE_ACCOUNT)}
    assert len(backup_pods) == 1 + len(CLAIMS)
    (dump_pod,) = [p for p in backup_pods if "-dump-" in p["metadata"]["name"]]
    dump_env = {e["name"]: e for e in dump_pod["spec"]["containers"][0]["env"]}
    job = dump_pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
    assert dump_env["PGPASSWORD"] == {
        "name": "PGPASSWORD",
        "valueFrom": {"secretKeyRef": {"name": job, "key": "PGPASSWORD"}},
    }
    assert kube.list("networking.k8s.io", "networkpolicies", ns) == []

    # damage everything
    for folder in volumes.values():
        for path in sorted(folder.rglob("*"), reverse=True):
            if path.is_file():
                path.unlink()
    (volumes["data-pvc"] / "stray.txt").write_text("written after the backup")
    with _connect(app.server, app.dbname) as conn:
        conn.execute("DELETE FROM orders WHERE id > 100")
    core(kube_api).delete_namespaced_config_map("settings", ns)
    core(kube_api).patch_namespaced_secret(
        "api-keys", ns, {"data": {"stripe": base64.b64encode(b"changed").decode()}}
    )

    restore = str(uuid.uuid4())
    since = kube.store.revision
    platform.quiesce()
    assert replicas(kube_api, ns) == (0, 0)
    try:
        platform.restore_database(restore, app.repo, dump.snapshot_id, seen.append)
        for volume, upload in uploads.items():
            platform.restore_volume(
                restore,
                volume,
                app.repo,
                upload.snapshot_id,
                seen.append,
            )
        platform.restore_config(restore, app.repo, config.snapshot_id)
        measured = platform.measure(True, list(CLAIMS))
    finally:
        platform.resume()
        platform.release(restore)
    assert replicas(kube_api, ns) == (2, 1)
    assert measured.row_counts == dump.row_counts
    assert {v: (f.files, f.bytes) for v, f in measured.volumes.items()} == {
        v: (u.files, u.bytes_processed) for v, u in uploads.items()
    }
    assert table_hash(app.server, app.dbname) == rows_before
    assert {c: folder_hashes(kube.pvc_path(ns, c)) for c in CLAIMS.values()} == files_before
    assert config_state(kube_api, ns) == config_before
    assert leftovers(kube, ns) == []
    # every mover ran in cairn's namespace, as its account: the volumes were restored into
    # new volumes there (their files counted there), which the claims were re-bound to
    ran = where_movers_ran(mover_pods(kube, since))
    kinds = {
        where: sorted(job.split("-")[1] for job, at in ran.items() if at == where)
        for where in set(ran.values())
    }
    assert kinds == {(HOME, MOVER_SERVICE_ACCOUNT): ["count", "rdb", "rvol", "rvol"]}


def test_a_failed_mover_says_why_and_leaves_nothing(
    app: App, kube: FakeKube, cairn_settings: Settings, cairn: CairnCalls
) -> None:
    database = {**app.settings["database"], "dbname": f"{app.dbname}_absent"}
    platform = platform_of(app, cairn_settings, cairn, database=database)
    run = str(uuid.uuid4())
    try:
        with pytest.raises(PlatformError) as failed:
            platform.dump_database(run, app.repo, [f"execution={run}"], lambda _p: None)
    finally:
        platform.release(run)
    message = failed.value.message
    assert "exited with 1; its last log lines" in message
    assert f'database "{app.dbname}_absent" does not exist' in message
    assert app.repo.password not in message
    assert leftovers(kube, app.namespace) == []


def test_a_mover_s_result_and_failure_come_from_its_status_when_its_log_cannot_be_read(
    app: App, kube: FakeKube, cairn_settings: Settings, cairn: CairnCalls
) -> None:
    """The API server cannot reach the node's kubelet: no log, no progress, yet the result
    (and a failure's last lines) reach cairn through the termination message."""
    platform = platform_of(app, cairn_settings, cairn)
    expected = platform.estimate_bytes(database=True, volumes=[])
    kube.refuse_logs(10_000)
    try:
        assert platform.estimate_bytes(database=True, volumes=[]) == expected
        database = {**app.settings["database"], "dbname": f"{app.dbname}_absent"}
        absent = platform_of(app, cairn_settings, cairn, database=database)
        with pytest.raises(PlatformError) as failed:
            absent.estimate_bytes(database=True, volumes=[])
    finally:
        kube.refuse_logs(0)
    assert "exited with 1; its last log lines:" in failed.value.message
    assert f'database "{app.dbname}_absent" does not exist' in failed.value.message
    assert leftovers(kube, app.namespace) == []


def test_a_mover_whose_service_account_is_missing_is_refused_at_once(
    app: App, cairn_settings: Settings, cairn: CairnCalls
) -> None:
    """Movers run as cairn-mover in cairn's namespace: without that account (here: a
    namespace that is not cairn's) the Job's pods are refused, said at once, not after the
    start timeout. (A misconfiguration: its requests are not compared with the RBAC, which
    grants Jobs in cairn's own namespace only.)"""
    elsewhere = cairn_settings.model_copy(update={"kube_namespace": app.namespace})
    misplaced = KubernetesPlatform(app.settings, {}, cairn=elsewhere, restic=Restic())
    started = time.monotonic()
    with pytest.raises(PlatformError) as refused:
        misplaced.estimate_bytes(database=True, volumes=[])
    assert time.monotonic() - started < cairn_settings.kube_mover_timeout_seconds / 2
    assert (
        f"error looking up service account {app.namespace}/{MOVER_SERVICE_ACCOUNT}:"
        in refused.value.message
    )


def test_a_database_service_is_reached_by_its_cluster_dns_name() -> None:
    """Movers run in cairn's namespace: the service name the application's own pods use is
    qualified with the application's namespace; other addresses are kept as written."""
    assert service_host("postgres", "shop") == "postgres.shop.svc"
    for kept in ("postgres.shop.svc", "db.example.com", "10.0.0.7", "fd00::7", "/run/pg"):
        assert service_host(kept, "shop") == kept


def test_a_snapshot_never_ready_times_out_and_leaves_nothing(
    app: App, kube: FakeKube, cairn_settings: Settings, cairn: CairnCalls
) -> None:
    platform = platform_of(app, cairn_settings, cairn, snapshot_class=STUCK_CLASS)
    run = str(uuid.uuid4())
    with pytest.raises(PlatformError) as timed_out:
        platform.snapshot(run, ["data"])
    assert "was not ready within 4 s" in timed_out.value.message
    assert leftovers(kube, app.namespace) == []


def test_movers_pass_the_restricted_pod_security_profile_unless_run_as_root(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    cairn_settings: Settings,
    cairn: CairnCalls,
) -> None:
    """A namespace enforcing ``restricted`` admits a mover of the image's own (non-root)
    user, with its requests and fsGroup; a root mover is refused at once, with the reasons."""
    enforce = "pod-security.kubernetes.io/enforce"
    core(kube_api).patch_namespace(HOME, {"metadata": {"labels": {enforce: "restricted"}}})
    try:
        unprivileged = cairn_settings.model_copy(
            update={"mover_run_as_user": None, "mover_fs_group": 2000}
        )
        before = kube.store.revision
        platform = platform_of(app, unprivileged, cairn)
        assert platform.estimate_bytes(database=True, volumes=[]) > 0
        (pod,) = mover_pods(kube, before)
        assert pod["spec"]["securityContext"]["fsGroup"] == 2000
        assert pod["spec"]["containers"][0]["resources"]["requests"] == {
            "cpu": "250m",
            "memory": "256Mi",
        }
        with pytest.raises(PlatformError) as refused:
            platform_of(app, cairn_settings, cairn).estimate_bytes(database=True, volumes=[])
    finally:
        core(kube_api).patch_namespace(HOME, {"metadata": {"labels": {enforce: None}}})
    assert "cannot start: Error creating: pods" in refused.value.message
    assert 'violates PodSecurity "restricted:latest": ' in refused.value.message
    assert refused.value.message.endswith("runAsUser=0 (pod must not set runAsUser=0)")
    assert leftovers(kube, app.namespace) == []


APP_USER, STORAGE_GROUP = 1000, 2000  # the application's uid and gid; the repository's group


def _owners_and_modes(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Below ``folder``: each path's (uid, gid, permission bits)."""
    return {
        str(path.relative_to(folder)): (
            path.lstat().st_uid,
            path.lstat().st_gid,
            path.lstat().st_mode & 0o7777,
        )
        for path in sorted(folder.rglob("*"))
    }


def _listed_by_another_member(repo: Repository) -> list[str]:
    """The repository's snapshots as a user of the repository's group (10001, the image's
    user, as the worker runs) lists them with restic."""
    listed = subprocess.run(
        ["restic", "-r", str(repo.path), "--no-cache", "snapshots", "--json"],
        env={"PATH": os.environ["PATH"], "HOME": "/tmp", "RESTIC_PASSWORD": repo.password},
        user=10001,
        group=10001,
        extra_groups=[STORAGE_GROUP],
        capture_output=True,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    return [str(s["short_id"]) for s in json.loads(listed.stdout)]


def _application_pod(container: dict[str, Any], *, fs_group: bool = False) -> dict[str, Any]:
    """A pod spec run as the application's user (APP_USER:APP_USER, with fsGroup APP_USER
    when ``fs_group``), its one container mounting the claim data-pvc at /data."""
    security = {"runAsUser": APP_USER, "runAsGroup": APP_USER}
    return {
        "securityContext": {**security, "fsGroup": APP_USER} if fs_group else security,
        "containers": [{**container, "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-pvc"}}],
    }


def _run_web_as_the_application(
    kube_api: client.ApiClient, namespace: str, *, fs_group: bool
) -> None:
    """deployment/web patched to run as the application's user, mounting data-pvc."""
    apps(kube_api).patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"spec": _application_pod({"name": "main"}, fs_group=fs_group)}}},
    )


def _as_the_application(
    kube_api: client.ApiClient, namespace: str, name: str, script: str
) -> tuple[str, str]:
    """A Job in the application's namespace, run as the application's user (no fsGroup:
    only the files' own owners and modes let it in), on its claim data-pvc: its outcome and
    log."""
    container = {"name": "app", "image": "shop:1", "command": ["sh", "-c", script]}
    job = {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", **_application_pod(container)}},
        },
    }
    batch: Any = client.BatchV1Api(kube_api)
    batch.create_namespaced_job(namespace, job)
    deadline = time.monotonic() + 60
    while True:
        found = batch.read_namespaced_job(name, namespace)
        done = [c.type for c in found.status.conditions or [] if c.type in ("Complete", "Failed")]
        if done:
            break
        assert time.monotonic() < deadline, f"the Job {name} did not end"
        time.sleep(0.1)
    (pod,) = core(kube_api).list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    log = core(kube_api).read_namespaced_pod_log(pod.metadata.name, namespace)
    batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    return done[0], log


def test_files_only_the_application_may_read_are_backed_up_and_restored_as_its_own(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    cairn_settings: Settings,
    cairn: CairnCalls,
) -> None:
    """Issue 29, item 3. The application (deployment/web, 1000:1000, fsGroup 1000) keeps
    files of mode 0600 in folders of mode 0700, its own. Movers are not root (the image's
    user, the restricted profile) and the repository's group is CAIRN_MOVER_FS_GROUP. The
    volume's movers run as the application's pods do, so the backup reads every file, and
    the restore gives back files the application owns, with their modes, that it can write;
    the repository stays usable by movers of any user in its group."""
    ns = app.namespace
    _run_web_as_the_application(kube_api, ns, fs_group=True)
    volume = kube.pvc_path(ns, "data-pvc")
    (volume / "private").mkdir(mode=0o700)
    (volume / "private" / "key.pem").write_bytes(os.urandom(3000))
    for path in volume.rglob("*"):
        os.chown(path, APP_USER, APP_USER)
        path.chmod(0o700 if path.is_dir() else 0o600)
    os.chown(volume, APP_USER, APP_USER)
    volume.chmod(0o700)
    hashes, owners = folder_hashes(volume), _owners_and_modes(volume)
    unprivileged = cairn_settings.model_copy(
        update={"mover_run_as_user": None, "mover_fs_group": STORAGE_GROUP}
    )
    platform = platform_of(app, unprivileged, cairn)

    since = kube.store.revision
    upload = backed_up_volume(platform, app.repo, "data")
    assert upload.files == len([p for p in volume.rglob("*") if p.is_file()])
    (mover,) = mover_pods(kube, since)
    assert mover["spec"]["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": APP_USER,
        "runAsGroup": APP_USER,
        "runAsNonRoot": True,
        "fsGroup": APP_USER,  # the storage is an nfs export, which an fsGroup leaves alone
        "fsGroupChangePolicy": "OnRootMismatch",
        "supplementalGroups": [STORAGE_GROUP],
    }
    # what the application's mover wrote into the repository is the group's, readable by it
    assert sharing.is_shared(app.repo.path, STORAGE_GROUP)
    written = [p for p in (app.repo.path / "snapshots").iterdir()]
    assert written and all(
        p.stat().st_gid == STORAGE_GROUP and p.stat().st_mode & 0o040 for p in written
    )
    # and a worker of another user in the group (cairn's image's, 10001) reads it all
    assert _listed_by_another_member(app.repo) == [upload.snapshot_id[:8]]

    shutil.rmtree(volume / "private")
    (volume / "notes.txt").write_text("damaged")
    restore, since = str(uuid.uuid4()), kube.store.revision
    platform.quiesce()
    try:
        platform.restore_volume(restore, "data", app.repo, upload.snapshot_id, lambda _: None)
        restored = kube.pvc_path(ns, "data-pvc")
        assert restored != volume  # a new volume, the claim re-bound to it
        assert folder_hashes(restored) == hashes
        assert _owners_and_modes(restored) == owners
        # the root too, before the application's fsGroup re-groups it as it starts
        assert volume_root.of(restored) == volume_root.Root(APP_USER, APP_USER, 0o700)
        outcome, log = _as_the_application(
            kube_api,
            ns,
            "app-writes",
            "echo more >> /data/private/key.pem && echo new > /data/private/new.txt"
            " && echo new > /data/top.txt && echo written",
        )
        assert (outcome, log) == ("Complete", "written\n"), log
    finally:
        platform.resume()
    # the restore's mover ran as the application; the volume's root was given back by root
    assert mover_users(mover_pods(kube, since)) == {"rvol": APP_USER, "rroot": 0}
    assert leftovers(kube, ns) == []


def test_what_a_root_mover_writes_stays_readable_by_the_repository_s_group(
    app: App, kube: FakeKube, cairn_settings: Settings, cairn: CairnCalls
) -> None:
    """Issue 29, item 3: a mover run as root (CAIRN_MOVER_RUN_AS_USER=0) wrote repository
    files of mode 0600 that only root could read. In a repository shared with
    CAIRN_MOVER_FS_GROUP, what it writes is the group's and group-readable."""
    rooted = cairn_settings.model_copy(
        update={"mover_run_as_user": 0, "mover_fs_group": STORAGE_GROUP}
    )
    platform = platform_of(app, rooted, cairn)
    run = str(uuid.uuid4())
    dump = platform.dump_database(run, app.repo, [f"execution={run}"], lambda _: None)
    platform.release(run)
    files = [p for p in app.repo.path.rglob("*") if p.is_file()]
    assert files and all(
        p.stat().st_gid == STORAGE_GROUP and p.stat().st_mode & 0o040 for p in files
    )
    assert _listed_by_another_member(app.repo) == [dump.snapshot_id[:8]]
    assert leftovers(kube, app.namespace) == []


SQUASH_SERVER = "10.0.0.6"


def test_a_root_squash_export_refuses_root_movers_and_serves_the_repository_s_group(
    app: App,
    kube: FakeKube,
    cairn_settings: Settings,
    cairn: CairnCalls,
    tmp_path: Path,
) -> None:
    """Issue 29, item 3: the backup storage an NFS export with root_squash, as
    docs/kubernetes.md recommends. A mover run as root (CAIRN_MOVER_RUN_AS_USER=0), not in
    the repository's group, is nobody there: it fails at once, saying why. Movers of the
    image's user in the repository's group (and root in it: squashed root keeps its
    supplementary groups) back up and restore through it, the volume's root given back by
    a root mover that does not mount the storage, and the worker reads what they wrote."""
    export = tmp_path / "squashed"
    export.mkdir()
    export.chmod(0o711)
    kube.map_nfs(SQUASH_SERVER, "/export/squashed", export, root_squash=True)
    repo = new_repository(export, app.namespace)
    on_squashed = {
        "storage_mount_root": export,
        "kube_storage_volume": {"nfs": {"server": SQUASH_SERVER, "path": "/export/squashed"}},
    }
    rooted = cairn_settings.model_copy(
        update={**on_squashed, "mover_run_as_user": 0, "mover_fs_group": None}
    )
    run, started = str(uuid.uuid4()), time.monotonic()
    with pytest.raises(PlatformError) as refused:
        platform_of(app, rooted, cairn).dump_database(
            run, repo, [f"execution={run}"], lambda _: None
        )
    assert time.monotonic() - started < cairn_settings.kube_mover_timeout_seconds
    message = refused.value.message
    assert message.startswith(
        "the backup storage refused a mover run as root (permission denied under"
        " /cairn-storage): an NFS export with root_squash"
    ), message
    assert f"cannot write in /cairn-storage/stor1/{app.namespace}/locks" in message, message
    assert not refused.value.retryable
    assert Restic().snapshots(repo) == []

    grouped = cairn_settings.model_copy(
        update={**on_squashed, "mover_run_as_user": None, "mover_fs_group": STORAGE_GROUP}
    )
    platform = platform_of(app, grouped, cairn)
    backup = str(uuid.uuid4())
    dump = platform.dump_database(backup, repo, [f"execution={backup}"], lambda _: None)
    platform.release(backup)
    upload = backed_up_volume(platform, repo, "data")
    squashed_root = cairn_settings.model_copy(
        update={**on_squashed, "mover_run_as_user": 0, "mover_fs_group": STORAGE_GROUP}
    )
    again = str(uuid.uuid4())
    platform_of(app, squashed_root, cairn).dump_database(
        again, repo, [f"execution={again}"], lambda _: None
    )
    platform.release(again)
    # the worker (root here, a member of the group in a cluster) reads what the movers wrote
    assert len(Restic().snapshots(repo)) == 3
    assert _listed_by_another_member(repo)[:2] == [dump.snapshot_id[:8], upload.snapshot_id[:8]]
    nobody = [p for p in repo.path.rglob("*") if p.is_file() and p.stat().st_uid == 65534]
    assert nobody and all(p.stat().st_gid == STORAGE_GROUP for p in nobody)

    volume = kube.pvc_path(app.namespace, "data-pvc")
    hashes, root = folder_hashes(volume), volume_root.of(volume)
    (volume / "notes.txt").write_text("damaged")
    platform.quiesce()
    try:
        platform.restore_volume(str(uuid.uuid4()), "data", repo, upload.snapshot_id, lambda _: None)
    finally:
        platform.resume()
    restored = kube.pvc_path(app.namespace, "data-pvc")
    assert folder_hashes(restored) == hashes and volume_root.of(restored) == root
    assert leftovers(kube, app.namespace) == []


def _the_application_s_own_root(kube: FakeKube, kube_api: client.ApiClient, ns: str) -> Path:
    """deployment/web made to run as APP_USER without fsGroup, mounting data-pvc, whose
    folder (returned) and files become that user's, the folder of mode 0750."""
    _run_web_as_the_application(kube_api, ns, fs_group=False)
    volume = kube.pvc_path(ns, "data-pvc")
    for path in [volume, *volume.rglob("*")]:
        os.chown(path, APP_USER, APP_USER)
    volume.chmod(0o750)
    return volume


def test_a_restored_volume_s_root_gets_back_its_owner_and_mode(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    cairn_settings: Settings,
    cairn: CairnCalls,
) -> None:
    """Issue 29: a volume whose root is the application's own (1000:1000, mode 0750; the
    application runs as 1000 without fsGroup) is restored into a new volume, whose root is
    root's; the restore's mover (the application's user) cannot give it away, so a root
    mover with that volume only does, and the application writes at its root again."""
    ns = app.namespace
    volume = _the_application_s_own_root(kube, kube_api, ns)
    unprivileged = cairn_settings.model_copy(
        update={"mover_run_as_user": None, "mover_fs_group": STORAGE_GROUP}
    )
    platform = platform_of(app, unprivileged, cairn)
    upload = backed_up_volume(platform, app.repo, "data")
    assert "volume-root=1000:1000:0750" in Restic().snapshot(app.repo, upload.snapshot_id).tags

    restore, since = str(uuid.uuid4()), kube.store.revision
    platform.quiesce()
    try:
        note = platform.restore_volume(
            restore, "data", app.repo, upload.snapshot_id, lambda _: None
        )
        restored = kube.pvc_path(ns, "data-pvc")
        assert restored != volume
        assert volume_root.of(restored) == volume_root.Root(APP_USER, APP_USER, 0o750)
        outcome, log = _as_the_application(
            kube_api, ns, "app-writes-root", "echo new > /data/top.txt && echo written"
        )
        assert (outcome, log) == ("Complete", "written\n"), log
    finally:
        platform.resume()
    assert note == "volume data (claim data-pvc) re-bound to a volume restored from the backup"
    assert mover_users(mover_pods(kube, since)) == {"rvol": APP_USER, "rroot": 0}
    assert leftovers(kube, ns) == []


def test_a_namespace_refusing_root_pods_leaves_the_restored_root_and_says_so(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    cairn_settings: Settings,
    cairn: CairnCalls,
) -> None:
    """cairn's namespace at Pod Security ``restricted`` (the storage a claim, which that
    profile admits): the restore's movers run, the root mover that would give the volume's
    root back is refused, and the restore ends with its files and a note saying so."""
    ns = app.namespace
    volume = _the_application_s_own_root(kube, kube_api, ns)
    core(kube_api).create_namespaced_persistent_volume_claim(
        HOME,
        {
            "metadata": {"name": "backup-storage"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    storage = _bound(kube, HOME, "backup-storage")
    repo = new_repository(storage, ns)
    on_claim = cairn_settings.model_copy(
        update={
            "storage_mount_root": storage,
            "kube_storage_volume": {"persistentVolumeClaim": {"claimName": "backup-storage"}},
            "mover_run_as_user": None,
            "mover_fs_group": STORAGE_GROUP,
        }
    )
    platform = platform_of(app, on_claim, cairn)
    enforce = "pod-security.kubernetes.io/enforce"
    core(kube_api).patch_namespace(HOME, {"metadata": {"labels": {enforce: "restricted"}}})
    try:
        upload = backed_up_volume(platform, repo, "data")
        hashes = folder_hashes(volume)
        platform.quiesce()
        try:
            note = platform.restore_volume(
                str(uuid.uuid4()), "data", repo, upload.snapshot_id, lambda _: None
            )
        finally:
            platform.resume()
    finally:
        core(kube_api).patch_namespace(HOME, {"metadata": {"labels": {enforce: None}}})
        core(kube_api).delete_namespaced_persistent_volume_claim("backup-storage", HOME)
    restored = kube.pvc_path(ns, "data-pvc")
    assert folder_hashes(restored) == hashes
    assert volume_root.of(restored).uid == 0  # as the new volume was made
    assert note.startswith(
        "volume data (claim data-pvc) re-bound to a volume restored from the backup; its root"
        " was not given back its owner and mode (1000:1000:0750): a root pod is needed for"
        " that, and the mover Job cairn/cairn-rroot-"
    ), note
    assert 'violates PodSecurity "restricted:latest": ' in note
    assert leftovers(kube, ns) == []


def test_passwords_reach_the_mover_only_through_secret_references() -> None:
    mover = Mover("cairn-dump-x", ["dump"], secret={"RESTIC_PASSWORD": "s3cret-repo"})
    placement = Placement("ns", "cairn:local", {"a": "b"}, {"c": "d"}, 10, run_as_user=0)
    manifest = job_manifest(mover, placement)
    assert "s3cret-repo" not in repr(manifest)
    pod = manifest["spec"]["template"]["spec"]
    # root keeps its capabilities (baseline), nothing else is given up
    assert pod["securityContext"] == {"runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["containers"][0]["securityContext"] == {"allowPrivilegeEscalation": False}
    assert pod["automountServiceAccountToken"] is False
    env = manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {"name": "CAIRN_TERMINATION_LOG", "value": "/dev/termination-log"},
        {
            "name": "RESTIC_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "cairn-dump-x", "key": "RESTIC_PASSWORD"}},
        },
    ]


UPLOAD_IN_A_WORKER = """
import json, os, sys
from pathlib import Path
from adapters.kubernetes.platform import KubernetesPlatform
from adapters.restic import Repository, Restic
from core.settings import Settings

run, handle = sys.argv[1], sys.argv[2]
platform = KubernetesPlatform(json.loads(os.environ["APP"]), {}, cairn=Settings(), restic=Restic())
repo = Repository(Path(os.environ["REPO"]), os.environ["REPO_PASSWORD"])
platform.upload_volume(
    run, "data", handle, repo, [f"execution={run}"], parent=None, force=False,
    progress=lambda _p: None,
)
"""


def test_a_worker_killed_while_its_mover_runs_is_followed_by_the_same_job(
    app: App, kube: FakeKube, cairn_settings: Settings, cairn: CairnCalls
) -> None:
    """The retry after a SIGKILL awaits the Job (and claim) the killed attempt started."""
    platform = platform_of(app, cairn_settings, cairn)
    run = str(uuid.uuid4())
    handle = platform.snapshot(run, ["data"]).volumes["data"]
    storage = cairn_settings.kube_storage_volume
    env = {
        **os.environ,
        "APP": json.dumps(app.settings),
        "REPO": str(app.repo.path),
        "REPO_PASSWORD": app.repo.password,
        "CAIRN_KUBECONFIG": str(cairn_settings.kubeconfig),
        "CAIRN_STORAGE_MOUNT_ROOT": str(cairn_settings.storage_mount_root),
        "CAIRN_KUBE_STORAGE_VOLUME": json.dumps(storage),
        "CAIRN_KUBE_SNAPSHOT_CLASS": GOOD_CLASS,
        # as cairn_settings: the repository is root's, as the worker (this test) made it
        "CAIRN_MOVER_RUN_AS_USER": str(cairn_settings.mover_run_as_user),
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", UPLOAD_IN_A_WORKER, run, handle], env=env, cwd=Path.cwd()
    )
    try:
        deadline = time.monotonic() + 60
        while not kube.list("batch", "jobs", HOME):
            assert worker.poll() is None, "the worker ended before it started its mover"
            assert time.monotonic() < deadline, "no mover Job was started"
            time.sleep(0.02)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait()
    assert len(kube.list(SNAPSHOT_GROUP, "volumesnapshots", app.namespace)) == 1
    assert len(kube.list(SNAPSHOT_GROUP, "volumesnapshots", HOME)) == 1  # its clone
    assert len(kube.list("", "persistentvolumeclaims", app.namespace)) == len(CLAIMS)
    assert len(kube.list("", "persistentvolumeclaims", HOME)) == 1
    try:
        upload = platform.upload_volume(
            run,
            "data",
            handle,
            app.repo,
            [f"execution={run}"],
            parent=None,
            force=False,
            progress=lambda _p: None,
        )
        made = Restic().snapshots(app.repo, [f"execution={run}"])
        assert [s.short_id for s in made] == [upload.snapshot_id]  # one mover ran, not two
    finally:
        platform.release(run)
    assert leftovers(kube, app.namespace) == []


def test_each_claim_is_snapshotted_by_its_own_driver_and_retained_snapshots_do_not_stay(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    cairn_settings: Settings,
    cairn: CairnCalls,
) -> None:
    """Claims on two CSI drivers, classes that Retain: each claim gets its driver's class (the
    application's for the first driver, the second driver's default for the other), and
    backups leave no VolumeSnapshotContent, nor its copy, behind. The temporary claim of a
    ReadWriteMany claim is ReadWriteOnce, of the same class and volume mode."""
    ns = app.namespace
    core(kube_api).create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": "shared-pvc"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": SECOND_STORAGE_CLASS,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    (_bound(kube, ns, "shared-pvc") / "report.csv").write_text("a,b\n")
    volumes = {**CLAIMS, "shared": "shared-pvc"}
    platform = platform_of(app, cairn_settings, cairn, volumes=volumes, snapshot_class=RETAIN_CLASS)
    contents: list[str] = []
    before = kube.store.revision
    for _ in range(2):
        run = str(uuid.uuid4())
        try:
            point = platform.snapshot(run, sorted(volumes))
            made = {
                volume: kube.get(SNAPSHOT_GROUP, "volumesnapshots", ns, handle) or {}
                for volume, handle in point.volumes.items()
            }
            classes = {v: made[v]["spec"]["volumeSnapshotClassName"] for v in made}
            contents += [m["status"]["boundVolumeSnapshotContentName"] for m in made.values()]
            assert classes == {
                "data": RETAIN_CLASS,
                "uploads": RETAIN_CLASS,
                "shared": SHARED_CLASS,
            }
            upload = platform.upload_volume(
                run,
                "shared",
                point.volumes["shared"],
                app.repo,
                [f"execution={run}"],
                parent=None,
                force=False,
                progress=lambda _p: None,
            )
            assert upload.files == 1
        finally:
            platform.release(run)
    assert leftovers(kube, ns) == []
    assert len(contents) == 6
    left = {c["metadata"]["name"] for c in kube.list(SNAPSHOT_GROUP, "volumesnapshotcontents")}
    assert left & set(contents) == set()
    assert [name for name in contents if (kube.root / "snapshots" / name).exists()] == []
    copies = [
        event.object["spec"]
        for event in kube.store.events_after(before)
        if event.type == "ADDED"
        and event.resource.kind == "PersistentVolumeClaim"
        and event.object["metadata"]["name"].startswith("cairn-copy-")
    ]
    assert len(copies) == 2
    assert {(tuple(c["accessModes"]), c["storageClassName"], c["volumeMode"]) for c in copies} == {
        (("ReadWriteOnce",), SECOND_STORAGE_CLASS, "Filesystem")
    }


@contextlib.contextmanager
def retained_claim(kube: FakeKube, kube_api: client.ApiClient, ns: str) -> Iterator[None]:
    """The claim ``kept-pvc`` holding ``a.txt`` ("kept"), on a StorageClass that Retains;
    the claim and the class are deleted afterwards."""
    storage = client.StorageV1Api(kube_api)
    retain = f"retain-{ns}"
    storage.create_storage_class(
        client.V1StorageClass(
            metadata=client.V1ObjectMeta(name=retain),
            provisioner=CSI_DRIVER,
            reclaim_policy="Retain",
        )
    )
    try:
        core(kube_api).create_namespaced_persistent_volume_claim(
            ns,
            {
                "metadata": {"name": "kept-pvc"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": retain,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        (_bound(kube, ns, "kept-pvc") / "a.txt").write_text("kept\n")
        yield
    finally:
        with contextlib.suppress(client.ApiException):
            core(kube_api).delete_namespaced_persistent_volume_claim("kept-pvc", ns)
        storage.delete_storage_class(retain)


def test_runs_on_retain_classes_leave_nothing_of_cairn_s_behind(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    cairn_settings: Settings,
    cairn: CairnCalls,
) -> None:
    """Runs on a StorageClass and a VolumeSnapshotClass that both Retain: 20 backups (a
    snapshot, its clone, a temporary claim, an upload) and 20 restores (a drill's scratch
    claim filled from the backup), with a few bytes of data. Afterwards no VolumeSnapshot,
    VolumeSnapshotContent, PersistentVolume, claim, Job, Secret or NetworkPolicy of cairn's
    is left, nor the storage behind them."""
    ns = app.namespace
    with retained_claim(kube, kube_api, ns):
        platform = platform_of(
            app, cairn_settings, cairn, volumes={"kept": "kept-pvc"}, snapshot_class=RETAIN_CLASS
        )
        volumes_before = {v["metadata"]["name"] for v in kube.list("", "persistentvolumes")}
        contents: list[str] = []
        for _ in range(LEAK_RUNS):
            run, drill = str(uuid.uuid4()), str(uuid.uuid4())
            try:
                point = platform.snapshot(run, ["kept"])
                handle = point.volumes["kept"]
                made = kube.get(SNAPSHOT_GROUP, "volumesnapshots", ns, handle) or {}
                contents.append(made["status"]["boundVolumeSnapshotContentName"])
                upload = platform.upload_volume(
                    run,
                    "kept",
                    handle,
                    app.repo,
                    [f"execution={run}"],
                    parent=None,
                    force=False,
                    progress=lambda _p: None,
                )
            finally:
                platform.release(run)
            try:
                into = Scratch(drill)
                platform.restore_volume(
                    drill, "kept", app.repo, upload.snapshot_id, lambda _p: None, into=into
                )
                scratch = kube.pvc_path(HOME, run_name("drill", drill, "kept"))
                assert (scratch / "a.txt").read_text() == "kept\n"
            finally:
                platform.release(drill)
        assert leftovers(kube, ns) == []
        volumes = {v["metadata"]["name"] for v in kube.list("", "persistentvolumes")}
        assert volumes == volumes_before
        left = {c["metadata"]["name"] for c in kube.list(SNAPSHOT_GROUP, "volumesnapshotcontents")}
        assert left & set(contents) == set()
        assert [name for name in contents if (kube.root / "snapshots" / name).exists()] == []
        folders = {folder.name for folder in (kube.root / "volumes").iterdir()}
        assert folders - volumes == set()


def test_copies_of_a_volume_keep_its_volume_mode_and_topology(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    cairn_settings: Settings,
    cairn: CairnCalls,
) -> None:
    """A claim provisioned for one node (the scheduler's selected-node annotation, a volume
    reachable from that node only): its upload's temporary claim and a drill's scratch claim
    are provisioned for the same node, and their movers are scheduled by the source
    volume's node affinity (the fake's scheduler refuses a pod that does not match)."""
    ns = app.namespace
    core(kube_api).create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": "local-pvc", "annotations": {SELECTED_NODE: NODE_NAME}},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": "Filesystem",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    (_bound(kube, ns, "local-pvc") / "here.txt").write_text("on this node\n")
    claim = kube.get("", "persistentvolumeclaims", ns, "local-pvc") or {}
    pinned = (kube.get("", "persistentvolumes", "", claim["spec"]["volumeName"]) or {})["spec"]
    platform = platform_of(app, cairn_settings, cairn, volumes={"local": "local-pvc"})
    before = kube.store.revision
    snapshot = backed_up_volume(platform, app.repo, "local").snapshot_id
    drill = str(uuid.uuid4())
    try:
        platform.restore_volume(
            drill, "local", app.repo, snapshot, lambda _p: None, into=Scratch(drill)
        )
        scratch = kube.pvc_path(HOME, run_name("drill", drill, "local"))
        assert (scratch / "here.txt").read_text() == "on this node\n"
    finally:
        platform.release(drill)
    copies = [
        event.object
        for event in kube.store.events_after(before)
        if event.type == "ADDED"
        and event.resource.kind == "PersistentVolumeClaim"
        and event.object["metadata"]["namespace"] == HOME
    ]
    assert len(copies) == 2  # the upload's temporary claim, the drill's scratch claim
    for copy in copies:
        assert copy["metadata"]["annotations"][SELECTED_NODE] == NODE_NAME
        assert copy["spec"]["volumeMode"] == "Filesystem"
    pods = mover_pods(kube, before)
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["affinity"]["nodeAffinity"] == {
            "requiredDuringSchedulingIgnoredDuringExecution": pinned["nodeAffinity"]["required"]
        }
    assert leftovers(kube, ns) == []


def test_a_raw_block_claim_is_refused_before_anything_runs(
    app: App, kube_api: client.ApiClient, cairn_settings: Settings, cairn: CairnCalls
) -> None:
    core(kube_api).create_namespaced_persistent_volume_claim(
        app.namespace,
        {
            "metadata": {"name": "raw-pvc"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": "Block",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    platform = platform_of(app, cairn_settings, cairn, volumes={**CLAIMS, "raw": "raw-pvc"})
    with pytest.raises(PlatformError) as refused:
        platform.check_targets(False, ["data", "raw"])
    assert refused.value.message == (
        "volume raw: the claim raw-pvc is a raw block volume (volumeMode Block); movers back"
        " up and restore filesystems only"
    )


def test_a_log_stream_cut_while_the_mover_runs_is_followed_again(
    app: App, kube: FakeKube, cairn_settings: Settings, cairn: CairnCalls
) -> None:
    """Two streams in a row end after one line while the upload runs: cairn opens the log
    again, past what it read, and gets the mover's result instead of failing a good upload."""
    platform = platform_of(app, cairn_settings, cairn)
    kube.cut_log_streams(2, after_lines=1)
    snapshot = backed_up_volume(platform, app.repo, "uploads").snapshot_id
    assert kube.take_log_cut() is None  # both cuts happened
    assert [s.short_id for s in Restic().snapshots(app.repo, [])] == [snapshot]
    assert leftovers(kube, app.namespace) == []


def test_a_mover_whose_pod_keeps_a_mesh_sidecar_running_is_judged_by_its_own_container(
    app: App, kube: FakeKube, cairn_settings: Settings, cairn: CairnCalls
) -> None:
    """A service mesh injects its proxy into the movers' pods: the pod runs on after the
    mover has ended, so its Job never completes. cairn takes the mover's end from its own
    container (exit code, termination message), then deletes the Job, which stops the proxy."""
    platform = platform_of(app, cairn_settings, cairn)
    database = {**app.settings["database"], "dbname": f"{app.dbname}_absent"}
    absent = platform_of(app, cairn_settings, cairn, database=database)
    since = kube.store.revision
    kube.inject_sidecar(HOME)
    try:
        snapshot = backed_up_volume(platform, app.repo, "uploads").snapshot_id
        with pytest.raises(PlatformError) as failed:
            absent.estimate_bytes(database=True, volumes=[])
    finally:
        kube.inject_sidecar(HOME, enabled=False)
    assert [s.short_id for s in Restic().snapshots(app.repo, [])] == [snapshot]
    containers = [[c["name"] for c in p["spec"]["containers"]] for p in mover_pods(kube, since)]
    assert containers == [["mover", "mesh-proxy"]] * 2
    assert "exited with 1; its last log lines:" in failed.value.message
    assert f'database "{app.dbname}_absent" does not exist' in failed.value.message
    assert leftovers(kube, app.namespace) == []


def test_a_restore_mover_evicted_while_it_works_is_run_again_to_the_end(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    cairn_settings: Settings,
    cairn: CairnCalls,
) -> None:
    """A node drained under the restore's mover, once cairn follows its log: the Job's pod
    failure policy replaces the pod (once the evicted one is gone), which fills the same new
    volume to its end; cairn leaves a mover a disruption killed to the Job, and follows the
    new pod."""
    platform = platform_of(app, cairn_settings, cairn)
    ns, folder = app.namespace, kube.pvc_path(app.namespace, CLAIMS["data"])
    backed_up = folder_hashes(folder)
    snapshot = backed_up_volume(platform, app.repo, "data").snapshot_id
    (folder / "notes.txt").write_text("changed after the backup\n")
    (folder / "stray.txt").write_text("written after the backup")
    evicted: list[str] = []

    def evict_first_mover() -> None:
        deadline = time.monotonic() + 60
        while not evicted and time.monotonic() < deadline:
            followed = {r.name for r in list(kube.requests) if r.subresource == "log"}
            for pod in kube.list("", "pods", HOME):
                name = pod["metadata"]["name"]
                running = (pod.get("status") or {}).get("phase") == "Running"
                if name.startswith("cairn-rvol-") and running and name in followed:
                    kube.evict(HOME, name)
                    evicted.append(name)
            time.sleep(0.01)

    restore = str(uuid.uuid4())
    platform.quiesce()
    with ThreadPoolExecutor(1) as pool:
        drain = pool.submit(evict_first_mover)
        try:
            platform.restore_volume(restore, "data", app.repo, snapshot, lambda _p: None)
        finally:
            drain.result()
            platform.resume()
            platform.release(restore)
    assert len(evicted) == 1
    assert folder_hashes(kube.pvc_path(ns, CLAIMS["data"])) == backed_up
    assert replicas(kube_api, ns) == (2, 1)
    assert leftovers(kube, ns) == []


# The calls of a volume's hand-over (rebind.py), in order: the record on the new volume; the
# old volume kept; the staging claim deleted; the application's claim deleted; the new
# volume pointed at it; the claim created again; bound; the old volume's policy given back;
# the record removed.
HAND_OVER_CALLS = 9


def test_a_hand_over_cut_at_any_step_ends_with_the_backup_or_the_volume_untouched(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    cairn_settings: Settings,
    cairn: CairnCalls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker killed after each call of the hand-over (after its mover filled the new
    volume): a resume finishes the hand-over, the claim (same name, labels, annotations,
    class) holds exactly the backup and the application is left stopped, saying why; cut
    before the hand-over began, the volume is untouched and the application started again.
    A retry of the step instead finishes it as the restore's own. Never a mix, never a
    claim missing, nothing of cairn's left, the replaced volumes deleted (class Delete)."""
    platform = platform_of(app, cairn_settings, cairn)
    ns, claim = app.namespace, CLAIMS["data"]
    core(kube_api).patch_namespaced_persistent_volume_claim(
        claim, ns, {"metadata": {"labels": {"tier": "gold"}, "annotations": {"owner": "shop"}}}
    )
    backed_up = folder_hashes(kube.pvc_path(ns, claim))
    snapshot = backed_up_volume(platform, app.repo, "data").snapshot_id
    calls, cut_after = [0], [0]

    def cutting(call: Callable[..., Any]) -> Callable[..., Any]:
        def cut(*args: Any, **kwargs: Any) -> Any:
            if calls[0] >= cut_after[0]:
                raise Cut
            calls[0] += 1
            return call(*args, **kwargs)

        return cut

    for name in ("_patch_volume", "_delete_claim", "_create_claim", "_wait_bound"):
        monkeypatch.setattr(rebind, name, cutting(getattr(rebind, name)))
    for cut in range(HAND_OVER_CALLS):
        retry = cut in (4, 6)  # the claim missing; created, maybe not bound yet
        folder = kube.pvc_path(ns, claim)
        (folder / "notes.txt").write_text("changed after the backup\n")
        (folder / "stray.txt").write_text("written after the backup")
        changed = folder_hashes(folder)
        old = (kube.get("", "persistentvolumeclaims", ns, claim) or {})["spec"]["volumeName"]
        restore = str(uuid.uuid4())
        platform.quiesce()
        calls[0], cut_after[0] = 0, cut
        try:
            with pytest.raises(Cut):
                platform.restore_volume(restore, "data", app.repo, snapshot, lambda _p: None)
            assert calls[0] == cut
            cut_after[0] = sys.maxsize  # no more cuts: the recovery runs to its end
            if retry:
                platform.restore_volume(restore, "data", app.repo, snapshot, lambda _p: None)
                platform.resume()
            elif cut == 0:
                platform.resume()
            else:
                with pytest.raises(PlatformError) as stopped:
                    platform.resume()
                assert "left stopped" in str(stopped.value), cut
                assert f"volume data (claim {claim})" in str(stopped.value)
        finally:
            platform.release(restore)
        found = kube.get("", "persistentvolumeclaims", ns, claim) or {}
        marks = found["metadata"].get("annotations") or {}
        assert found["metadata"]["labels"] == {"tier": "gold"}
        assert marks["owner"] == "shop"
        volumes = {v["metadata"]["name"]: v for v in kube.list("", "persistentvolumes")}
        assert [v for v in volumes.values() if REBIND in v["metadata"].get("annotations", {})] == []
        if cut == 0:
            assert found["spec"]["volumeName"] == old
            assert folder_hashes(kube.pvc_path(ns, claim)) == changed
            assert replicas(kube_api, ns) == (2, 1)
        else:
            assert found["spec"]["volumeName"] != old, cut
            assert folder_hashes(kube.pvc_path(ns, claim)) == backed_up, cut
            assert old not in volumes  # its class deletes it once Released
            if retry:
                assert replicas(kube_api, ns) == (2, 1)
                assert SWAP_ANNOTATION not in marks
            else:
                assert replicas(kube_api, ns) == (0, 0)
                assert marks[SWAP_ANNOTATION] == f"finished:{restore}"
        assert leftovers(kube, ns) == []
    assert uncovered(cairn.used) == set()


def test_a_volume_whose_class_retains_keeps_the_replaced_volume_and_nothing_else(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    cairn_settings: Settings,
    cairn: CairnCalls,
) -> None:
    """A restore of a claim on a Retain class, run twice (a retry after a crash): the claim is
    bound to the restored volume, which Retains as the class says; the volume it replaced
    stays Released with its data, marked with the restore, for an administrator; no other
    volume, claim, Job or Secret is left."""
    ns = app.namespace
    with retained_claim(kube, kube_api, ns):
        platform = platform_of(app, cairn_settings, cairn, volumes={"kept": "kept-pvc"})
        snapshot = backed_up_volume(platform, app.repo, "kept").snapshot_id
        (kube.pvc_path(ns, "kept-pvc") / "a.txt").write_text("changed\n")
        old = (kube.get("", "persistentvolumeclaims", ns, "kept-pvc") or {})["spec"]["volumeName"]
        before = {v["metadata"]["name"] for v in kube.list("", "persistentvolumes")}
        restore = str(uuid.uuid4())
        try:
            for _ in range(2):
                platform.restore_volume(restore, "kept", app.repo, snapshot, lambda _p: None)
            measured = platform.measure(False, ["kept"])
        finally:
            platform.release(restore)
        assert measured.volumes["kept"] == VolumeFigures(1, len("kept\n"))
        assert (kube.pvc_path(ns, "kept-pvc") / "a.txt").read_text() == "kept\n"
        new = (kube.get("", "persistentvolumeclaims", ns, "kept-pvc") or {})["spec"]["volumeName"]
        volumes = {v["metadata"]["name"]: v for v in kube.list("", "persistentvolumes")}
        assert set(volumes) == before | {new}
        assert volumes[new]["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert volumes[old]["status"]["phase"] == "Released"
        assert volumes[old]["metadata"]["annotations"][REPLACED] == restore
        assert (kube.root / "volumes" / old / "a.txt").read_text() == "changed\n"
        assert leftovers(kube, ns) == []


def test_one_volume_and_the_config_restored_into_another_namespace(
    app: App,
    kube: FakeKube,
    kube_api: client.ApiClient,
    cairn_settings: Settings,
    cairn: CairnCalls,
) -> None:
    """A clone: the same claims in another namespace (an immutable Secret of the backup's
    there already); only what was asked for is written."""
    source = platform_of(app, cairn_settings, cairn)
    backup = str(uuid.uuid4())
    handle = source.snapshot(backup, ["data"]).volumes["data"]
    tags = [f"execution={backup}"]
    upload = source.upload_volume(
        backup,
        "data",
        handle,
        app.repo,
        [*tags, "part=volume:data"],
        parent=None,
        force=False,
        progress=lambda _p: None,
    )
    config = source.export_config(backup, app.repo, [*tags, "part=config"])
    assert config is not None
    source.release(backup)
    original = {c: folder_hashes(kube.pvc_path(app.namespace, c)) for c in CLAIMS.values()}

    clone = f"t-{uuid.uuid4().hex[:8]}"
    core(kube_api).create_namespace({"metadata": {"name": clone}})
    try:
        for claim in CLAIMS.values():
            core(kube_api).create_namespaced_persistent_volume_claim(
                clone,
                {
                    "metadata": {"name": claim},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                },
            )
        (_bound(kube, clone, "uploads-pvc") / "own.txt").write_text("the clone's own file")
        _bound(kube, clone, "data-pvc")
        core(kube_api).create_namespaced_secret(  # immutable: deleted and created again
            clone,
            {"metadata": {"name": "api-keys"}, "stringData": {"stripe": "old"}, "immutable": True},
        )
        target = platform_of(
            app, cairn_settings, cairn, namespace=clone, workloads={"names": []}, database=None
        )
        restore = str(uuid.uuid4())
        try:
            target.restore_volume(restore, "data", app.repo, upload.snapshot_id, lambda _p: None)
            note = target.restore_config(restore, app.repo, config.snapshot_id)
        finally:
            target.release(restore)
        assert clone in note
        assert folder_hashes(kube.pvc_path(clone, "data-pvc")) == original["data-pvc"]
        assert folder_hashes(kube.pvc_path(clone, "uploads-pvc")) == {
            "own.txt": hashlib.sha256(b"the clone's own file").hexdigest()
        }
        assert config_state(kube_api, clone) == config_state(kube_api, app.namespace)
        assert leftovers(kube, clone) == []
    finally:
        core(kube_api).delete_namespace(clone)
    assert {c: folder_hashes(kube.pvc_path(app.namespace, c)) for c in CLAIMS.values()} == original
    assert leftovers(kube, app.namespace) == []


WORKER_EXPORT = "/export/worker-storages"


def repository_password(settings: Settings, application_id: str) -> str:
    """The application's repository password, opened as the worker opens it."""
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT storage_id, password_sealed FROM backup_repositories WHERE application_id = %s",
            (application_id,),
        ).fetchone()
    assert row is not None
    return crypto.open_sealed(
        str(row[1]),
        master_key=settings.master_key_text,
        context=secret_contexts.repository_password(application_id, row[0]),
    ).decode()


@pytest.fixture
def kube_worker(
    settings: Settings, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The session's worker and API, pointed at the fake for one test (they share ``settings``).

    The worker's storages are the NFS export the mover pods mount.
    """
    kube.map_nfs(NFS_SERVER, WORKER_EXPORT, settings.storage_mount_root)
    settings.storage_mount_root.chmod(0o711)  # movers of any user reach their repositories
    monkeypatch.setattr(settings, "kubeconfig", kube.kubeconfig)
    monkeypatch.setattr(
        settings, "kube_storage_volume", {"nfs": {"server": NFS_SERVER, "path": WORKER_EXPORT}}
    )
    monkeypatch.setattr(settings, "kube_snapshot_class", GOOD_CLASS)
    # The worker (this test's process, root) makes the repositories; movers run as the
    # image's user (10001): the repositories are shared by the movers' group.
    monkeypatch.setattr(settings, "mover_fs_group", STORAGE_GROUP)
    yield settings


def start_restore(
    settings: Settings, backup: dict[str, Any], application_id: str, details: dict[str, Any]
) -> str:
    """A selective restore's row as services/restores.py writes it, with ``details`` as given.

    For a run whose id the test must know before the workflow starts (run_restore starts
    it as the service does).
    """
    restore_id = str(uuid.uuid4())
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO backup_restores (id, backup_execution_id, application_id, workflow_id,"
            " status, restore_type, details) VALUES (%s, %s, %s, %s, 'pending', 'selective', %s)",
            (
                restore_id,
                backup["id"],
                application_id,
                f"restore-{restore_id}",
                json.dumps({"target": None, **details}),
            ),
        )
    return restore_id


async def run_restore(
    temporal: TemporalClient,
    api: ApiClient,
    headers: dict[str, str],
    app_path: str,
    restore_id: str,
    workspace_id: str,
) -> dict[str, Any]:
    """Starts RestoreWorkflow for the row and waits until the run and its row have ended."""
    application_id = app_path.rsplit("/", 1)[1]
    await temporal.start_workflow(
        RestoreWorkflow.run,
        args=[restore_id, application_id, workspace_id],
        id=f"restore-{restore_id}",
        task_queue=CONTROL_TASK_QUEUE,
    )
    restore: dict[str, Any] = await wait_for(
        api, f"{app_path}/restores/{restore_id}", headers, ended, seconds=240
    )
    return restore


def ended(restore: dict[str, Any]) -> bool:
    """The restore's row and its workflow have both ended."""
    return restore["status"] in ("succeeded", "failed", "cancelled") and (
        restore.get("timeline") or {}
    ).get("workflow_status") not in (None, "running")


def metadata_rows_text(settings: Settings) -> str:
    """Every row of every table of cairn's metadata database, as text."""
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return "\n".join(
            str(row[0])
            for table in tables
            for row in conn.execute(
                sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))
            )
        )


async def register(api: ApiClient, world: World, app: App) -> tuple[str, str]:
    """A workspace with an active local storage, the application registered in it through
    the API with a daily policy; the workspace id and the application's path."""
    workspace = await new_workspace(api, world, members=("member", "owner"))
    admin, owner = world.auth("ws_admin"), world.auth("owner")
    accepted = await expect(
        await api.post(
            f"/api/v1/workspaces/{workspace}/backup-storages",
            json={"name": "main", "type": "local", "capacity_gb": 10},
            headers=admin,
        ),
        202,
    )
    storage = await wait_for(
        api,
        f"/api/v1/workspaces/{workspace}/backup-storages/{accepted['id']}",
        admin,
        lambda s: s["status"] == "active",
    )
    platform = {key: value for key, value in app.settings.items() if value is not None}
    registered = await expect(
        await api.post(
            f"/api/v1/workspaces/{workspace}/applications",
            json={
                "name": f"shop-{uuid.uuid4().hex[:6]}",
                "owner_id": world.users["owner"],
                "platform": {"kind": "kubernetes", **platform},
            },
            headers=world.auth("platform_admin"),
        ),
        201,
    )
    app_path = f"/api/v1/applications/{registered['id']}"
    await expect(
        await api.post(
            f"{app_path}/backup-policy",
            json={"storage_id": storage["id"], "schedule": "0 3 * * *"},
            headers=owner,
        ),
        201,
    )
    return workspace, app_path


GET_RUN_OBJECTS = ("get", "jobs,pvc,volumesnapshots", "-o", "json")


def kubectl_get(kube: FakeKube, namespace: str, home: Path) -> list[tuple[str, str]]:
    """``kubectl get jobs,pvc,volumesnapshots -o json`` (Debian's kubectl, a second client)."""
    kubectl = os.environ.get("CAIRN_TEST_KUBECTL") or shutil.which("kubectl")
    assert kubectl, "kubectl is missing: scripts/system-deps.sh installs Debian's kubernetes-client"
    result = subprocess.run(
        [*(kubectl, "--kubeconfig", str(kube.kubeconfig), "-n", namespace), *GET_RUN_OBJECTS],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "HOME": str(home)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return sorted((i["kind"], i["metadata"]["name"]) for i in json.loads(result.stdout)["items"])


@pytest.mark.usefixtures("worker")
async def test_backup_and_restore_through_the_workflows(
    app: App,
    temporal_client: TemporalClient,
    caplog: pytest.LogCaptureFixture,
    kube: FakeKube,
    kube_api: client.ApiClient,
    api: ApiClient,
    world: World,
    kube_worker: Settings,
    tmp_path: Path,
    cairn: CairnCalls,
) -> None:
    """The API registers the application; BackupWorkflow backs it up; a RestoreWorkflow whose
    mover fails ends failed with the pod's log, cleaned up and scaled back; a full restore
    with the configuration part gives back every byte, row, ConfigMap and Secret. Neither
    password is in any metadata row, API answer, workflow history or log; every request the
    worker made is allowed by deploy/kubernetes/ RBAC."""
    ns = app.namespace
    workspace, app_path = await register(api, world, app)
    owner = world.auth("owner")
    application_id = app_path.rsplit("/", 1)[1]
    files_before = {c: folder_hashes(kube.pvc_path(ns, c)) for c in CLAIMS.values()}
    rows_before = table_hash(app.server, app.dbname)
    config_before = config_state(kube_api, ns)
    database_password = base64.b64decode(config_before["db-credentials"]["password"]).decode()
    used: set[Permission] = set()

    kube.reset_requests()
    started = await expect(await api.post(f"{app_path}/backups", headers=owner), 202)
    backup = await wait_for(
        api, f"{app_path}/backups/{started['id']}", owner, finished, seconds=240
    )
    used |= kube.used_in()
    assert backup["status"] == "succeeded", backup["error_message"]
    assert "cleanup" not in backup["metadata"]  # released after success, without a problem
    assert leftovers(kube, ns) == []
    assert kubectl_get(kube, ns, tmp_path) == sorted(
        ("PersistentVolumeClaim", claim) for claim in CLAIMS.values()
    )
    assert "config" in {p["part"] for p in backup["metadata"]["parts"]}

    # a mover that fails (a file where its staging folder goes, in the new volume it fills):
    # the run says why, the application's claim untouched, scaled back
    blocked = start_restore(
        kube_worker, backup, application_id, {"database": False, "volumes": ["data"]}
    )
    staging = run_name("rvol", blocked, "data")
    core(kube_api).create_namespaced_persistent_volume_claim(
        HOME,
        {
            "metadata": {"name": staging, "labels": {**run_labels(blocked), RESTORE_OF: ns}},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    obstacle = _bound(kube, HOME, staging) / f".cairn-restore-{blocked.replace('-', '')[:12]}"
    obstacle.write_text("in the way")
    kube.reset_requests()
    failed = await run_restore(temporal_client, api, owner, app_path, blocked, workspace)
    used |= kube.used_in()
    assert failed["status"] == "failed"
    assert "exited with 1; its last log lines" in failed["error_message"]
    assert "File exists" in failed["error_message"]
    assert replicas(kube_api, ns) == (2, 1)
    assert leftovers(kube, ns) == []
    assert {c: folder_hashes(kube.pvc_path(ns, c)) for c in CLAIMS.values()} == files_before

    # damage everything, then a full restore with the configuration part
    for folder in (kube.pvc_path(ns, c) for c in CLAIMS.values()):
        for path in sorted(folder.rglob("*"), reverse=True):
            if path.is_file():
                path.unlink()
    with _connect(app.server, app.dbname) as conn:
        conn.execute("DELETE FROM orders WHERE id > 100")
    core(kube_api).delete_namespaced_config_map("settings", ns)
    core(kube_api).patch_namespaced_secret(
        "api-keys", ns, {"data": {"stripe": base64.b64encode(b"changed").decode()}}
    )
    kube.reset_requests()
    accepted = await expect(
        await api.post(
            f"{app_path}/backups/{backup['id']}/restore",
            json={"restore_type": "full"},
            headers=owner,
        ),
        202,
    )
    assert accepted["config"] and accepted["database"]
    full = accepted["id"]
    restore = await wait_for(api, f"{app_path}/restores/{full}", owner, ended, seconds=240)
    used |= kube.used_in()
    assert restore["status"] == "succeeded", restore["error_message"]
    assert "config" in (restore["notes"] or {})
    assert table_hash(app.server, app.dbname) == rows_before
    assert {c: folder_hashes(kube.pvc_path(ns, c)) for c in CLAIMS.values()} == files_before
    assert config_state(kube_api, ns) == config_before
    assert replicas(kube_api, ns) == (2, 1)
    assert leftovers(kube, ns) == []

    answers = json.dumps([backup, failed, restore, (await api.get(app_path, headers=owner)).json()])
    rows = metadata_rows_text(kube_worker)
    assert kube.kubelet is not None
    pod_logs = b"\n".join(kube.kubelet.every_log_line()).decode(errors="replace")
    assert pod_logs.strip(), "the movers printed nothing to search"
    for password in (repository_password(kube_worker, application_id), database_password):
        for workflow_id in (backup["workflow_id"], f"restore-{blocked}", f"restore-{full}"):
            history = await temporal_client.get_workflow_handle(workflow_id).fetch_history()
            assert password not in history.to_json()
        assert password not in answers
        assert password not in caplog.text
        assert password not in rows
        assert password not in pod_logs
    cairn.add(used)
    assert uncovered(used) == set()
    for workflow_id, name in (
        (backup["workflow_id"], "backup-kube-released"),
        (f"restore-{blocked}", "restore-kube-mover-failed"),
        (f"restore-{full}", "restore-kube-config"),
    ):
        await histories.record(temporal_client, workflow_id, name)


class Cut(BaseException):
    """A mover killed at this point."""


def test_an_in_place_volume_swap_finishes_from_wherever_it_was_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after any number of renames, the next mover run ends with exactly the backup."""

    def fill(staging: Path) -> None:
        (staging / "sub").mkdir()
        (staging / "sub" / "kept.txt").write_text("from the backup")
        (staging / "top.txt").write_text("also from the backup")

    backup = {"sub/kept.txt": "from the backup", "top.txt": "also from the backup"}
    rename = Path.rename
    for cut_after in range(6):  # a whole run makes 5 renames here
        volume = tmp_path / f"volume-{cut_after}"
        (volume / "old-dir").mkdir(parents=True)
        (volume / "old-dir" / "x.txt").write_text("live")
        (volume / "live.txt").write_text("live")
        done = [0]

        def cutting(
            self: Path, target: Any, limit: int = cut_after, done: list[int] = done
        ) -> Path:
            if done[0] >= limit:
                raise Cut
            done[0] += 1
            return rename(self, target)

        monkeypatch.setattr(Path, "rename", cutting)
        with contextlib.suppress(Cut):
            swap_in_place(volume, "abc", fill)
        monkeypatch.setattr(Path, "rename", rename)
        swap_in_place(volume, "abc", fill)
        assert content(volume) == backup, cut_after


def content(volume: Path) -> dict[str, str]:
    return {str(p.relative_to(volume)): p.read_text() for p in volume.rglob("*") if p.is_file()}


def test_a_drill_restores_scratch_copies_in_cairn_s_namespace_and_removes_them(
    app: App, kube: FakeKube, cairn_settings: Settings, cairn: CairnCalls
) -> None:
    """Every mover of a drill (scratch database, scratch claim, counts, checks, drop) runs in
    cairn's namespace as its account; the scratch claim is there too; nothing of it stays."""
    platform = platform_of(app, cairn_settings, cairn)
    ns = app.namespace
    backup = str(uuid.uuid4())
    tags = [f"execution={backup}"]
    handle = platform.snapshot(backup, ["data"]).volumes["data"]
    dump = platform.dump_database(backup, app.repo, [*tags, "part=database"], lambda _p: None)
    upload = platform.upload_volume(
        backup,
        "data",
        handle,
        app.repo,
        [*tags, "part=volume:data"],
        parent=None,
        force=False,
        progress=lambda _p: None,
    )
    platform.release(backup)
    own = {c: folder_hashes(kube.pvc_path(ns, c)) for c in CLAIMS.values()}
    rows = table_hash(app.server, app.dbname)

    drill = str(uuid.uuid4())
    scratch = scratch_database(drill)
    since = kube.store.revision
    assert platform.describe_scratch(drill)["scratch_database"] == scratch
    try:
        into = Scratch(drill)
        platform.restore_database(drill, app.repo, dump.snapshot_id, lambda _p: None, into=into)
        note = platform.restore_volume(
            drill, "data", app.repo, upload.snapshot_id, lambda _p: None, into=into
        )
        assert note.endswith(f"in {HOME}")
        claim = run_name("drill", drill, "data")
        assert folder_hashes(kube.pvc_path(HOME, claim)) == own["data-pvc"]
        measured = platform.measure(True, ["data"], into=into)
        assert measured.row_counts == dump.row_counts
        assert measured.volumes["data"] == VolumeFigures(upload.files, upload.bytes_processed)
        results = platform.run_checks(
            drill,
            [
                SqlCheck("all orders", "SELECT count(*) = 300 FROM orders"),
                SqlCheck("broken", "SELECT 1 / 0 > 0"),
            ],
            5,
        )
        assert [(r.name, r.outcome) for r in results] == [
            ("all orders", "passed"),
            ("broken", "error"),
        ]
        platform.remove_scratch(drill)
        platform.remove_scratch(drill)  # repeated: nothing left to remove is fine
        assert not app.server.database_exists(scratch)
    finally:
        app.server.drop_database(scratch)
    assert leftovers(kube, ns) == []
    assert {c: folder_hashes(kube.pvc_path(ns, c)) for c in CLAIMS.values()} == own
    assert table_hash(app.server, app.dbname) == rows
    ran = where_movers_ran(mover_pods(kube, since))
    assert len(ran) == 6  # database, volume, two counts, checks, drop
    assert set(ran.values()) == {(HOME, MOVER_SERVICE_ACCOUNT)}
