"""An application's database restored from a dump its owner uploads (issue 26, part 4): the
database then equals the dumped one row by row; a file that is not a whole custom-format
archive is refused before anything live is touched."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client

from adapters.pg_databases import staging_names
from adapters.restic import Restic
from contracts.task_queues import CONTROL_TASK_QUEUE
from core.settings import Settings
from devstack.postgres import PostgresServer
from repository import names
from tests.integration.test_drills import audit_actions
from tests.integration.test_restore_into_other_app import hooks_logged_in, name_of, ran
from tests.support.api import ApiClient, World, expect, running_app, wait_for
from tests.support.backups import (
    App,
    filled_data,
    finished,
    make_app,
    repository_of,
    run_backup,
    table_hashes,
)
from tests.support.cli import cairn
from tests.support.openapi import assert_documented
from tests.support.served import served  # noqa: F401  (the fixture)
from workflows.retention import RetentionSweepWorkflow

ROUTE = "/api/v1/applications/{app_id}/restores/from-upload"
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


@dataclass
class Uploading:
    app: App
    name: str
    log: Path
    dump: Path  # pg_dump --format=custom of another database
    plain: Path  # pg_dump --format=plain of the same
    other: dict[str, str]  # that database's rows


def pg_dump(url: str, out: Path, dump_format: str = "custom") -> Path:
    subprocess.run(["pg_dump", f"--format={dump_format}", f"--file={out}", url], check=True)
    return out


@pytest.fixture
async def uploading(
    api: ApiClient, world: World, database_server: PostgresServer, tmp_path: Path
) -> Uploading:
    log = tmp_path / "hooks.log"
    app = await make_app(api, world, database_server, tmp_path / "app", hooks=hooks_logged_in(log))
    backup = await run_backup(api, world, app)  # its repository exists from here on
    assert backup["status"] == "succeeded", backup["error_message"]
    _, other_url, _ = filled_data(database_server, tmp_path / "other", "UPLOADED-ROWS")
    with psycopg.connect(other_url) as conn:  # not the application's shape: replaced whole
        conn.execute("DELETE FROM items WHERE id % 3 = 0")
        conn.execute("CREATE TABLE only_in_the_dump (n int, note text)")
        conn.execute(
            "INSERT INTO only_in_the_dump SELECT g, 'line\nbreak' FROM generate_series(1, 57) g"
        )
    dump = pg_dump(other_url, tmp_path / "other.dump")
    plain = pg_dump(other_url, tmp_path / "other.sql", "plain")
    name = await name_of(api, world, app)
    return Uploading(app, name, log, dump, plain, table_hashes(other_url))


def from_upload(app: App, **query: str) -> str:
    asked = "&".join(f"{key}={value}" for key, value in query.items())
    return f"/api/v1/applications/{app.id}/restores/from-upload?{asked}"


async def upload(
    api: ApiClient, world: World, up: Uploading, content: bytes, who: str = "owner", **query: str
) -> Any:
    return await api.post(
        from_upload(up.app, **{"confirm": up.name, **query}),
        content=content,
        headers={**world.auth(who), "Content-Type": "application/octet-stream"},
    )


async def finished_restore(api: ApiClient, world: World, up: Uploading, answer: Any) -> Any:
    accepted = await expect(answer, 202)
    return await wait_for(
        api,
        f"/api/v1/applications/{up.app.id}/restores/{accepted['id']}",
        world.auth("owner"),
        finished,
        seconds=120,
    )


async def upload_snapshots(settings: Settings, app: App) -> list[str]:
    """Snapshots in the application's repository that hold an uploaded dump."""
    repo = await repository_of(settings, app.id, app.storage)
    snapshots = await asyncio.to_thread(Restic(settings.restic_bin).snapshots, repo)
    return [s.id for s in snapshots if "upload" in names.read_tags(s.tags)]


