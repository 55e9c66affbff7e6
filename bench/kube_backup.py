"""A backup through the Kubernetes platform beside the same backup through the local platform.

    .venv/bin/python -m bench.kube_backup            # the throughput bench's size (make bench-kube)
    .venv/bin/python -m bench.kube_backup --quick    # small sizes, a minute or two

The data is the throughput bench's: a pgbench database of the same size, plus one volume of
random files (half the database's size). Each run backs it up into a fresh repository twice,
one platform after the other, through the platform contract as the backup's activities call
it: the local platform dumps and uploads in this process; the Kubernetes platform, against
the API fake of the tests (``tests/fakes/kube``: its mover Jobs are local processes running
``cairn mover``, its snapshots copies of folders), snapshots the claim, dumps and uploads
through mover Jobs, exports the ConfigMaps/Secrets and releases the run. Database and
volume go at once on both, as the workflow runs them. The ratio says what the Kubernetes
machinery (Jobs, pods, snapshot copies, temporary claims) costs on top of moving the same
bytes; the Temporal and API overhead, the same for both kinds, is the throughput bench's.
Ends with ``RESULT kube_backup_vs_local=<ratio>``; not part of the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config

from adapters.kubernetes.platform import KubernetesPlatform
from adapters.local_platform import LocalPlatform
from adapters.platform import Platform
from adapters.restic import Repository, Restic
from bench.database import MB, Databases
from bench.figures import Figure, Report
from bench.run import FULL, QUICK
from core.settings import Settings
from devstack.postgres import running_server
from tests.fakes.kube import CSI_DRIVER, FakeKube

NAMESPACE, CLAIM, SNAPSHOT_CLASS = "bench", "data-pvc", "bench-snapclass"
NFS_SERVER, NFS_EXPORT = "10.0.0.5", "/export/cairn"
FILE_MB = 4


def fill_volume(folder: Path, size_mb: int) -> None:
    """Random (incompressible) files, so both platforms move the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(max(1, size_mb // FILE_MB)):
        (folder / f"file-{index:03}.bin").write_bytes(os.urandom(FILE_MB * MB))


def backup(platform: Platform, repo: Repository, database: bool) -> None:
    """One backup's data steps, in the order the workflow runs them."""
    run = str(uuid.uuid4())
    tags = [f"execution={run}"]
    point = platform.snapshot(run, platform.volume_names())
    try:
        with ThreadPoolExecutor() as pool:
            parts: list[Future[Any]] = [
                pool.submit(
                    platform.upload_volume,
                    run,
                    volume,
                    handle,
                    repo,
                    [*tags, f"part=volume:{volume}"],
                    parent=None,
                    force=False,
                    progress=lambda _p: None,
                )
                for volume, handle in point.volumes.items()
            ]
            if database:
                parts.append(
                    pool.submit(
                        platform.dump_database,
                        run,
                        repo,
                        [*tags, "part=database"],
                        lambda _p: None,
                    )
                )
            for part in parts:
                part.result()
        platform.export_config(run, repo, [*tags, "part=config"])
    finally:
        platform.release(run)


def timed_backup(platform: Platform, work: Path, label: str) -> float:
    """Seconds of one backup into a repository of its own (a first, full backup)."""
    repo = Repository(work / "storages" / f"{label}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    restic = Restic()
    restic.init(repo)
    start = time.perf_counter()
    backup(platform, repo, database=True)
    seconds = time.perf_counter() - start
    shutil.rmtree(repo.path, ignore_errors=True)
    return seconds


@contextlib.contextmanager
def cluster(work: Path) -> Iterator[tuple[FakeKube, client.ApiClient]]:
    """The API fake with the storage export, a snapshot class and the namespace."""
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # cairn mover
    with FakeKube() as fake:
        fake.map_nfs(NFS_SERVER, NFS_EXPORT, work / "storages")
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(fake.kubeconfig)
        )
        custom: Any = client.CustomObjectsApi(api)
        custom.create_cluster_custom_object(
            "snapshot.storage.k8s.io",
            "v1",
            "volumesnapshotclasses",
            {
                "metadata": {"name": SNAPSHOT_CLASS},
                "driver": CSI_DRIVER,
                "deletionPolicy": "Delete",
            },
        )
        core: Any = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        core.create_namespace({"metadata": {"name": "cairn"}})  # where uploads run
        yield fake, api


def claim_folder(fake: FakeKube, api: client.ApiClient) -> Path:
    """The folder behind a new, bound claim."""
    core: Any = client.CoreV1Api(api)
    core.create_namespaced_persistent_volume_claim(
        NAMESPACE,
        {
            "metadata": {"name": CLAIM},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    )
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(LookupError):
            return fake.pvc_path(NAMESPACE, CLAIM)
        if time.monotonic() > deadline:
            raise SystemExit("the bench's claim was never bound")
        time.sleep(0.05)


def platforms(
    dbs: Databases, name: str, work: Path, fake: FakeKube, api: client.ApiClient
) -> dict[str, Platform]:
    """Both platforms over the same database and the same files."""
    server = dbs.pg
    database = {"host": server.socket_dir or server.host, "port": server.port, "dbname": name}
    database["user"] = server.user
    volume_mb = dbs.size(name) // MB // 2
    local_volume = work / "apps" / "data"
    fill_volume(local_volume, volume_mb)
    shutil.copytree(local_volume, claim_folder(fake, api), dirs_exist_ok=True)
    core: Any = client.CoreV1Api(api)
    core.create_namespaced_secret(
        NAMESPACE, {"metadata": {"name": "db-credentials"}, "stringData": {"password": "-"}}
    )
    core.create_namespaced_config_map(
        NAMESPACE, {"metadata": {"name": "settings"}, "data": {"mode": "bench"}}
    )
    restic = Restic()
    local = LocalPlatform(
        {"database": database, "volumes": {"data": str(local_volume)}},
        {},
        cairn=Settings(volume_roots=[work / "apps"], storage_mount_root=work / "storages"),
        restic=restic,
    )
    kube = KubernetesPlatform(
        {
            "namespace": NAMESPACE,
            "workloads": {"names": []},
            "volumes": {"data": CLAIM},
            "database": {
                **database,
                "password_secret": {"name": "db-credentials", "key": "password"},
            },
            "config": {"include": "all"},
        },
        {},
        cairn=Settings(
            kubeconfig=fake.kubeconfig,
            storage_mount_root=work / "storages",
            kube_storage_volume={"nfs": {"server": NFS_SERVER, "path": NFS_EXPORT}},
            kube_snapshot_class=SNAPSHOT_CLASS,
            kube_snapshot_timeout_seconds=120,
            kube_mover_timeout_seconds=120,
            mover_run_as_user=os.geteuid(),
        ),
        restic=restic,
    )
    return {"local": local, "kube": kube}


def measure(dbs: Databases, work: Path, size_mb: int, runs: int, report: Report) -> None:
    """Times both platforms ``runs`` times, alternating, and adds the figures to ``report``."""
    name = dbs.pgbench("kube", size_mb)
    print(f"database {name}: {dbs.size(name) / MB:.0f} MiB", flush=True)
    (work / "storages").mkdir(parents=True, exist_ok=True)
    seconds: dict[str, list[float]] = {"local": [], "kube": []}
    with cluster(work) as (fake, api):
        both = platforms(dbs, name, work, fake, api)
        for run in range(runs):
            for label, platform in both.items():
                seconds[label].append(timed_backup(platform, work, label))
                print(f"  run {run + 1} {label}: {seconds[label][-1]:.2f} s", flush=True)
    ratios = [k / loc for k, loc in zip(seconds["kube"], seconds["local"], strict=True)]
    report.add(Figure("local_backup_seconds", "backup, local platform", seconds["local"], " s"))
    report.add(Figure("kube_backup_seconds", "backup, Kubernetes platform", seconds["kube"], " s"))
    report.add(Figure("kube_backup_vs_local", "Kubernetes / local backup time", ratios, "x"))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a minute or two")
    parser.add_argument("--database-mb", type=int, help="size of the database")
    parser.add_argument("--runs", type=int, help="backups of each platform")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    report = Report()
    work = Path(tempfile.mkdtemp(prefix="cairn-bench-kube-"))
    try:
        with running_server(work) as pg:
            dbs = Databases(pg)
            try:
                measure(
                    dbs,
                    work,
                    args.database_mb or sizes.database_mb,
                    args.runs or sizes.runs,
                    report,
                )
            finally:
                dbs.drop_all()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.print()


if __name__ == "__main__":
    main()
