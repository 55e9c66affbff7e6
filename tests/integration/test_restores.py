"""Restores end to end: a backup brings the application back exactly, or changes nothing."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError

from adapters import pg_databases
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.support import histories
from tests.support.api import ApiClient, World, expect, wait_for
from tests.support.backups import (
    FULL_RESTORE_STEPS,
    App,
    damage,
    make_app,
    run_backup,
    table_hashes,
    tree_hashes,
)
from tests.support.database import libpq_url
from tests.support.webhook import WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def many_tables(url: str) -> None:
    with psycopg.connect(url) as conn:
        for i in range(40):
            conn.execute(f"CREATE TABLE t_{i} (id int PRIMARY KEY, v text)")
            conn.execute(f"INSERT INTO t_{i} SELECT g, md5(g::text) FROM generate_series(1, {i}) g")


def large_rows(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE blobs (id int PRIMARY KEY, data bytea)")
        for i in range(4):
            blob = bytes(range(256)) * 16384 * (i + 1)  # 4 to 16 MiB
            conn.execute("INSERT INTO blobs VALUES (%s, %s)", (i, blob))


def unusual_names(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute('CREATE SCHEMA "Weird Schema"')
        table = '"Weird Schema"."tab;le ""quoted"""'
        conn.execute(f'CREATE TABLE {table} (k text, "ünïcode" text)')
        conn.execute(f"INSERT INTO {table} VALUES ('x', 'ü')")


DATASETS: dict[str, Callable[[str], None]] = {
    "default": lambda url: None,
    "many-tables": many_tables,
    "large-rows": large_rows,
    "unusual-names": unusual_names,
}