async def test_a_custom_dump_replaces_the_database_row_by_row(
    api: ApiClient,
    world: World,
    uploading: Uploading,
    settings: Settings,
    temporal_client: Client,
) -> None:
    content = uploading.dump.read_bytes()
    restore = await finished_restore(
        api, world, uploading, await upload(api, world, uploading, content)
    )
    assert restore["status"] == "succeeded", restore["error_message"]
    assert table_hashes(uploading.app.db_url) == uploading.other
    assert ran(uploading.log) == ["stop", "start"]
    assert restore["backup_id"] is None
    shown = restore["upload"]
    assert (shown["format"], shown["bytes"]) == ("custom", len(content))
    assert shown["sha256"] == hashlib.sha256(content).hexdigest()
    # verified against what the dump holds, counted from the dump itself
    assert shown["row_counts"]["public.only_in_the_dump"] == 57
    assert shown["row_counts"]["public.Odd Name"] == 2
    assert shown["row_counts"]["public.items"] == 200 - 66
    assert "read whole by pg_restore" in restore["notes"]["verify"]
    assert len(await upload_snapshots(settings, uploading.app)) == 1

    # the restore has ended: the next retention sweep forgets the dump, once, audited
    for sweep in ("first", "again"):
        await temporal_client.execute_workflow(
            RetentionSweepWorkflow.run,
            id=f"test-upload-sweep-{restore['id']}-{sweep}",
            task_queue=CONTROL_TASK_QUEUE,
        )
    assert await upload_snapshots(settings, uploading.app) == []
    shown = await expect(
        await api.get(
            f"/api/v1/applications/{uploading.app.id}/restores/{restore['id']}",
            headers=world.auth("owner"),
        ),
        200,
    )
    assert shown["upload"]["forgotten"] is True
    assert audit_actions(settings, restore["id"]).count("restore.upload_forgotten") == 1


