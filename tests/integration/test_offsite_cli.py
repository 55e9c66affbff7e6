"""``cairn offsite-targets`` and ``cairn restores create --from offsite``, run as a user would."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.support.api import ApiClient, World, expect, wait_for
from tests.support.backups import make_app, run_backup, table_hashes, tree_hashes
from tests.support.cli import cairn
from tests.support.offsite_servers import OffsiteSite
from tests.support.served import served  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OffsiteSite]:
    started = OffsiteSite.started(tmp_path_factory.mktemp("offsite-cli"))
    try:
        yield started
    finally:
        started.stop()


async def test_targets_and_a_restore_from_the_copy_through_the_cli(
    api: ApiClient,
    world: World,
    served: str,  # noqa: F811
    database_server: PostgresServer,
    site: OffsiteSite,
    settings: Settings,
    tmp_path: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path / "app")
    admin = world.tokens["ws_admin"]
    passwords = {
        "CAIRN_OFFSITE_PASSWORD": site.everyday.password,
        "CAIRN_OFFSITE_MAINTENANCE_PASSWORD": site.maintenance.password,
    }
    create = ["offsite-targets", "create", "--workspace", app.workspace, "--kind", "rest"]
    create += ["--url", site.everyday.url, "--username", site.everyday.username]
    create += ["--maintenance-url", site.maintenance.url]
    create += ["--maintenance-username", site.maintenance.username]
    code, out, err = await cairn(served, admin, {}, *create, "--name", "offsite", "-q")
    assert code == 2 and "CAIRN_OFFSITE_PASSWORD" in err, err  # no password given
    code, out, err = await cairn(served, admin, passwords, *create, "--name", "offsite", "-q")
    assert code == 0, err
    target_id = out.strip()
    assert site.everyday.password not in out + err
    code, out, err = await cairn(
        served, admin, {}, "offsite-targets", "list", "--workspace", app.workspace, "-o", "json"
    )
    assert code == 0 and [t["id"] for t in json.loads(out)["items"]] == [target_id], out
    # renamed, limited, and its everyday credentials rotated (checked again); a wrong password
    # is refused by the check and nothing changes
    update = ["offsite-targets", "update", "--workspace", app.workspace, target_id]
    code, out, err = await cairn(served, admin, {}, *update)
    assert code == 2 and "nothing to change" in err, err
    wrong = {"CAIRN_OFFSITE_PASSWORD": "not-the-password"}
    code, out, err = await cairn(
        served, admin, wrong, *update, "--name", "renamed", "--username", "cairn"
    )
    assert code == 3 and "401" in err, err
    code, out, err = await cairn(
        served,
        admin,
        passwords,
        *update,
        "--name",
        "renamed",
        "--upload-limit-kib",
        "8192",
        "--username",
        site.everyday.username,
        "-o",
        "json",
    )
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["name"], shown["upload_limit_kib"]) == ("renamed", 8192), shown
    assert site.everyday.password not in out + err

    owner = world.tokens["owner"]
    policies = ["policies", "set", "--app", app.id, "-o", "json"]
    code, out, err = await cairn(served, owner, {}, *policies, "--offsite-target", target_id)
    assert code == 0 and json.loads(out)["offsite_target_id"] == target_id, err
    backup = await run_backup(api, world, app)
    places = await wait_for(
        api,
        f"{app.backups}/{backup['id']}/copies",
        world.auth("owner"),
        lambda places: places[-1]["status"] == "copied",
        seconds=180,
    )
    # the policy shows the target and how far the copies trail: not at all
    get = ["policies", "get", "--app", app.id, "-o", "json"]
    code, out, err = await cairn(served, owner, {}, *get)
    shown = json.loads(out)
    assert code == 0 and shown["offsite_target_id"] == target_id, err
    assert shown["offsite"]["lag_seconds"] == 0 and shown["offsite"]["overdue"] is False
    assert shown["offsite"]["last_copied_at"] == places[-1]["copied_at"]
    tables = table_hashes(app.db_url)
    files = {name: tree_hashes(path) for name, path in app.volumes.items()}
    for path in app.volumes.values():
        shutil.rmtree(path / "nested")
    shutil.rmtree(settings.storage_mount_root / app.storage_pve_id)
    application = await expect(
        await api.get(f"/api/v1/applications/{app.id}", headers=world.auth("owner")), 200
    )
    restore = ["restores", "create", "--app", app.id, "--backup", backup["id"], "--from"]
    code, out, err = await cairn(
        served,
        world.tokens["owner"],
        {},
        *restore,
        "offsite",
        "--confirm",
        application["name"],
        "--wait",
        "-o",
        "json",
    )
    assert code == 0, err
    assert json.loads(out)["offsite_target_id"] == target_id
    assert table_hashes(app.db_url) == tables
    assert {name: tree_hashes(path) for name, path in app.volumes.items()} == files
    # a drill reads the copy too, the primary storage still gone
    drill = ["drills", "create", "--app", app.id, "--from", "offsite", "--backup", backup["id"]]
    drill += ["--wait", "-o", "json"]
    code, out, err = await cairn(served, world.tokens["owner"], {}, *drill)
    assert code == 0, err
    drilled = json.loads(out)
    assert drilled["status"] == "succeeded" and drilled["offsite_target_id"] == target_id
    assert drilled["backup_id"] == backup["id"]
    assert not (settings.storage_mount_root / app.storage_pve_id).exists()

    delete = ["offsite-targets", "delete", "--workspace", app.workspace, target_id]
    code, out, err = await cairn(served, admin, {}, *delete)
    assert code == 3 and "policy" in err, err
    await expect(await api.delete(app.policy, headers=world.auth("owner")), 204)
    code, out, err = await cairn(served, admin, {}, *delete)
    assert code == 0, err
