"""The operator CLI as an operator runs it: ``cairn`` subprocesses against cairn over HTTP.

The README's journey (storage, policy, backup, damage, restore), with ids captured by
``-q``, exit codes checked, and the data compared by row and file hashes; then failures,
cancels, bad input and the progress display on a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cli.dev import database_name
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.conftest import free_ports
from tests.integration.test_processes import _wait_for
from tests.support.api import ApiClient, World, expect, new_workspace, wait_for
from tests.support.backups import (
    CREATED_DATABASES,
    fill_database,
    fill_volume,
    make_app,
    run_backup,
    table_hashes,
    tree_hashes,
)
from tests.support.cli import cairn as run_cli
from tests.support.served import served  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

CAIRN = str(Path(sys.executable).with_name("cairn"))
ROOT = Path(__file__).resolve().parents[2]
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def id(self) -> str:
        assert self.code == 0, self
        assert UUID.match(self.out.strip()), self
        return self.out.strip()


def environment(url: str, token: str) -> dict[str, str]:
    """The CLI's environment: the API and a token, none of the test process's CAIRN_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    return {**env, "CAIRN_API_URL": url, "CAIRN_TOKEN": token}


async def cairn(url: str, token: str, cwd: Path, *args: str) -> Ran:
    """Runs ``cairn *args`` without a terminal (stdin, stdout and stderr are pipes)."""
    return Ran(*await run_cli(url, token, {}, *args, cwd=cwd))


