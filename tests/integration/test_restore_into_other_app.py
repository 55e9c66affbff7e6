"""Production's backup restored into staging, an application of the same workspace (issue 26,
part 2): staging gets production's data exactly; production is only read (its database,
folders and hooks untouched); every refusal changes nothing and starts nothing."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client

from adapters.engines import redis
from adapters.engines.redis import RedisTarget
from core.restore_details import RestoreSource
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.support.api import ApiClient, World, expect, wait_for
from tests.support.backups import (
    FULL_RESTORE_STEPS,
    App,
    finished,
    make_app,
    run_backup,
    table_hashes,
    tree_hashes,
)
from tests.support.bypass import restore_bypassing_the_api
from tests.support.cli import cairn
from tests.support.engine_servers import redis_server
from tests.support.served import served  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


def hooks_logged_in(log: Path) -> dict[str, list[str]]:
    """Stop and start commands that write what ran into ``log``."""
    return {
        "stop": ["sh", "-c", f"echo stop >> {log}"],
        "start": ["sh", "-c", f"echo start >> {log}"],
    }


def ran(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


async def name_of(api: ApiClient, world: World, app: App) -> str:
    """The application's name, as its owner sees it (what ``confirm`` asks for)."""
    shown = await expect(
        await api.get(f"/api/v1/applications/{app.id}", headers=world.auth("owner")), 200
    )
    return str(shown["name"])


def untouched(app: App) -> dict[str, Any]:
    """Everything a write would change: rows, file bytes, the database's and folders' identity."""
    with psycopg.connect(app.db_url) as conn:
        row = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    return {
        "rows": table_hashes(app.db_url),
        "files": {name: tree_hashes(path) for name, path in app.volumes.items()},
        "database_oid": row[0] if row else None,
        "folders": {name: path.stat().st_ino for name, path in app.volumes.items()},
        "beside": sorted(p.name for p in app.volumes["uploads"].parent.iterdir()),
    }


@dataclass
class Workspace:
    production: App
    staging: App
    backup: dict[str, Any]
    at_backup: dict[str, Any]  # production's rows and files when it was backed up
    logs: dict[str, Path]
    names: dict[str, str]


@pytest.fixture
async def workspace(
    api: ApiClient, world: World, database_server: PostgresServer, tmp_path: Path
) -> Workspace:
    logs = {"production": tmp_path / "production.log", "staging": tmp_path / "staging.log"}
    production = await make_app(
        api,
        world,
        database_server,
        tmp_path / "production",
        hooks=hooks_logged_in(logs["production"]),
    )
    at_backup = {
        "rows": table_hashes(production.db_url),
        "files": {name: tree_hashes(path) for name, path in production.volumes.items()},
    }
    backup = await run_backup(api, world, production)
    assert backup["status"] == "succeeded", backup["error_message"]
    with psycopg.connect(production.db_url) as conn:  # production goes on after its backup
        conn.execute("INSERT INTO items (name) VALUES ('after the backup')")
    (production.volumes["uploads"] / "after-the-backup.txt").write_text("new")
    staging = await make_app(
        api,
        world,
        database_server,
        tmp_path / "staging",
        hooks=hooks_logged_in(logs["staging"]),
        beside=production,
    )
    names = {
        "production": await name_of(api, world, production),
        "staging": await name_of(api, world, staging),
    }
    return Workspace(production, staging, backup, at_backup, logs, names)


def into(app: App) -> str:
    return f"/api/v1/applications/{app.id}/restores/from-application"


async def run(
    api: ApiClient, world: World, app: App, body: dict[str, Any], who: str = "owner"
) -> Any:
    accepted = await expect(await api.post(into(app), json=body, headers=world.auth(who)), 202)
    return await wait_for(
        api,
        f"/api/v1/applications/{app.id}/restores/{accepted['id']}",
        world.auth("owner"),
        finished,
        seconds=120,
    )


