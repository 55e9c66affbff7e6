"""One small application per platform, for the conformance suite.

Each platform is one fixture (``<kind>_application``) that yields an ``Application``: the
platform opened by kind through ``adapters/platform.py::open_platform``, a fresh repository,
and the few things a test must see from outside the contract (the live files and rows, whether
the application runs, what cairn left behind). The tests use nothing else, so a new platform
joins the suite by writing one such fixture and naming it in ``conftest.PLATFORMS``; a new
database engine, by an ``Application`` whose ``rows``/``damage_rows`` speak that engine.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client

from adapters.kubernetes.names import MANAGED_BY
from adapters.local_platform import drills_folder
from adapters.platform import Platform, open_platform
from adapters.restic import Repository, Restic
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.fakes.kube import CSI_DRIVER, FakeKube
from tests.support.kube import HOME, apps, core

TABLE_ROWS = 50
VOLUME = "data"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
NFS_SERVER, NFS_EXPORT = "10.0.0.5", "/export/cairn"
SNAPSHOT_CLASS = "conformance-snapclass"


def short(run_id: str) -> str:
    """The part of a run id cairn's staging and scratch names carry."""
    return uuid.UUID(run_id).hex[:12]


@dataclass
class Application:
    """An application on one platform, as a conformance test sees it."""

    kind: str
    platform: Platform
    repo: Repository
    server: PostgresServer
    dbname: str
    volumes: list[str]
    folder: Callable[[str], Path]
    """Where the test reads and writes a volume's live files."""
    running: Callable[[], bool]
    """Whether the application runs (``quiesce`` stops it, ``resume`` starts it)."""
    left_by_platform: Callable[[list[str]], list[str]]
    """What the platform's own objects or folders of these runs are still there."""

    def connect(self, dbname: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(
            host=self.server.socket_dir or self.server.host,
            port=self.server.port,
            user=self.server.user,
            dbname=dbname or self.dbname,
            autocommit=True,
        )

    def rows(self, dbname: str | None = None) -> str:
        """A hash of every row of the application's table (or of its copy in ``dbname``)."""
        with self.connect(dbname) as conn:
            found = conn.execute(
                "SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY id)) FROM items t"
            ).fetchone()
        return str(found[0]) if found else ""

    def damage_rows(self) -> None:
        with self.connect() as conn:
            conn.execute("DELETE FROM items WHERE id > 10")
            conn.execute("UPDATE items SET name = 'changed' WHERE id = 1")

    def files(self, volume: str) -> dict[str, str]:
        root = self.folder(volume)
        return {
            str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }

    def damage_files(self, volume: str) -> None:
        root = self.folder(volume)
        (root / "notes.txt").write_text("changed after the backup\n")
        (root / "nested" / "blob.bin").unlink()
        (root / "stray.txt").write_text("written after the backup\n")

    def leftovers(self, runs: list[str]) -> list[str]:
        """Everything cairn made for ``runs`` that is still there: databases named after them
        on the server, and the platform's own objects and folders. Polled for half a minute
        (a platform may delete asynchronously)."""
        deadline = time.monotonic() + 30
        while (left := self._left(runs)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left

    def _left(self, runs: list[str]) -> list[str]:
        with self.connect("postgres") as conn:
            databases = [
                str(name)
                for (name,) in conn.execute("SELECT datname FROM pg_database").fetchall()
                if any(short(run) in str(name) for run in runs)
            ]
        return [f"database {name}" for name in databases] + self.left_by_platform(runs)


def fill(app_database: Callable[[], psycopg.Connection[tuple[Any, ...]]], folder: Path) -> None:
    """The data every platform's application starts with: one table, a few small files."""
    with app_database() as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text, payload bytea)")
        conn.execute(
            "INSERT INTO items SELECT g, 'item ' || g, decode(md5(g::text), 'hex')"
            " FROM generate_series(1, %s) g",
            (TABLE_ROWS,),
        )
    (folder / "nested").mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("hello from the volume\n")
    (folder / "nested" / "blob.bin").write_bytes(os.urandom(20_000))


def new_repository(root: Path) -> Repository:
    repo = Repository(root, secrets.token_urlsafe(24))
    repo.path.parent.mkdir(parents=True, exist_ok=True)
    Restic().init(repo)
    return repo


def _database(server: PostgresServer, dbname: str) -> dict[str, Any]:
    return {
        "host": server.socket_dir or server.host,
        "port": server.port,
        "dbname": dbname,
        "user": server.user,
    }


@pytest.fixture(scope="module")
def local_application(
    database_server: PostgresServer, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Application]:
    """Kind ``local``: a database on the session's server, a folder, stop/start hooks."""
    root = tmp_path_factory.mktemp("conformance-local")
    folder, state = root / "apps" / "shop" / "data", root / "state"
    folder.mkdir(parents=True)
    state.write_text("running")
    cairn = Settings(
        database_url=database_url,  # cairn's own database, which no restore may write
        volume_roots=[root / "apps"],
        storage_mount_root=root / "storages",
        data_dir=root / "cairn-data",
    )
    dbname = f"cairn_conf_{uuid.uuid4().hex[:10]}"
    database_server.create_database(dbname)
    settings = {
        "database": _database(database_server, dbname),
        "volumes": {VOLUME: str(folder)},
        "hooks": {
            "stop": ["sh", "-c", f"echo stopped > {state}"],
            "start": ["sh", "-c", f"echo running > {state}"],
        },
    }

    def left(runs: list[str]) -> list[str]:
        beside = [p.name for p in folder.parent.iterdir() if p.name != folder.name]
        drills = [str(drills_folder(cairn) / run) for run in runs]
        return [f"folder {name}" for name in beside] + [
            f"scratch folder {path}" for path in drills if Path(path).exists()
        ]

    try:
        application = Application(
            "local",
            open_platform("local", settings, {}, cairn=cairn, restic=Restic()),
            new_repository(root / "storages" / "repo"),
            database_server,
            dbname,
            [VOLUME],
            folder=lambda _volume: folder,
            running=lambda: state.read_text().strip() == "running",
            left_by_platform=left,
        )
        fill(application.connect, folder)
        yield application
    finally:
        database_server.drop_database(dbname)


@pytest.fixture(scope="module")
def cairn_on_path() -> Iterator[None]:
    """Mover pods run ``cairn mover`` from PATH, which the fake's kubelet takes at its start."""
    before = os.environ["PATH"]
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{before}"
    yield
    os.environ["PATH"] = before


@pytest.fixture(scope="module")
def kubernetes_application(
    request: pytest.FixtureRequest,
    database_server: PostgresServer,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Application]:
    """Kind ``kubernetes`` against the API fake: a claim, a Deployment, the database on the
    session's server with its password in a Secret; movers run as local processes."""
    request.getfixturevalue("cairn_on_path")
    kube: FakeKube = request.getfixturevalue("kube")
    api: client.ApiClient = request.getfixturevalue("kube_api")
    storage_root = tmp_path_factory.mktemp("conformance-kube")
    kube.map_nfs(NFS_SERVER, NFS_EXPORT, storage_root)
    custom: Any = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(
        SNAPSHOT_GROUP,
        "v1",
        "volumesnapshotclasses",
        {"metadata": {"name": SNAPSHOT_CLASS}, "driver": CSI_DRIVER, "deletionPolicy": "Delete"},
    )
    namespace = f"conf-{uuid.uuid4().hex[:8]}"
    core(api).create_namespace({"metadata": {"name": namespace}})
    core(api).create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "data-pvc"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    labels = {"app": "shop"}
    apps(api).create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "main", "image": "shop:1"}]},
                },
            },
        },
    )
    core(api).create_namespaced_secret(
        namespace, {"metadata": {"name": "db-credentials"}, "stringData": {"password": "unused"}}
    )
    cairn = Settings(
        database_url=database_url,  # cairn's own database, which movers are told to refuse
        kubeconfig=kube.kubeconfig,
        storage_mount_root=storage_root,
        kube_storage_volume={"nfs": {"server": NFS_SERVER, "path": NFS_EXPORT}},
        kube_snapshot_class=SNAPSHOT_CLASS,
        kube_snapshot_timeout_seconds=10,
        kube_mover_timeout_seconds=60,
        mover_run_as_user=0,  # the fake runs processes as this user; the field is validated
    )
    dbname = f"cairn_conf_{uuid.uuid4().hex[:10]}"
    database_server.create_database(dbname)
    settings = {
        "namespace": namespace,
        "context": None,
        "workloads": {"names": ["deployment/web"]},
        "volumes": {VOLUME: "data-pvc"},
        "snapshot_class": None,
        "database": {
            **_database(database_server, dbname),
            "password_secret": {"name": "db-credentials", "key": "password"},
        },
        "config": {"include": "none"},
    }

    def folder(_volume: str) -> Path:
        deadline = time.monotonic() + 20
        while True:
            try:
                return kube.pvc_path(namespace, "data-pvc")
            except LookupError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def running() -> bool:
        return bool(apps(api).read_namespaced_deployment("web", namespace).spec.replicas)

    def left(runs: list[str]) -> list[str]:
        found = []
        for where in (namespace, HOME):
            found += [f"job {j['metadata']['name']}" for j in kube.list("batch", "jobs", where)]
            found += [
                f"{plural} {o['metadata']['name']}"
                for plural in ("pods", "persistentvolumeclaims", "secrets")
                for o in kube.list("", plural, where)
                if (o["metadata"].get("labels") or {}).items() >= MANAGED_BY.items()
            ]
            found += [
                f"volumesnapshot {s['metadata']['name']}"
                for s in kube.list(SNAPSHOT_GROUP, "volumesnapshots", where)
            ]
        return found

    try:
        application = Application(
            "kubernetes",
            open_platform("kubernetes", settings, {}, cairn=cairn, restic=Restic()),
            new_repository(storage_root / "repo"),
            database_server,
            dbname,
            [VOLUME],
            folder=folder,
            running=running,
            left_by_platform=left,
        )
        fill(application.connect, folder(VOLUME))
        yield application
    finally:
        database_server.drop_database(dbname)
        core(api).delete_namespace(namespace)
        custom.delete_cluster_custom_object(
            SNAPSHOT_GROUP, "v1", "volumesnapshotclasses", SNAPSHOT_CLASS
        )