async def typed(url: str, token: str, cwd: Path, answer: str, *args: str) -> Ran:
    """Runs ``cairn *args`` with stdin on a terminal where ``answer`` is typed at the prompt."""
    leader, follower = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        CAIRN,
        *args,
        cwd=cwd,
        env=environment(url, token),
        stdin=follower,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(follower)
    os.write(leader, f"{answer}\n".encode())
    try:
        out, err = await asyncio.wait_for(process.communicate(), 300)
    finally:
        os.close(leader)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def one_line_error(ran: Ran, code: int, starts: str) -> None:
    """A refused command: its exit status, and one ``error: <title>: <detail>`` line."""
    assert ran.code == code, ran
    assert ran.out == "", ran
    assert ran.err.count("\n") == 1 and ran.err.startswith(starts), ran
    assert "Traceback" not in ran.err


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """A folder without a .cairn, so only the environment tells the CLI where the API is."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


async def test_readme_journey_with_the_cli(
    api: ApiClient,
    world: World,
    served: str,  # noqa: F811
    database_server: PostgresServer,
    settings: Settings,
    tmp_path: Path,
    cwd: Path,
) -> None:
    async def as_(who: str, *args: str) -> Ran:
        return await cairn(served, world.tokens[who], cwd, *args)

    # An application with a real database and volume folder, registered by a platform admin
    ws = await new_workspace(api, world, members=("member", "owner"))
    marker = f"CAIRN-MARKER-{uuid.uuid4().hex}"
    dbname = f"cairn_app_{uuid.uuid4().hex[:10]}"
    database_server.create_database(dbname)
    CREATED_DATABASES.append(dbname)
    db_url = database_server.url(dbname, driver="postgresql")
    fill_database(db_url, marker)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    fill_volume(uploads, marker)
    name = f"web-{uuid.uuid4().hex[:6]}"
    app = (
        await as_(
            "platform_admin",
            "admin",
            "-q",
            "apps",
            "create",
            ws,
            "--name",
            name,
            "--owner",
            world.users["owner"],
            "--database-url",
            db_url,
            "--volume",
            f"uploads={uploads}",
        )
    ).id()

    # Storage (a workspace admin) and policy (the application's owner); ids captured by -q
    created = await as_(
        "ws_admin",
        "storages",
        "create",
        "--workspace",
        ws,
        "--name",
        "main",
        "--capacity-gb",
        "1",
        "--wait",
        "-q",
    )
    storage = created.id()
    assert "is active" in created.err
    policy = await as_(
        "owner",
        "policies",
        "set",
        "--app",
        app,
        "--storage",
        storage,
        "--schedule",
        "0 3 * * *",
        "--timezone",
        "Europe/Berlin",
        "-o",
        "json",
    )
    assert policy.code == 0, policy
    assert policy.json()["storage_id"] == storage and policy.json()["timezone"] == "Europe/Berlin"
    counts = await as_(
        "owner", "policies", "set", "--app", app, "--keep-daily", "7", "--no-age-rule", "-o", "json"
    )
    assert counts.code == 0, counts
    assert (counts.json()["keep_daily"], counts.json()["retention_days"]) == (7, None)
    assert counts.json()["schedule"] == "0 3 * * *"  # kept: only the given settings change
    paused = (await as_("owner", "policies", "pause", "--app", app, "-o", "json")).json()
    assert paused["enabled"] is False and paused["schedule_state"]["paused"] is True
    resumed = (await as_("owner", "policies", "resume", "--app", app, "-o", "json")).json()
    assert resumed["enabled"] is True and resumed["schedule"] == "0 3 * * *"

    # A backup, followed to its end; the data is in it
    tables, files = table_hashes(db_url), tree_hashes(uploads)
    created = await as_("owner", "backups", "create", "--app", app, "--wait", "-q")
    backup = created.id()
    assert f"backup {backup} succeeded" in created.err
    stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.search(rf"{stamp} backup running$", created.err, re.M), created.err
    # a step seen under way is said "started"; one that ran between two polls, "completed"
    said = rf"{stamp} dump_database (started|completed)$"
    assert re.search(said, created.err, re.M), created.err
    shown = (await as_("member", "backups", "get", "--app", app, backup, "-o", "json")).json()
    assert shown["status"] == "succeeded"
    assert shown["metadata"]["database"]["row_counts"]["public.items"] == 200
    assert shown["metadata"]["volumes"]["uploads"]["files"] == 22

    # Damage, then a full restore: refused without the application's name, done with it
    with psycopg.connect(db_url) as conn:
        conn.execute("DROP TABLE items")
        conn.execute("""INSERT INTO "Odd Name" VALUES ('new', '{}')""")
    (uploads / "file-3.txt").unlink()
    (uploads / "file-4.txt").write_text("changed")
    assert table_hashes(db_url) != tables and tree_hashes(uploads) != files
    full = ("restores", "create", "--app", app, "--backup", backup, "--wait", "-q")
    unconfirmed = await as_("owner", *full)
    assert unconfirmed.code == 2
    assert f"error: not confirmed: pass --confirm {name}" in unconfirmed.err
    assert "OVERWRITES" in unconfirmed.err and str(uploads) in unconfirmed.err
    wrong = await as_("owner", *full, "--confirm", "someone-else")
    assert wrong.code == 2 and "nothing was changed" in wrong.err
    assert (await as_("owner", "restores", "list", "--app", app, "-q")).out == ""
    restored = await as_("owner", *full, "--confirm", name)
    restore = restored.id()
    assert f"restore {restore} succeeded" in restored.err
    assert table_hashes(db_url) == tables
    assert tree_hashes(uploads) == files

    # The database into another database: nothing live is overwritten, so nothing to confirm
    copy = f"{dbname}_copy"
    CREATED_DATABASES.append(copy)
    into_copy = await as_(
        "owner",
        "restores",
        "create",
        "--app",
        app,
        "--backup",
        backup,
        "--database",
        "--target-database",
        copy,
        "--wait",
        "-o",
        "json",
    )
    assert into_copy.code == 0, into_copy
    assert into_copy.json()["target"] == {"database_name": copy}
    assert table_hashes(database_server.url(copy, driver="postgresql")) == tables
    listed = (await as_("member", "restores", "list", "--app", app, "-o", "json")).json()
    assert [r["status"] for r in listed["items"]] == ["succeeded", "succeeded"]
    table = await as_("member", "restores", "list", "--app", app, "-o", "table")
    rows = [line for line in table.out.splitlines() if restore in line]
    assert len(rows) == 1 and " full " in rows[0] and " succeeded " in rows[0]  # one line a row

    # A failing run: exit 1 and the reason (cairn's usage of the 1 GB storage is full)
    found = await as_("member", "storages", "get", "--workspace", ws, storage, "-o", "json")
    repositories = settings.storage_mount_root / found.json()["proxmox_storage_id"] / "workspaces"
    filler = repositories / "filler.bin"
    with filler.open("wb") as handle:
        handle.truncate(1024**3)  # sparse: counts as 1 GiB of cairn's usage, costs nothing
    try:
        failed = await as_("owner", "backups", "create", "--app", app, "--wait", "-o", "json")
    finally:
        filler.unlink()
    assert failed.code == 1, failed
    assert failed.json()["status"] == "failed"
    assert re.search(r"backup \S+ failed: .*quota check.*of its 1 GB", failed.err), failed.err
    listed = (await as_("member", "backups", "list", "--app", app, "-o", "json")).json()
    assert [b["status"] for b in listed["items"]] == ["failed", "succeeded"]
    failed_only = await as_("member", "backups", "list", "--app", app, "--status", "failed", "-q")
    assert failed_only.out.split() == [failed.json()["id"]]


async def test_bad_input_is_one_line_and_changes_nothing(
    api: ApiClient,
    world: World,
    served: str,  # noqa: F811
    database_server: PostgresServer,
    tmp_path: Path,
    cwd: Path,
) -> None:
    app = await make_app(api, world, database_server, tmp_path / "app")

    async def as_(who: str, *args: str) -> Ran:
        return await cairn(served, world.tokens[who], cwd, *args)

    before = await expect(await api.get(app.policy, headers=world.auth("owner")), 200)
    one_line_error(
        await as_("owner", "policies", "set", "--app", app.id, "--schedule", "* * * * *"),
        3,
        "error: Invalid request: body.schedule: ",
    )
    one_line_error(
        await as_("owner", "backups", "get", "--app", app.id, "not-a-uuid"),
        3,
        "error: Invalid request: path.backup_id: ",
    )
    missing = str(uuid.uuid4())
    one_line_error(
        await as_("owner", "backups", "get", "--app", app.id, missing),
        3,
        f"error: Not found: backup {missing} does not exist",
    )
    one_line_error(
        await as_("member", "backups", "create", "--app", app.id), 3, "error: Forbidden: "
    )
    one_line_error(
        await as_(
            "ws_admin",
            "storages",
            "create",
            "--workspace",
            app.workspace,
            "--name",
            "Not A Slug",
            "--capacity-gb",
            "0",
        ),
        3,
        "error: Invalid request: body.name: ",
    )
    one_line_error(  # another workspace's application is not found, as if it did not exist
        await as_("other_admin", "backups", "list", "--app", app.id), 3, "error: Not found: "
    )
    one_line_error(
        await cairn(served, "cairn_wrong", cwd, "backups", "list", "--app", app.id),
        3,
        "error: Unauthorized: ",
    )
    one_line_error(
        await cairn("http://127.0.0.1:9", "t", cwd, "backups", "list", "--app", app.id),
        3,
        "error: cannot reach the API at http://127.0.0.1:9",
    )
    usage = await as_("owner", "restores", "create", "--app", app.id)
    assert usage.code == 2 and "give --backup BACKUP_ID, or --to MOMENT" in usage.err
    after = await expect(await api.get(app.policy, headers=world.auth("owner")), 200)
    assert after["schedule"] == before["schedule"] and after["updated_at"] == before["updated_at"]
    assert (await expect(await api.get(app.backups, headers=world.auth("owner")), 200))[
        "items"
    ] == []
    assert (
        len(
            (
                await as_(
                    "ws_admin", "storages", "list", "--workspace", app.workspace, "-o", "json"
                )
            ).json()["items"]
        )
        == 1
    )


async def test_no_url_or_token_says_where_they_come_from(cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}

    async def first_line() -> str:
        process = await asyncio.create_subprocess_exec(
            CAIRN,
            "backups",
            "list",
            "--app",
            "x",
            cwd=cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        assert process.returncode == 3
        return err.decode()

    assert (await first_line()).startswith("error: no API URL: pass --api-url, set CAIRN_API_URL")
    # cairn dev's files: the URL from cairn.env, the token from admin-token
    (cwd / ".cairn").mkdir()
    (cwd / ".cairn" / "cairn.env").write_text("CAIRN_API_URL=http://127.0.0.1:9\n")
    assert (await first_line()).startswith("error: no API token:")
    (cwd / ".cairn" / "admin-token").write_text("cairn_x\n")
    assert (await first_line()).startswith("error: cannot reach the API at http://127.0.0.1:9")


async def test_cancel_a_backup_and_a_restore(
    api: ApiClient,
    world: World,
    served: str,  # noqa: F811
    database_server: PostgresServer,
    tmp_path: Path,
    cwd: Path,
    pve: Any,
) -> None:
    log = tmp_path / "hooks.log"
    # The stop hook outlasts the heartbeat throttle (0.8 x 30 s), so the quiesce step hears
    # of the cancel while it runs; a step that ends before it hears is not cancelled (the
    # restore goes on), which would make this test depend on timing.
    hooks = {
        "stop": ["sh", "-c", f"echo stop >> {log}; sleep 35"],
        "start": ["sh", "-c", f"echo start >> {log}"],
    }
    app = await make_app(api, world, database_server, tmp_path / "app", hooks=hooks)

    async def owner(*args: str) -> Ran:
        return await cairn(served, world.tokens["owner"], cwd, *args)

    pve.delay(5)  # the quota check reads the storage's status from PVE: it stays running
    try:
        backup = (await owner("backups", "create", "--app", app.id, "-q")).id()
        await wait_for(  # cancelled in the quota check, a step that stops when told
            api,
            f"{app.backups}/{backup}",
            world.auth("owner"),
            lambda b: any(
                s["step"] == "check_quota" and s["status"] == "running"
                for s in (b.get("timeline") or {}).get("steps", [])
            ),
        )
        cancelled = await owner("backups", "cancel", "--app", app.id, backup, "-o", "json")
        assert cancelled.code == 0, cancelled
        watched = await owner("backups", "watch", "--app", app.id, backup, "-q")
    finally:
        pve.delay(0)
    assert watched.code == 2, watched
    assert watched.out.strip() == backup and f"backup {backup} cancelled: " in watched.err

    good = await run_backup(api, world, app)
    name = (
        await expect(
            await api.get(f"/api/v1/applications/{app.id}", headers=world.auth("owner")), 200
        )
    )["name"]
    create = ("restores", "create", "--app", app.id, "--backup", good["id"], "-q")
    refused = await typed(served, world.tokens["owner"], cwd, "not-the-name", *create)
    assert refused.code == 2 and "is not" in refused.err and "nothing was changed" in refused.err
    restore = (await typed(served, world.tokens["owner"], cwd, name, *create)).id()
    for _ in range(200):  # the stop hook runs (and sleeps): the restore is under way
        if log.exists():
            break
        await asyncio.sleep(0.1)
    cancelled = await owner("restores", "cancel", "--app", app.id, restore, "-o", "json")
    assert cancelled.code == 0, cancelled
    assert cancelled.json()["id"] == restore
    watched = await owner("restores", "watch", "--app", app.id, restore, "-o", "json")
    assert watched.code == 2, watched
    assert watched.json()["status"] == "cancelled"
    assert log.read_text().split() == ["stop", "start"]  # started again
    one_line_error(
        await owner("restores", "cancel", "--app", app.id, restore),
        3,
        "error: Conflict: the restore is cancelled; only a restore under way can be cancelled",
    )
    events = await expect(
        await api.get(
            f"/api/v1/workspaces/{app.workspace}/audit-events?limit=200",
            headers=world.auth("ws_admin"),
        ),
        200,
    )
    asked = [
        (e["action"], e["target_id"])
        for e in events["items"]
        if e["action"] in ("backup.cancel", "restore.cancel")
    ]
    assert sorted(asked) == [("backup.cancel", backup), ("restore.cancel", restore)]


async def on_a_terminal(url: str, token: str, cwd: Path, *args: str) -> tuple[int, str, str]:
    """Runs ``cairn *args`` with stderr on a pseudo-terminal: (exit status, stdout, terminal)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = await asyncio.create_subprocess_exec(
        CAIRN,
        *args,
        cwd=cwd,
        env={**environment(url, token), "TERM": "xterm"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    screen = bytearray()
    loop = asyncio.get_running_loop()

    def drain() -> None:  # the child blocks once the terminal's buffer is full
        with contextlib.suppress(OSError):
            screen.extend(os.read(leader, 65536))

    loop.add_reader(leader, drain)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 300)
    finally:
        loop.remove_reader(leader)
        drain()
        os.close(leader)
    assert process.returncode is not None
    return process.returncode, out.decode(), screen.decode(errors="replace")


async def test_progress_on_a_terminal(
    api: ApiClient,
    world: World,
    served: str,  # noqa: F811
    database_server: PostgresServer,
    tmp_path: Path,
    cwd: Path,
    pve: Any,
) -> None:
    app = await make_app(api, world, database_server, tmp_path / "app")
    pve.delay(2)  # the quota check takes a while, so the bar shows it running
    try:
        code, out, screen = await on_a_terminal(
            served,
            world.tokens["owner"],
            cwd,
            "backups",
            "create",
            "--app",
            app.id,
            "--wait",
            "-q",
        )
    finally:
        pve.delay(0)
    assert code == 0, screen
    backup = out.strip()
    assert UUID.match(backup)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)  # without the terminal's controls
    assert re.search(r"check_quota +━+ +0:00:0\d", text), text  # its bar and elapsed time
    assert f"backup {backup} succeeded" in text