async def test_production_into_staging_reads_production_and_never_touches_it(
    api: ApiClient,
    world: World,
    workspace: Workspace,
    served: str,  # noqa: F811
) -> None:
    production, staging = workspace.production, workspace.staging
    before = untouched(production)
    body = {
        "source": {"application_id": production.id, "backup_id": workspace.backup["id"]},
        "restore_type": "full",
        "confirm": workspace.names["staging"],
    }
    restore = await run(api, world, staging, body)
    assert restore["status"] == "succeeded", restore["error_message"]
    assert table_hashes(staging.db_url) == workspace.at_backup["rows"]
    assert {n: tree_hashes(p) for n, p in staging.volumes.items()} == workspace.at_backup["files"]
    assert untouched(production) == before
    assert ran(workspace.logs["production"]) == []
    assert ran(workspace.logs["staging"]) == ["stop", "start"]
    assert restore["application_id"] == staging.id
    assert restore["backup_id"] == workspace.backup["id"]
    assert restore["source"] == {
        "application_id": production.id,
        "application_name": workspace.names["production"],
        "backup_id": workspace.backup["id"],
        "volume_map": {"media": "media", "uploads": "uploads"},
        "database_map": {},
    }
    assert [s["step"] for s in restore["timeline"]["steps"]] == FULL_RESTORE_STEPS
    owner = world.auth("owner")
    listed = await expect(
        await api.get(f"/api/v1/applications/{staging.id}/restores", headers=owner), 200
    )
    assert [r["source"]["application_id"] for r in listed["items"]] == [production.id]
    theirs = await expect(
        await api.get(f"/api/v1/applications/{production.id}/restores", headers=owner), 200
    )
    assert theirs["items"] == []

    # the CLI, mapping production's uploads into staging's media, the target's name confirmed
    token, media_before = world.tokens["owner"], tree_hashes(staging.volumes["uploads"])
    code, out, err = await cairn(
        served,
        token,
        {},
        "restores",
        "create",
        "--app",
        staging.id,
        "--from-app",
        production.id,
        "--backup",
        workspace.backup["id"],
        "--volume",
        "uploads=media",
        "--confirm",
        workspace.names["staging"],
        "--wait",
        "-o",
        "json",
    )
    assert code == 0, (out, err)
    assert f"OVERWRITES live data of application {workspace.names['staging']}" in err
    assert "(volume media)" in err and "(volume uploads)" not in err
    created = json.loads(out)
    assert tree_hashes(staging.volumes["media"]) == workspace.at_backup["files"]["uploads"]
    assert tree_hashes(staging.volumes["uploads"]) == media_before
    assert untouched(production) == before
    assert ran(workspace.logs["production"]) == []
    code, out, err = await cairn(
        served, token, {}, "restores", "get", "--app", staging.id, created["id"], "-o", "json"
    )
    assert code == 0, err
    shown = json.loads(out)
    assert shown["source"]["volume_map"] == {"uploads": "media"}
    assert shown["volumes"] == ["media"] and shown["database"] is False
    code, out, err = await cairn(
        served, token, {}, "restores", "list", "--app", staging.id, "-o", "table"
    )
    assert code == 0, err
    assert out.count(workspace.names["production"]) == 2
    code, out, err = await cairn(
        served, token, {}, "restores", "get", "--app", staging.id, created["id"], "-o", "table"
    )
    assert code == 0, err
    assert f"{workspace.names['production']} ({production.id})" in out
    assert "uploads -> media" in out


@pytest.fixture
async def impostor(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    workspace: Workspace,
    tmp_path: Path,
) -> App:
    """An application of the workspace whose database URL reaches production's database under
    another spelling of the server's address."""
    if database_server.socket_dir:
        pytest.skip("the embedded test server has no TCP address to spell otherwise")
    production = workspace.production
    url = f"postgresql://postgres:app-db-secret-pw@127.1:{database_server.port}/{production.dbname}"
    return await make_app(
        api,
        world,
        database_server,
        tmp_path / "impostor",
        database_url=url,
        beside=production,
        hooks=hooks_logged_in(tmp_path / "impostor.log"),
    )


@pytest.fixture
async def members_app(
    api: ApiClient,
    world: World,
    database_server: PostgresServer,
    workspace: Workspace,
    tmp_path: Path,
) -> App:
    """An application of the workspace that the member owns (production is not theirs)."""
    return await make_app(
        api,
        world,
        database_server,
        tmp_path / "members",
        beside=workspace.production,
        owner="member",
    )


