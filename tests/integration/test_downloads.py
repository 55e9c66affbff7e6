"""Downloads (issue 26): a backup's parts in their standard formats, through a short-lived link.

One backup of an application with a database and two volumes serves every test; the data is
changed after it, so what comes back is shown to be the backup's, not the live data.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
import zstandard

from adapters.restic import Restic
from core.settings import Settings
from devstack.postgres import PostgresServer
from repository import names
from tests.integration.test_cli import cairn
from tests.support import database as dbsupport
from tests.support.api import ApiClient, World, expect
from tests.support.backups import (
    CREATED_DATABASES,
    App,
    make_app,
    repository_of,
    run_backup,
    table_hashes,
    tree_hashes,
)
from tests.support.served import served  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


@dataclass
class Backed:
    app: App
    backup_id: str
    tables: dict[str, str]
    trees: dict[str, dict[str, str]]

    def links(self, backup_id: str | None = None) -> str:
        return f"{self.app.backups}/{backup_id or self.backup_id}/downloads"


@pytest.fixture(scope="module")
async def backed(
    api: ApiClient, world: World, database_server: PostgresServer, tmp_path_factory: Any
) -> Backed:
    app = await make_app(api, world, database_server, tmp_path_factory.mktemp("downloads"))
    backup = await run_backup(api, world, app)
    assert backup["status"] == "succeeded", backup
    backed = Backed(
        app,
        backup["id"],
        table_hashes(app.db_url),
        {name: tree_hashes(path) for name, path in app.volumes.items()},
    )
    with psycopg.connect(app.db_url) as conn:  # the live data moves on after the backup
        conn.execute("DELETE FROM items WHERE id % 2 = 0")
    for path in app.volumes.values():
        (path / "file-0.txt").write_text("changed after the backup\n")
    return backed


async def _link(api: ApiClient, world: World, backed: Backed, **body: Any) -> dict[str, Any]:
    return dict(
        await expect(await api.post(backed.links(), json=body, headers=world.auth("owner")), 201)
    )


def _path(link: dict[str, Any]) -> str:
    return str(link["url"]).removeprefix("http://cairn.test")


def _audited(settings: Settings, action: str) -> list[dict[str, Any]]:
    with psycopg.connect(dbsupport.libpq_url(settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT target_id, details FROM audit_events WHERE action = %s", (action,)
        ).fetchall()
    return [{"target": target, **details} for target, details in rows]


async def test_the_database_dump_restores_with_plain_pg_restore(
    api: ApiClient,
    world: World,
    backed: Backed,
    database_server: PostgresServer,
    settings: Settings,
    tmp_path: Path,
) -> None:
    link = await _link(api, world, backed, part="database")
    assert link["compression"] == "none" and link["uses"] == 0
    token = link["url"].rsplit("/", 1)[1]
    response = await api.get(_path(link))
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].endswith('.dump"')
    assert int(response.headers["content-length"]) == len(response.content)
    dump = tmp_path / "app.dump"
    dump.write_bytes(response.content)

    empty = f"cairn_dl_{uuid.uuid4().hex[:10]}"
    database_server.create_database(empty)
    CREATED_DATABASES.append(empty)
    target = database_server.url(empty, driver="postgresql")
    subprocess.run(["pg_restore", "--no-owner", "-d", target, str(dump)], check=True)
    assert table_hashes(target) == backed.tables

    # the secret is nowhere but in the answer: the row keeps its hash, the audit its id
    with psycopg.connect(dbsupport.libpq_url(settings.database_url)) as conn:
        stored = conn.execute(
            "SELECT token_sha256, uses FROM backup_downloads WHERE id = %s", (link["id"],)
        ).fetchone()
        dumped = conn.execute("SELECT details::text FROM audit_events").fetchall()
    assert stored is not None and stored[0] != token and stored[1] == 1
    assert not any(token in text for (text,) in dumped)
    uses = [e["part"] for e in _audited(settings, "download.use") if e["target"] == link["id"]]
    assert uses == ["database"]


async def test_a_database_dump_resumes_from_a_byte(
    api: ApiClient, world: World, backed: Backed
) -> None:
    link = await _link(api, world, backed, part="database")
    whole = (await api.get(_path(link))).content
    tail = await api.get(_path(link), headers={"Range": "bytes=1000-"})
    assert tail.status_code == 206, tail.text
    assert tail.headers["content-range"] == f"bytes 1000-{len(whole) - 1}/{len(whole)}"
    assert tail.content == whole[1000:]
    for bad in ("bytes=0-10", "bytes=-5", f"bytes={len(whole)}-", "lines=1-"):
        refused = await api.get(_path(link), headers={"Range": bad})
        assert refused.status_code == 416, (bad, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"


# compression -> the file's suffix, its first bytes, and how the test reads it back into a
# tar archive (Python 3.11's tarfile reads gzip itself, not zstd)
ARCHIVES = {
    "none": (".tar", b"", lambda b: b),
    "gzip": (".tar.gz", b"\x1f\x8b", lambda b: b),
    "zstd": (
        ".tar.zst",
        b"\x28\xb5\x2f\xfd",
        lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
    ),
}


@pytest.mark.parametrize("compression", list(ARCHIVES))
async def test_a_volume_archive_unpacks_byte_identical(
    api: ApiClient, world: World, backed: Backed, tmp_path: Path, compression: str
) -> None:
    link = await _link(api, world, backed, part="volume:uploads", compression=compression)
    response = await api.get(_path(link))
    assert response.status_code == 200, response.text
    suffix, magic, unpacked = ARCHIVES[compression]
    assert response.headers["content-disposition"].endswith(f'{suffix}"')
    assert response.content.startswith(magic)
    tar = unpacked(response.content)
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:*") as archive:
        archive.extractall(tmp_path / "out", filter="data")
    assert tree_hashes(tmp_path / "out") == backed.trees["uploads"]
    assert (await api.get(_path(link), headers={"Range": "bytes=10-"})).status_code == 416


# A Kubernetes application's configuration part as its export stores it
# (adapters/kubernetes/config.py::export_objects: ConfigMaps, then Secrets with their data
# base64 as the API server gives it, sorted keys).
CONFIG_DOCUMENT = {
    "format": "cairn.kubernetes.config/v1",
    "configmaps": [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "labels": {"app": "shop"}},
            "data": {"greeting": "grüß dich", "limits.yaml": "cpu: 2\nmemory: 1Gi\n"},
        }
    ],
    "secrets": [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "api-keys"},
            "type": "Opaque",
            "data": {"stripe": base64.b64encode(b"sk_test_123").decode()},
        }
    ],
}


async def _with_config(settings: Settings, backed: Backed, tmp_path: Path) -> None:
    """Gives the module's backup a configuration part, stored as a Kubernetes backup stores
    it (a ``config.json`` snapshot with the part's tags, named in the backup's parts): a
    local application has no configuration objects to back up, and a Kubernetes backup
    through the API is test_kube_platform's (it checks the part is made and restored)."""
    repo = await repository_of(settings, backed.app.id, backed.app.storage)
    document = tmp_path / names.CONFIG_FILE
    document.write_text(json.dumps(CONFIG_DOCUMENT, sort_keys=True, indent=1, ensure_ascii=False))
    tags = names.snapshot_tags(backed.app.id, backed.backup_id, names.CONFIG)
    restic = Restic(settings.restic_bin)
    with document.open("rb") as pipe:
        stored = await asyncio.to_thread(restic.backup_stdin, repo, pipe, names.CONFIG_FILE, tags)
    part = {
        "part": names.CONFIG,
        "snapshot_id": stored.snapshot_id,
        "bytes_processed": stored.total_bytes_processed,
        "data_added": stored.data_added,
        "files": 1,
    }
    with psycopg.connect(dbsupport.libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE backup_executions SET metadata = jsonb_set(metadata, '{parts}',"
            " metadata->'parts' || %s::jsonb) WHERE id = %s",
            (json.dumps([part]), backed.backup_id),
        )


async def test_the_configuration_downloads_as_the_yaml_the_backup_stored(
    api: ApiClient, world: World, backed: Backed, settings: Settings, tmp_path: Path
) -> None:
    await _with_config(settings, backed, tmp_path)
    link = await _link(api, world, backed, part="config")
    assert link["compression"] == "none"
    response = await api.get(_path(link))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/yaml")
    assert response.headers["content-disposition"].endswith('-config.yaml"')
    objects = list(yaml.safe_load_all(response.text))
    assert objects == [*CONFIG_DOCUMENT["configmaps"], *CONFIG_DOCUMENT["secrets"]]
    assert "grüß dich" in response.text  # written as text, not escaped


async def test_refusals_are_precise_and_audited(
    api: ApiClient, world: World, backed: Backed, settings: Settings
) -> None:
    before = len(_audited(settings, "download.refused"))
    body = {"part": "database"}
    # a member of the workspace, and another workspace's administrator
    await expect(await api.post(backed.links(), json=body, headers=world.auth("member")), 403)
    await expect(await api.post(backed.links(), json=body, headers=world.auth("other_admin")), 404)
    listed = f"/api/v1/applications/{backed.app.id}/downloads"
    await expect(await api.get(listed, headers=world.auth("member")), 403)

    revoked = await _link(api, world, backed, part="database")
    revoke = f"{listed}/{revoked['id']}/revoke"
    assert (await expect(await api.post(revoke, headers=world.auth("owner")), 200))["revoked_at"]
    assert (await expect(await api.post(revoke, headers=world.auth("owner")), 200))["revoked_at"]
    gone = await api.get(_path(revoked))
    assert gone.status_code == 410 and "revoked" in gone.json()["detail"], gone.text

    expired = await _link(api, world, backed, part="database", expires_in=60)
    with psycopg.connect(dbsupport.libpq_url(settings.database_url)) as conn:
        conn.execute(
            "UPDATE backup_downloads SET expires_at = now() - interval '1 second' WHERE id = %s",
            (expired["id"],),
        )
    gone = await api.get(_path(expired))
    assert gone.status_code == 410 and "expired" in gone.json()["detail"], gone.text
    assert (await api.get("/api/v1/downloads/not-a-link")).status_code == 404

    reasons = [e["reason"] for e in _audited(settings, "download.refused")[before:]]
    assert len(reasons) == 5, reasons
    assert {"revoked", "expired"} <= set(reasons)
    mine = await expect(await api.get(listed, headers=world.auth("owner")), 200)
    assert {revoked["id"], expired["id"]} <= {d["id"] for d in mine}
    assert all("url" not in d for d in mine)


@pytest.mark.usefixtures("unchanged")
async def test_bad_input_changes_nothing(api: ApiClient, world: World, backed: Backed) -> None:
    owner = world.auth("owner")
    for body, field in (
        ({"part": "volume:nope"}, "part"),
        ({"part": "manifest"}, "part"),
        ({"part": "database", "expires_in": -5}, "expires_in"),
        ({"part": "database", "expires_in": 10**9}, "expires_in"),
        ({"part": "database", "compression": "zip"}, "compression"),
        ({"part": "database", "extra": 1}, "extra"),
        ({"part": 7}, "part"),
    ):
        problem = await expect(await api.post(backed.links(), json=body, headers=owner), 422)
        assert [e["field"] for e in problem["errors"]] == [f"body.{field}"], problem
    await expect(
        await api.post(backed.links(str(uuid.uuid4())), json={"part": "database"}, headers=owner),
        404,
    )
    await expect(
        await api.post(
            backed.links(),
            content=b"{not json",
            headers={**owner, "Content-Type": "application/json"},
        ),
        400,
    )


async def test_the_cli_downloads_and_resumes(
    world: World,
    backed: Backed,
    served: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "shop.dump"
    args = ("backups", "download", "--app", backed.app.id, backed.backup_id, "--part", "database")
    ran = await cairn(served, world.tokens["owner"], tmp_path, *args, "-o", str(out))
    assert ran.code == 0, ran
    whole = out.read_bytes()

    # an interrupted download: the first half is on disk as <output>.part
    out.rename(tmp_path / "first.dump")
    (tmp_path / "shop.dump.part").write_bytes(whole[: len(whole) // 2])
    ran = await cairn(served, world.tokens["owner"], tmp_path, *args, "-o", str(out))
    assert ran.code == 0 and "resuming" in ran.err, ran
    assert out.read_bytes() == whole and not (tmp_path / "shop.dump.part").exists()

    refused = await cairn(
        served, world.tokens["member"], tmp_path, *args, "-o", str(tmp_path / "m")
    )
    assert refused.code == 3 and refused.err.startswith("error: Forbidden"), refused