def all_hashes(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        out = {}
        for (table,) in tables:
            row = conn.execute(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY"
                f" t::text)), '') FROM {table} t"
            ).fetchone()
            out[table] = str(row[0]) if row else ""
        return out


def mutate(app: App) -> None:
    """Drop, change and add data and files after the backup."""
    with psycopg.connect(app.db_url) as conn:
        conn.execute("DROP TABLE items")
        conn.execute("""INSERT INTO "Odd Name" VALUES ('new', '{}')""")
        conn.execute("CREATE TABLE intruder (x int)")
    uploads, media = app.volumes["uploads"], app.volumes["media"]
    (uploads / "file-3.txt").unlink()
    (uploads / "file-4.txt").write_text("changed")
    (uploads / "added.txt").write_text("new file")
    shutil.rmtree(media / "nested")


def restore_url(app: App, backup_id: str) -> str:
    return f"/api/v1/applications/{app.id}/backups/{backup_id}/restore"


async def run_restore(
    api: ApiClient,
    world: World,
    app: App,
    backup_id: str,
    body: dict[str, Any],
    who: str = "owner",
) -> Any:
    accepted = await expect(
        await api.post(restore_url(app, backup_id), json=body, headers=world.auth(who)), 202
    )
    assert accepted["workflow_id"] == f"restore-{accepted['id']}"
    return await wait_for(
        api,
        f"/api/v1/applications/{app.id}/restores/{accepted['id']}",
        world.auth("owner"),
        lambda r: (
            r["status"] in ("succeeded", "failed", "cancelled")
            and (r.get("timeline") or {}).get("workflow_status") not in (None, "running")
        ),
        seconds=120,
    )


@pytest.mark.parametrize("dataset", sorted(DATASETS))
async def test_full_restore_brings_every_table_and_file_back(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    dataset: str,
    temporal_client: Client,
) -> None:
    app = await make_app(api, world, database_server, tmp_path)
    DATASETS[dataset](app.db_url)
    tables = all_hashes(app.db_url)
    files = {name: tree_hashes(path) for name, path in app.volumes.items()}
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup["error_message"]
    mutate(app)
    assert all_hashes(app.db_url) != tables
    restore = await run_restore(api, world, app, backup["id"], {"restore_type": "full"})
    assert restore["status"] == "succeeded", restore["error_message"]
    assert all_hashes(app.db_url) == tables
    assert {name: tree_hashes(path) for name, path in app.volumes.items()} == files
    assert [s["step"] for s in restore["timeline"]["steps"]] == FULL_RESTORE_STEPS
    leftovers = [p.name for p in app.volumes["uploads"].parent.iterdir() if "cairn" in p.name]
    assert leftovers == []
    with psycopg.connect(database_server.url("postgres", driver="postgresql")) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert not set(pg_databases.staging_names(restore["id"])) & set(names)
    if dataset == "default":
        await histories.record(temporal_client, restore["workflow_id"], "restore-succeeded")


@pytest.fixture
async def backed_up(
    api: ApiClient, world: World, database_server: PostgresServer, tmp_path: Path
) -> tuple[App, dict[str, Any]]:
    app = await make_app(api, world, database_server, tmp_path)
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded"
    mutate(app)
    return app, backup


async def test_selective_restores_touch_only_what_was_named(
    api: ApiClient, world: World, backed_up: tuple[App, dict[str, Any]]
) -> None:
    app, backup = backed_up
    volumes_after_change = {n: tree_hashes(p) for n, p in app.volumes.items()}
    restore = await run_restore(
        api, world, app, backup["id"], {"restore_type": "selective", "database": True}
    )
    assert restore["status"] == "succeeded"
    assert {n: tree_hashes(p) for n, p in app.volumes.items()} == volumes_after_change
    assert restore["volumes"] == [] and restore["database"] is True
    database_now = table_hashes(app.db_url)
    media_before = tree_hashes(app.volumes["media"])
    restore = await run_restore(
        api, world, app, backup["id"], {"restore_type": "selective", "volumes": ["uploads"]}
    )
    assert restore["status"] == "succeeded"
    assert table_hashes(app.db_url) == database_now
    assert tree_hashes(app.volumes["media"]) == media_before
    assert "added.txt" not in tree_hashes(app.volumes["uploads"])


async def test_restore_into_another_database_leaves_the_original_untouched(
    api: ApiClient,
    world: World,
    backed_up: tuple[App, dict[str, Any]],
    database_server: PostgresServer,
) -> None:
    app, backup = backed_up
    original = all_hashes(app.db_url)
    copy = f"copy_{uuid.uuid4().hex[:8]}"
    try:
        restore = await run_restore(
            api,
            world,
            app,
            backup["id"],
            {"restore_type": "selective", "database": True, "target": {"database_name": copy}},
        )
        assert restore["status"] == "succeeded", restore["error_message"]
        assert restore["target"] == {"database_name": copy}
        assert all_hashes(app.db_url) == original
        restored = all_hashes(database_server.url(copy, driver="postgresql"))
        assert restored["public.items"].startswith("200:")
        assert "public.intruder" not in restored
        # another server (here: the same one, by URL, with a password that must stay sealed);
        # only a platform admin may name a server by URL
        elsewhere = database_server.url(f"{copy}_url", driver="postgresql")
        with_password = elsewhere.replace("postgres@", "postgres:target-secret-pw@", 1)
        restore = await run_restore(
            api,
            world,
            app,
            backup["id"],
            {
                "restore_type": "selective",
                "database": True,
                "target": {"database_url": with_password},
            },
            who="platform_admin",
        )
        assert restore["status"] == "succeeded", restore["error_message"]
        assert "target-secret-pw" not in str(restore)
        assert all_hashes(elsewhere) == restored
        assert all_hashes(app.db_url) == original
    finally:
        database_server.drop_database(copy)
        database_server.drop_database(f"{copy}_url")


async def test_corrupted_repository_fails_verification_before_anything_is_touched(
    api: ApiClient,
    world: World,
    backed_up: tuple[App, dict[str, Any]],
    settings: Settings,
    webhook: WebhookReceiver,
    temporal_client: Client,
) -> None:
    app, backup = backed_up
    database, files = table_hashes(app.db_url), {n: tree_hashes(p) for n, p in app.volumes.items()}
    packs = sorted(Path(backup["backup_path"], "data").rglob("*"), key=lambda p: p.stat().st_size)
    pack = [p for p in packs if p.is_file()][-1]
    damage(pack)
    restore = await run_restore(api, world, app, backup["id"], {"restore_type": "full"})
    assert restore["status"] == "failed"
    assert restore["error_message"].startswith("verify backup: the backup failed verification")
    steps = [s["step"] for s in restore["timeline"]["steps"]]
    assert "quiesce" not in steps and "restore_database" not in steps
    assert table_hashes(app.db_url) == database
    assert {n: tree_hashes(p) for n, p in app.volumes.items()} == files
    assert [e["event"] for e in webhook.for_execution(restore["id"])] == ["restore.failed"]
    await histories.record(temporal_client, restore["workflow_id"], "restore-verify-failed")


async def test_a_restore_reads_only_its_own_backup_s_data(
    api: ApiClient, world: World, database_server: PostgresServer, tmp_path: Path
) -> None:
    """Damage in data only a newer backup holds does not stop restoring an older one (the
    verification reads the parts restored, not every backup kept), and refuses the newer."""
    app = await make_app(api, world, database_server, tmp_path)
    older = await run_backup(api, world, app)
    assert older["status"] == "succeeded"
    data = Path(older["backup_path"], "data")
    before = {p for p in data.rglob("*") if p.is_file()}
    expected = all_hashes(app.db_url)
    with psycopg.connect(app.db_url) as conn:  # incompressible rows only the newer one holds
        conn.execute("CREATE TABLE newer (id int PRIMARY KEY, data bytea)")
        conn.execute(
            "INSERT INTO newer SELECT g, (SELECT decode(string_agg(md5(random()::text || g || i),"
            " ''), 'hex') FROM generate_series(1, 256) i) FROM generate_series(1, 512) g"
        )
    newer = await run_backup(api, world, app)
    assert newer["status"] == "succeeded"
    pack = max(
        (p for p in data.rglob("*") if p.is_file() and p not in before),
        key=lambda p: p.stat().st_size,
    )
    damage(pack)

    refused = await run_restore(api, world, app, newer["id"], {"restore_type": "full"})
    assert refused["status"] == "failed"
    assert refused["error_message"].startswith("verify backup: the backup failed verification")
    assert "public.newer" in all_hashes(app.db_url)  # nothing was touched

    restored = await run_restore(api, world, app, older["id"], {"restore_type": "full"})
    assert restored["status"] == "succeeded", restored["error_message"]
    assert all_hashes(app.db_url) == expected


async def test_cancel_resumes_the_application(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    temporal_client: Client,
) -> None:
    log = tmp_path / "hooks.log"
    hooks = {
        "stop": ["sh", "-c", f"echo stop >> {log}; sleep 4"],
        "start": ["sh", "-c", f"echo start >> {log}"],
    }
    app = await make_app(api, world, database_server, tmp_path / "app", hooks=hooks)
    backup = await run_backup(api, world, app)
    owner = world.auth("owner")
    body = {"restore_type": "full"}
    accepted = await expect(
        await api.post(restore_url(app, backup["id"]), json=body, headers=owner), 202
    )
    path = f"/api/v1/applications/{app.id}/restores/{accepted['id']}"
    await wait_for(api, path, owner, lambda r: log.exists())
    await temporal_client.get_workflow_handle(accepted["workflow_id"]).cancel()
    done = await wait_for(
        api, path, owner, lambda r: r["status"] in ("cancelled", "failed", "succeeded"), seconds=60
    )
    assert done["status"] == "cancelled", done
    assert log.read_text().split() == ["stop", "start"]
    await histories.record(temporal_client, accepted["workflow_id"], "restore-cancelled")


async def test_a_cancel_that_arrives_while_a_step_finishes_still_cancels(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    tmp_path: Path,
    temporal_client: Client,
) -> None:
    """The stop hook runs on after the cancel and its step ends normally: the run stops anyway.

    A step waiting for its cancellation returns its result when it finishes first; without
    the workflow's checkpoint the restore went on and ended "succeeded" after a 202 cancel.
    """
    log = tmp_path / "hooks.log"
    hooks = {
        "stop": ["sh", "-c", f"echo stop >> {log}; sleep 4"],
        "start": ["sh", "-c", f"echo start >> {log}"],
    }
    app = await make_app(api, world, database_server, tmp_path / "app", hooks=hooks)
    backup = await run_backup(api, world, app)
    before = table_hashes(app.db_url)
    owner = world.auth("owner")
    accepted = await expect(
        await api.post(
            restore_url(app, backup["id"]), json={"restore_type": "full"}, headers=owner
        ),
        202,
    )
    path = f"/api/v1/applications/{app.id}/restores/{accepted['id']}"
    await wait_for(api, path, owner, lambda r: log.exists())
    await asyncio.sleep(3.3)  # near its end: the step finishes before its next heartbeat
    await expect(await api.post(f"{path}/cancel", headers=owner), 202)
    done = await wait_for(
        api, path, owner, lambda r: r["status"] in ("cancelled", "failed", "succeeded"), seconds=90
    )
    assert done["status"] == "cancelled", done
    # the row is recorded by the workflow's last steps (then the alert), so the workflow
    # closes a moment after it: its status is read once it has closed
    handle = temporal_client.get_workflow_handle(accepted["workflow_id"])
    with pytest.raises(WorkflowFailureError) as closed:
        await asyncio.wait_for(handle.result(), 30)
    assert isinstance(closed.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert log.read_text().split() == ["stop", "start"]  # resumed once, as always
    assert table_hashes(app.db_url) == before  # stopped before the database was touched


async def test_rules_of_the_restore_api(
    api: ApiClient, world: World, backed_up: tuple[App, dict[str, Any]], settings: Settings
) -> None:
    app, backup = backed_up
    url, owner = restore_url(app, backup["id"]), world.auth("owner")
    full = {"restore_type": "full"}
    await expect(await api.post(url, json=full, headers=world.auth("member")), 403)
    await expect(await api.post(url, json=full, headers=world.auth("other_admin")), 404)
    await expect(await api.post(restore_url(app, str(uuid.uuid4())), json=full, headers=owner), 404)
    for body, mention in [
        ({"restore_type": "partial"}, "restore_type"),
        ({"restore_type": "selective"}, "names the database"),
        ({"restore_type": "full", "database": True}, "full restore"),
        ({"restore_type": "selective", "volumes": ["nope"]}, "not in this backup"),
        ({"restore_type": "selective", "volumes": ["../etc"]}, "volumes"),
        (
            {"restore_type": "selective", "database": True, "target": {"database_name": "x; drop"}},
            "database_name",
        ),
        ({"restore_type": "selective", "database": True, "target": {}}, "exactly one"),
        (
            {
                "restore_type": "selective",
                "volumes": ["uploads"],
                "target": {"database_name": "elsewhere"},
            },
            "only when the database",
        ),
        (
            {
                "restore_type": "selective",
                "database": True,
                "target": {"database_name": app.dbname},
            },
            "original",
        ),
    ]:
        response = await api.post(url, json=body, headers=owner)
        assert response.status_code == 422 and mention in response.text, (body, response.text)
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE backup_executions SET status = 'pruned' WHERE id = %s", (backup["id"],)
        )
    problem = await expect(await api.post(url, json=full, headers=owner), 409)
    assert problem["type"].endswith("/backup-pruned-on-primary"), problem
    assert "pruned from its primary storage" in problem["detail"]
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE backup_executions SET status = 'succeeded' WHERE id = %s", (backup["id"],)
        )
    first = await expect(await api.post(url, json=full, headers=owner), 202)
    problem = await expect(await api.post(url, json=full, headers=owner), 409)
    assert "restore of this application is running" in problem["detail"]
    problem = await expect(await api.post(app.backups, headers=owner), 409)
    assert "restore of this application is running" in problem["detail"]
    await wait_for(
        api,
        f"/api/v1/applications/{app.id}/restores/{first['id']}",
        owner,
        lambda r: r["status"] in ("succeeded", "failed"),
        seconds=120,
    )