def readme_journey(name: str) -> str:
    """The shell blocks of the README's journey, with the application (and its databases and
    folder) called ``name`` so the run owns them; ``cairn`` comes from the PATH."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## From a terminal:") : readme.index("## Production config")]
    script = "\n".join(re.findall(r"```sh\n(.*?)```", section, re.S))
    script = "\n".join(
        line for line in script.splitlines() if not line.startswith(". .venv/bin/activate")
    )
    return re.sub(r"\bweb(?![A-Za-z0-9-])", name, script)


def test_the_readme_journey_against_cairn_dev(
    tmp_path: Path, database_server: PostgresServer
) -> None:
    """The README's commands, as written, in a shell next to a real ``cairn dev``."""
    name = f"web{uuid.uuid4().hex[:8]}"
    ports = free_ports(4)
    log = tmp_path / "dev.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    dev = subprocess.Popen(
        [
            CAIRN,
            "dev",
            "--api-port",
            str(ports[0]),
            "--temporal-port",
            str(ports[1]),
            "--ui-port",
            str(ports[2]),
            "--metrics-port",
            str(ports[3]),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(log, "cairn is running", dev, seconds=180)
        shell = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", readme_journey(name)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert shell.returncode == 0, (shell.stdout, shell.stderr)
        assert "error:" not in shell.stderr, shell.stderr
        assert re.search(r"backup [0-9a-f-]{36} succeeded", shell.stderr), shell.stderr
        assert len(re.findall(r"restore [0-9a-f-]{36} succeeded", shell.stderr)) == 3, shell.stderr
        for dbname in (name, f"{name}_copy"):  # in place, and into another database
            with psycopg.connect(database_server.url(dbname, driver="postgresql")) as conn:
                assert conn.execute("SELECT t FROM notes").fetchall() == [("kept",)]
        assert (tmp_path / ".cairn" / "apps" / name / "uploads" / "a.txt").read_text() == "kept\n"
    finally:
        dev.send_signal(signal.SIGTERM)
        try:
            dev.wait(timeout=60)
        finally:
            if dev.poll() is None:
                dev.kill()
            for dbname in (name, f"{name}_copy", database_name(tmp_path / ".cairn")):
                database_server.drop_database(dbname)


async def test_a_storage_created_changed_and_deleted(
    api: ApiClient,
    world: World,
    served: str,  # noqa: F811
    tmp_path: Path,
    cwd: Path,
) -> None:
    ws = await new_workspace(api, world)

    async def admin(*args: str) -> Ran:
        return await cairn(served, world.tokens["ws_admin"], cwd, *args)

    storage = (
        await admin(
            "storages",
            "create",
            "--workspace",
            ws,
            "--name",
            "spare",
            "--capacity-gb",
            "5",
            "--wait",
            "-q",
        )
    ).id()
    changed = await admin(
        "storages",
        "update",
        "--workspace",
        ws,
        storage,
        "--name",
        "spare-2",
        "--capacity-gb",
        "7",
        "-o",
        "json",
    )
    assert changed.code == 0, changed
    assert (changed.json()["name"], changed.json()["capacity_gb"]) == ("spare-2", 7)
    one_line_error(
        await admin("storages", "update", "--workspace", ws, storage, "--server", "nfs.example"),
        3,
        "error: Invalid request: ",
    )
    listed = await admin("storages", "list", "--workspace", ws, "-q")
    assert listed.out.split() == [storage]
    deleted = await admin("storages", "delete", "--workspace", ws, storage, "--wait", "-q")
    assert deleted.code == 0 and "storage deleted" in deleted.err, deleted
    one_line_error(
        await admin("storages", "get", "--workspace", ws, storage),
        3,
        f"error: Not found: backup storage {storage} does not exist",
    )
