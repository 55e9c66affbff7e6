"""An application with a real database and volume folders, ready to be backed up."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from adapters.restic import Repository
from core.settings import Settings
from db.models import Application, BackupStorage
from db.session import make_engine, make_sessionmaker
from devstack.postgres import PostgresServer
from repository.store import open_repository
from tests.support.api import ApiClient, World, expect, new_workspace, wait_for

TERMINAL = ("succeeded", "failed", "cancelled")
# The steps of a full restore of a make_app application: its database and its two volumes.
FULL_RESTORE_STEPS = [
    "begin_restore",
    "verify_backup",
    "quiesce",
    "restore_database",
    "restore_volume",
    "restore_volume",
    "verify_restore",
    "resume",
    "finish_restore",
]
# Application databases made by this test run, dropped when the session ends (conftest).
CREATED_DATABASES: list[str] = []


def finished(backup: dict[str, Any]) -> bool:
    """The row is final and the workflow has ended (retention runs after the record step)."""
    timeline = backup.get("timeline") or {}
    return backup["status"] in TERMINAL and timeline.get("workflow_status") not in (None, "running")


@dataclass
class App:
    id: str
    workspace: str
    storage: str
    storage_pve_id: str
    dbname: str
    db_url: str
    volumes: dict[str, Path]
    marker: str

    @property
    def backups(self) -> str:
        return f"/api/v1/applications/{self.id}/backups"

    @property
    def policy(self) -> str:
        return f"/api/v1/applications/{self.id}/backup-policy"


def fill_database(url: str, marker: str, rows: int = 200) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE items (id serial PRIMARY KEY, name text, payload bytea);"
            ' CREATE TABLE "Odd Name" (k text PRIMARY KEY, v jsonb);'
            " CREATE TABLE empty_one (x int)"
        )
        conn.execute(
            "INSERT INTO items (name, payload) SELECT %s || g, decode(md5(g::text), 'hex')"
            " FROM generate_series(1, %s) g",
            (marker, rows),
        )
        conn.execute("""INSERT INTO "Odd Name" VALUES ('a', '{"x": 1}'), ('b', '[1, 2]')""")


def table_hashes(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        out = {}
        for (table,) in conn.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall():
            row = conn.execute(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY"
                f" t::text)), '') FROM {table} t"
            ).fetchone()
            out[table] = str(row[0]) if row else ""
        return out


def fill_volume(path: Path, marker: str, files: int = 20) -> None:
    (path / "nested" / "deeper").mkdir(parents=True)
    for i in range(files):
        (path / f"file-{i}.txt").write_text(f"{marker} file {i}\n" * (i + 1))
    (path / "nested" / "deeper" / "blob.bin").write_bytes(os.urandom(256 * 1024))
    (path / "nested" / "empty.txt").write_bytes(b"")


def random_file(path: Path, megabytes: int) -> Path:
    """An incompressible file: restic takes real time over it (a window to act mid-upload)."""
    with path.open("wb") as handle:
        for _ in range(megabytes):
            handle.write(os.urandom(1024 * 1024))
    return path


def tree_hashes(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def filled_data(pg: PostgresServer, tmp: Path, marker: str) -> tuple[str, str, dict[str, Path]]:
    """A new filled database (dropped at the end of the session) and two filled volumes.

    Returns the database's name, its libpq URL and the volumes.
    """
    dbname = f"cairn_app_{uuid.uuid4().hex[:10]}"
    pg.create_database(dbname)
    CREATED_DATABASES.append(dbname)
    libpq = pg.url(dbname, driver="postgresql")
    fill_database(libpq, marker)
    volumes = {"uploads": tmp / "uploads", "media": tmp / "media"}
    for path in volumes.values():
        path.mkdir(parents=True)
        fill_volume(path, marker)
    return dbname, libpq, volumes


async def active_storage(
    api: ApiClient, world: World, workspace: str, capacity_gb: int = 10
) -> dict[str, Any]:
    """A local storage ``main`` created in the workspace by its admin, once it is active."""
    admin = world.auth("ws_admin")
    accepted = await expect(
        await api.post(
            f"/api/v1/workspaces/{workspace}/backup-storages",
            json={"name": "main", "type": "local", "capacity_gb": capacity_gb},
            headers=admin,
        ),
        202,
    )
    storage: dict[str, Any] = await wait_for(
        api,
        f"/api/v1/workspaces/{workspace}/backup-storages/{accepted['id']}",
        admin,
        lambda s: s["status"] == "active",
    )
    return storage


async def make_app(
    api: ApiClient,
    world: World,
    pg: PostgresServer,
    tmp: Path,
    *,
    capacity_gb: int = 10,
    database_url: str | None = None,
    policy: dict[str, Any] | None = None,
    hooks: dict[str, list[str]] | None = None,
    databases: dict[str, str] | None = None,
    main_database: bool = True,
    beside: App | None = None,
    owner: str = "owner",
) -> App:
    """A new application in a new workspace with its own storage, or ``beside`` another
    one (its workspace and storage); ``owner`` names the user who owns it."""
    marker = f"CAIRN-MARKER-{uuid.uuid4().hex}"
    if beside is None:
        ws = await new_workspace(api, world, members=("member", "owner"))
        storage = await active_storage(api, world, ws, capacity_gb)
    else:
        ws = beside.workspace
        storage = {"id": beside.storage, "proxmox_storage_id": beside.storage_pve_id}
    dbname, libpq, volumes = filled_data(pg, tmp, marker)
    app_url = database_url or libpq.replace("postgres@", "postgres:app-db-secret-pw@", 1)
    app = await expect(
        await api.post(
            f"/api/v1/workspaces/{ws}/applications",
            json={
                "name": f"app-{uuid.uuid4().hex[:6]}",
                "owner_id": world.users[owner],
                "platform": {
                    "kind": "local",
                    "database_url": app_url if main_database else None,
                    "volumes": {k: str(v) for k, v in volumes.items()},
                    "hooks": hooks,
                    "databases": databases or {},
                },
            },
            headers=world.auth("platform_admin"),
        ),
        201,
    )
    result = App(
        app["id"], ws, storage["id"], storage["proxmox_storage_id"], dbname, libpq, volumes, marker
    )
    body = {"storage_id": storage["id"], "schedule": "0 3 * * *", **(policy or {})}
    await expect(await api.post(result.policy, json=body, headers=world.auth(owner)), 201)
    return result


async def run_backup(api: ApiClient, world: World, app: App, seconds: float = 90) -> Any:
    accepted = await expect(await api.post(app.backups, headers=world.auth("owner")), 202)
    return await wait_for(
        api,
        f"{app.backups}/{accepted['id']}",
        world.auth("owner"),
        finished,
        seconds=seconds,
    )


async def repository_of(settings: Settings, application_id: str, storage_id: str) -> Repository:
    """The application's repository on one storage, opened as the worker opens it (its
    password unsealed with the master key), for a test that reads or writes it directly."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            application = await session.get(Application, uuid.UUID(application_id))
            storage = await session.get(BackupStorage, uuid.UUID(storage_id))
            assert application is not None and storage is not None
            return await open_repository(session, settings, application, storage)
    finally:
        await engine.dispose()


def damage(pack: Path) -> None:
    """64 bytes in the middle of a repository file overwritten, as a failing disk would."""
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\xff" * 64
    pack.chmod(0o644)
    pack.write_bytes(bytes(raw))