async def test_refusals_name_the_problem_and_change_nothing(
    api: ApiClient,
    world: World,
    workspace: Workspace,
    impostor: App,
    members_app: App,
    unchanged: None,
) -> None:
    production, staging = workspace.production, workspace.staging
    before = {app.id: untouched(app) for app in (production, staging, impostor, members_app)}
    source = {"application_id": production.id, "backup_id": workspace.backup["id"]}
    full = {"source": source, "restore_type": "full", "confirm": workspace.names["staging"]}

    async def refused(
        app: App, body: dict[str, Any], status: int, who: str = "owner"
    ) -> dict[str, Any]:
        answer = await api.post(into(app), json=body, headers=world.auth(who))
        assert answer.status_code == status, (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem: dict[str, Any] = answer.json()
        return problem

    # who may: the member owns the target but may not restore production; the owner the reverse
    problem = await refused(members_app, {**full, "confirm": "x"}, 403, who="member")
    assert "source application" in problem["detail"]
    await refused(members_app, full, 403)
    # another workspace's application, seen or not; an unknown backup
    other = {**full, "source": {**source, "application_id": world.apps["b"]}}
    for who in ("owner", "platform_admin"):
        problem = await refused(staging, other, 404, who=who)
        assert world.apps["b"] in problem["detail"]
    missing = str(uuid.uuid4())
    problem = await refused(staging, {**full, "source": {**source, "backup_id": missing}}, 404)
    assert missing in problem["detail"] and "backup" in problem["detail"]
    # names: a volume the target lacks, a mapping of a part not restored, two into one
    problem = await refused(staging, {**full, "volume_map": {"uploads": "files"}}, 422)
    assert problem["errors"][0]["field"] == "body.volume_map.uploads"
    assert "no volume files" in problem["errors"][0]["message"]
    selective = {**full, "restore_type": "selective", "volumes": ["media"]}
    problem = await refused(staging, {**selective, "volume_map": {"uploads": "media"}}, 422)
    assert problem["errors"][0]["field"] == "body.volume_map.uploads"
    problem = await refused(staging, {**full, "volume_map": {"uploads": "media"}}, 422)
    assert "would both go into volume media" in problem["detail"]
    # the confirmation names the target: none, or the source's name, is refused
    for confirm in (None, workspace.names["production"]):
        problem = await refused(staging, {**full, "confirm": confirm}, 422)
        assert problem["type"].endswith("/confirmation-required"), problem
        assert problem["errors"][0]["field"] == "body.confirm"
    problem = await refused(production, {**full, "confirm": workspace.names["production"]}, 422)
    assert problem["errors"][0]["field"] == "body.source.application_id"
    # a target whose database is production's, reached at another address
    problem = await refused(impostor, {**full, "confirm": await name_of(api, world, impostor)}, 422)
    assert problem["errors"][0]["field"] == "body.source.application_id", problem
    assert "the source application's database" in problem["errors"][0]["message"]
    assert "identity" in problem["errors"][0]["message"]
    # nothing started: no restore anywhere, no hook ran, no data changed
    for app in (production, staging, impostor, members_app):
        listed = await expect(
            await api.get(f"/api/v1/applications/{app.id}/restores", headers=world.auth("owner")),
            200,
        )
        assert listed["items"] == []
        assert untouched(app) == before[app.id]
    assert ran(workspace.logs["production"]) == ran(workspace.logs["staging"]) == []


async def test_the_worker_refuses_the_source_database_too(
    api: ApiClient,
    world: World,
    settings: Settings,
    temporal_client: Client,
    workspace: Workspace,
    impostor: App,
) -> None:
    """A request the API never judged: the worker asks the server on the connection that
    would write, and production's database is refused before anything is written."""
    production = workspace.production
    before = untouched(production)
    origin = RestoreSource(production.id, workspace.names["production"], workspace.backup["id"])
    done = await restore_bypassing_the_api(
        api, world, settings, temporal_client, impostor, workspace.backup, source=origin
    )
    assert done["status"] == "failed", done
    assert "restore database" in done["error_message"]
    assert "the source application's database" in done["error_message"]
    assert untouched(production) == before
    assert ran(workspace.logs["production"]) == []


def digest(target: RedisTarget) -> tuple[str, dict[str, int]]:
    return redis.command(target, "DEBUG", "DIGEST"), redis.key_counts(target)


async def test_a_named_database_goes_into_the_target_s_named_database(
    api: ApiClient, world: World, database_server: PostgresServer, tmp_path: Path
) -> None:
    """Production's Redis ``cache`` into staging's ``sessions`` (another server): staging's
    dataset becomes production's at backup time; production's server is left as it is."""
    options = ("--repl-diskless-sync-delay", "0", "--enable-debug-command", "yes")
    with redis_server(*options) as theirs, redis_server(*options) as ours:
        cache, sessions = RedisTarget("127.0.0.1", theirs), RedisTarget("127.0.0.1", ours)
        for args in (
            ("SET", "plain", "v"),
            ("HSET", "user:1", "name", "Ada"),
            ("-n", "2", "SET", "k", "1"),
        ):
            redis.command(cache, *args)
        redis.command(sessions, "SET", "staging-only", "1")
        log = tmp_path / "production.log"
        production = await make_app(
            api,
            world,
            database_server,
            tmp_path / "production",
            hooks=hooks_logged_in(log),
            databases={"cache": f"redis://127.0.0.1:{theirs}/0"},
        )
        at_backup = digest(cache)
        backup = await run_backup(api, world, production)
        assert backup["status"] == "succeeded", backup["error_message"]
        redis.command(cache, "SET", "after-the-backup", "1")
        before = digest(cache)
        staging = await make_app(
            api,
            world,
            database_server,
            tmp_path / "staging",
            beside=production,
            databases={"sessions": f"redis://127.0.0.1:{ours}/0"},
        )
        body: dict[str, Any] = {
            "source": {"application_id": production.id, "backup_id": backup["id"]},
            "restore_type": "selective",
            "databases": ["cache"],
            "confirm": await name_of(api, world, staging),
        }
        problem = await expect(
            await api.post(into(staging), json=body, headers=world.auth("owner")), 422
        )
        assert problem["errors"][0]["field"] == "body.database_map.cache"
        assert "no database cache" in problem["errors"][0]["message"]
        restore = await run(api, world, staging, {**body, "database_map": {"cache": "sessions"}})
        assert restore["status"] == "succeeded", restore["error_message"]
        assert digest(sessions) == at_backup
        assert restore["databases"] == ["sessions"]
        assert restore["source"]["database_map"] == {"cache": "sessions"}
        assert digest(cache) == before
        assert "role:master" in redis.command(cache, "INFO", "replication")
        assert ran(log) == []