def tar_of(path: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(path, arcname=path.name)
    return buffer.getvalue()


async def test_what_the_api_can_tell_is_refused_before_anything_is_stored(
    api: ApiClient, world: World, uploading: Uploading, settings: Settings
) -> None:
    before = table_hashes(uploading.app.db_url)
    dump = uploading.dump.read_bytes()
    cases: list[tuple[bytes, dict[str, str], str, int, str]] = [
        (b"", {}, "owner", 422, "the uploaded file is empty"),
        (tar_of(uploading.dump), {}, "owner", 422, "looks like a tar archive"),
        (os.urandom(70_000), {}, "owner", 422, "binary data of no known kind"),
        (b"CREATE TABLE t (x int);\n", {}, "owner", 422, "text (a plain-format SQL dump?)"),
        (dump, {"format": "plain"}, "owner", 422, "send it with format=custom"),
        (os.urandom(70_000), {"format": "plain"}, "owner", 422, "not a plain-format SQL dump"),
        (dump, {"confirm": "not-its-name"}, "owner", 422, "type the application's name"),
        (dump, {"format": "sql"}, "owner", 422, "format"),
        (dump, {}, "member", 403, ""),
        (dump, {}, "other_admin", 404, "does not exist"),
    ]
    for content, query, who, status, words in cases:
        answer = await upload(api, world, uploading, content, who, **query)
        assert answer.status_code == status, (query, who, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert words in answer.json()["detail"], answer.text
        assert_documented(answer, "POST", ROUTE)
    problem = (await upload(api, world, uploading, b"")).json()
    assert problem["errors"] == [
        {"field": "body", "message": "the uploaded file is empty", "code": "empty_upload"}
    ]

    # too large: told by Content-Length, and by counting a body sent without one
    small = settings.model_copy(update={"upload_max_bytes": 100_000})
    async with running_app(small) as limited:

        async def chunked() -> AsyncIterator[bytes]:
            yield dump[:5]
            for _ in range(30):
                yield os.urandom(8192)

        for content in (os.urandom(100_001), chunked()):
            answer = await limited.post(
                from_upload(uploading.app, confirm=uploading.name),
                content=content,
                headers=world.auth("owner"),
            )
            assert answer.status_code == 413, answer.text
            assert answer.json()["limit_bytes"] == 100_000
            if isinstance(content, bytes):  # the checker reads the request back
                assert_documented(answer, "POST", ROUTE)

    listed = await expect(
        await api.get(
            f"/api/v1/applications/{uploading.app.id}/restores", headers=world.auth("owner")
        ),
        200,
    )
    assert listed["items"] == []
    assert await upload_snapshots(settings, uploading.app) == []
    assert table_hashes(uploading.app.db_url) == before
    assert ran(uploading.log) == []  # never stopped


async def test_a_truncated_dump_fails_before_the_application_is_stopped(
    api: ApiClient, world: World, uploading: Uploading
) -> None:
    before = table_hashes(uploading.app.db_url)
    content = uploading.dump.read_bytes()
    truncated = content[: len(content) * 2 // 3]
    restore = await finished_restore(
        api, world, uploading, await upload(api, world, uploading, truncated)
    )
    assert restore["status"] == "failed"
    assert "verify backup" in restore["error_message"], restore["error_message"]
    assert "not a whole pg_dump custom-format archive" in restore["error_message"]
    assert restore["upload"]["bytes"] == len(truncated)
    assert restore["upload"]["row_counts"] is None
    assert table_hashes(uploading.app.db_url) == before
    assert ran(uploading.log) == []
    with psycopg.connect(uploading.app.db_url) as conn:  # nothing staged beside it
        staged = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = ANY(%s)",
            (list(staging_names(restore["id"])),),
        ).fetchone()
    assert staged == (0,)


async def test_the_cli_uploads_with_the_name_confirmed(
    world: World,
    uploading: Uploading,
    settings: Settings,
    served: str,  # noqa: F811
) -> None:
    token, app_id = world.tokens["owner"], uploading.app.id
    before = table_hashes(uploading.app.db_url)
    args = ("restores", "create", "--app", app_id, "--from-file", str(uploading.dump))
    code, out, err = await cairn(served, token, {}, *args)
    assert code == 2, (out, err)  # no terminal, no --confirm: nothing sent
    assert "OVERWRITES" in err
    assert await upload_snapshots(settings, uploading.app) == []
    assert table_hashes(uploading.app.db_url) == before

    code, out, err = await cairn(
        served, token, {}, *args, "--confirm", uploading.name, "--wait", "-o", "json"
    )
    assert code == 0, (out, err)
    restore = json.loads(out)
    assert restore["status"] == "succeeded", restore["error_message"]
    assert restore["upload"]["bytes"] == uploading.dump.stat().st_size
    assert table_hashes(uploading.app.db_url) == uploading.other
    assert ran(uploading.log) == ["stop", "start"]


async def test_a_plain_dump_replaces_the_database_row_by_row(
    api: ApiClient, world: World, uploading: Uploading
) -> None:
    content = uploading.plain.read_bytes()
    assert b"\\restrict " in content  # pg_dump's own restricted mode, left out by the restore
    answer = await upload(api, world, uploading, content, format="plain")
    restore = await finished_restore(api, world, uploading, answer)
    assert restore["status"] == "succeeded", restore["error_message"]
    assert table_hashes(uploading.app.db_url) == uploading.other
    assert ran(uploading.log) == ["stop", "start"]
    shown = restore["upload"]
    assert (shown["format"], shown["bytes"]) == ("plain", len(content))
    assert shown["row_counts"]["public.only_in_the_dump"] == 57
    assert shown["row_counts"]["public.items"] == 200 - 66


async def test_a_plain_dump_runs_no_shell_command_and_no_broken_sql(
    api: ApiClient, world: World, uploading: Uploading, tmp_path: Path
) -> None:
    before = table_hashes(uploading.app.db_url)
    script = uploading.plain.read_bytes()
    head, sep, rest = script.partition(b"\nCREATE TABLE ")
    assert sep
    pwned = tmp_path / "pwned"
    shell = f"\\! touch {pwned}\n".encode()
    inline = f"SELECT 1; \\! touch {pwned}\n".encode()

    # a line that is a backslash command: refused when the dump is read, never stopped
    answer = await upload(api, world, uploading, head + b"\n" + shell + sep + rest, format="plain")
    restore = await finished_restore(api, world, uploading, answer)
    assert restore["status"] == "failed"
    assert "verify backup" in restore["error_message"], restore["error_message"]
    assert "the psql command \\!" in restore["error_message"]
    assert ran(uploading.log) == []

    # one after SQL on its line: psql's restricted mode refuses it, before the swap
    answer = await upload(api, world, uploading, head + b"\n" + inline + sep + rest, format="plain")
    restore = await finished_restore(api, world, uploading, answer)
    assert restore["status"] == "failed"
    assert "restore database" in restore["error_message"], restore["error_message"]
    assert "backslash commands are restricted" in restore["error_message"]
    assert ran(uploading.log) == ["stop", "start"]

    # SQL the server refuses, at the end of the script: the whole restore is refused
    answer = await upload(
        api, world, uploading, script + b"CREATE TABLE broken (;\n", format="plain"
    )
    restore = await finished_restore(api, world, uploading, answer)
    assert restore["status"] == "failed"
    assert "syntax error" in restore["error_message"], restore["error_message"]

    assert not pwned.exists()
    assert table_hashes(uploading.app.db_url) == before
    with psycopg.connect(uploading.app.db_url) as conn:  # nothing staged beside it
        staged = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'cairn_restore_%'"
            " OR datname LIKE 'cairn_old_%'"
        ).fetchone()
    assert staged == (0,)
