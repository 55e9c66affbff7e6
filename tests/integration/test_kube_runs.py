"""A real ``cairn worker`` process killed (SIGKILL) while a Kubernetes mover Job uploads: after
a restart the same Job is awaited (no second Job, no second snapshot) and the backup completes.

The worker is a process of its own on its own Temporal and metadata database (the
``isolated`` fixture of ``test_worker_crash.py``), so nothing else serves the task queues;
the mover pods are processes of the API fake, in this test's process, so they outlive it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.restic import Repository, Restic
from core.settings import Settings
from tests.fakes.kube import FakeKube
from tests.integration.test_kube_platform import (
    GOOD_CLASS,
    NFS_SERVER,
    SNAPSHOT_GROUP,
    App,
    app,
    cairn_on_path,
    cairn_settings,
    leftovers,
    register,
    repository_password,
    snapshot_classes,
    storage_root,
)
from tests.integration.test_worker_crash import isolated, start_worker
from tests.support.api import build_world, expect, running_app, wait_for
from tests.support.backups import finished
from tests.support.kube import cairn, kube, kube_api, namespace, rbac_equals_what_cairn_used

pytestmark = pytest.mark.integration
__all__ = [  # fixtures used by name
    "app",
    "cairn",
    "cairn_on_path",
    "cairn_settings",
    "isolated",
    "kube",
    "kube_api",
    "namespace",
    "rbac_equals_what_cairn_used",
    "snapshot_classes",
    "storage_root",
]

EXPORT = "/export/crash-storages"
VOLUME_MB = 100


class Seen:
    """Every (kind, name, uid) of the run's Jobs and VolumeSnapshots, watched in the fake."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.objects: set[tuple[str, str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            for group, plural in (("batch", "jobs"), (SNAPSHOT_GROUP, "volumesnapshots")):
                for item in self.kube.list(group, plural, None):  # uploads run in cairn's
                    meta = item["metadata"]
                    self.objects.add((plural, meta["name"], meta["uid"]))

    def __enter__(self) -> Seen:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def uploading(self) -> bool:
        return any(p == "jobs" and n.startswith("cairn-up-") for p, n, _ in self.objects)

    def twice(self) -> list[str]:
        """Names that stood for more than one object (made a second time)."""
        names = [(plural, name) for plural, name, _ in self.objects]
        return sorted(f"{p} {n}" for p, n in set(names) if names.count((p, n)) > 1)


@pytest.fixture
def kube_isolated(
    isolated: Settings, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The isolated worker's settings pointed at the fake; its storages an NFS export."""
    kube.map_nfs(NFS_SERVER, EXPORT, isolated.storage_mount_root)
    storage = {"nfs": {"server": NFS_SERVER, "path": EXPORT}}
    changes: dict[str, Any] = {
        "kubeconfig": kube.kubeconfig,
        "kube_storage_volume": storage,
        "kube_snapshot_class": GOOD_CLASS,
        "mover_run_as_user": os.geteuid(),
    }
    for key, value in changes.items():  # the worker process reads them from its environment
        monkeypatch.setenv(
            f"CAIRN_{key.upper()}",
            json.dumps(value) if key == "kube_storage_volume" else str(value),
        )
    yield isolated.model_copy(update=changes)


async def test_worker_killed_while_a_mover_uploads_then_the_same_job_completes(
    app: App, kube: FakeKube, kube_isolated: Settings, tmp_path: Path
) -> None:
    ns = app.namespace
    with (kube.pvc_path(ns, "data-pvc") / "bulk.bin").open("wb") as handle:
        for _ in range(VOLUME_MB):
            handle.write(os.urandom(1024 * 1024))
    log = tmp_path / "worker.log"
    worker = start_worker(kube_isolated, log)
    try:
        async with running_app(kube_isolated) as client:
            world = await build_world(client)
            _, app_path = await register(client, world, app)
            owner = world.auth("owner")
            with Seen(kube) as seen:
                accepted = await expect(
                    await client.post(f"{app_path}/backups", headers=owner), 202
                )
                await wait_for(
                    client,
                    f"{app_path}/backups/{accepted['id']}",
                    owner,
                    lambda _b: seen.uploading(),
                    seconds=120,
                )
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
                worker = start_worker(kube_isolated, log)
                done = await wait_for(
                    client, f"{app_path}/backups/{accepted['id']}", owner, finished, seconds=240
                )
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
    assert done["status"] == "succeeded", (done["error_message"], log.read_text()[-3000:])
    assert seen.twice() == []
    assert {p for p, _, _ in seen.objects} == {"jobs", "volumesnapshots"}
    upload = [s for s in done["timeline"]["steps"] if s["step"] == "upload_volume"]
    assert max(s["attempts"] for s in upload) >= 2
    repo = Repository(
        Path(done["metadata"]["repository"]),
        repository_password(kube_isolated, app_path.rsplit("/", 1)[1]),
    )
    parts = sorted(
        t
        for s in Restic().snapshots(repo, [f"execution={done['id']}"])
        for t in s.tags
        if t.startswith("part=")
    )
    assert parts == [
        "part=config",
        "part=database",
        "part=manifest",
        "part=volume:data",
        "part=volume:uploads",
    ]
    assert leftovers(kube, ns) == []
