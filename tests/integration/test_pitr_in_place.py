"""A restore to a moment over the live database, through the API (docs/pitr.md), on a
PostgreSQL server of the test's own with archiving on: recovered beside the live database and
verified, then the application stopped, the copy swapped in and the application started.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from adapters import pg_databases
from adapters.pg_archive import stream
from adapters.pg_archive.window import stamp
from adapters.pg_identity import ProtectedDatabase, identity_of_current
from core.settings import Settings
from tests.integration.test_cli import cairn, typed
from tests.integration.test_pitr_api import (  # noqa: F401  (instance: the fixture)
    DB,
    Archived,
    at,
    instance,
    on_instance,
    policy,
    register,
    until_closed,
    window_when,
)
from tests.support import histories, pg_instance
from tests.support.api import ApiClient, World, expect, wait_for
from tests.support.database import snapshot
from tests.support.served import served  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]


class Hooked(Archived):
    """The archived application, whose stop and start commands write the live database's
    row count into ``log`` when they run; its stop command fails while ``failing`` exists."""

    def __init__(self, archived: Archived, log: Path, failing: Path, name: str) -> None:
        super().__init__(archived.app, archived.instance)
        self.log, self.failing, self.name = log, failing, name

    def hooks_ran(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def databases(server: pg_instance.Instance) -> set[str]:
    with server.connect("postgres") as conn:
        return {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def ids_in(server: pg_instance.Instance, dbname: str) -> set[int]:
    with server.connect(dbname) as conn:
        return {int(row[0]) for row in conn.execute("SELECT id FROM orders").fetchall()}


async def commit_rows(archived: Archived, ids: range) -> None:
    with archived.instance.connect(DB) as conn:
        for i in ids:
            conn.execute("INSERT INTO orders VALUES (%s, clock_timestamp())", (i,))
            await asyncio.sleep(0.05)
        conn.execute("SELECT pg_switch_wal()")
        archived.commits.update(
            (int(row[0]), row[1])
            for row in conn.execute(
                "SELECT id, pg_xact_commit_timestamp(xmin) FROM orders WHERE id = ANY(%s)",
                (list(ids),),
            )
        )


@pytest.fixture(scope="module")
async def hooked(
    api: ApiClient,
    world: World,
    temporal_client: Client,
    instance: pg_instance.Instance,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Hooked]:
    folder = tmp_path_factory.mktemp("hooks")
    log, failing = folder / "hooks.log", folder / "fail-stop"
    target = instance.target(DB)
    url = f"postgresql://{target.user}:{target.password}@{target.host}:{target.port}/{DB}"
    count = f"psql -X -At -d '{url}' -c 'SELECT count(*) FROM orders'"
    platform = {
        **on_instance(instance),
        "hooks": {
            "stop": ["sh", "-c", f"test -e {failing} && exit 3; echo stop $({count}) >> {log}"],
            "start": ["sh", "-c", f"echo start $({count}) >> {log}"],
        },
    }
    app = await register(api, world, platform)
    shown = await expect(
        await api.get(f"/api/v1/applications/{app.id}", headers=world.auth("owner")), 200
    )
    hooked = Hooked(Archived(app, instance), log, failing, shown["name"])
    await expect(
        await api.post(
            app.policy, json=policy(app, continuous_archiving=True), headers=world.auth("owner")
        ),
        201,
    )
    try:
        await window_when(api, world, hooked, lambda w: w["earliest"] is not None)
        await commit_rows(hooked, range(1, 31))
        last = max(hooked.commits.values())
        await window_when(
            api, world, hooked, lambda w: w["latest"] is not None and at(w["latest"]) >= last
        )
        yield hooked
    finally:
        await expect(
            await api.post(
                app.policy,
                json=policy(app, continuous_archiving=False),
                headers=world.auth("owner"),
            ),
            200,
        )
        await until_closed(temporal_client, app)  # slot and spool gone before the server goes
        for name in databases(instance):
            if name.startswith(("cairn_restore_", "cairn_old_", f"{DB}_")):
                pg_databases.drop(instance.target(name), name)


def in_place(hooked: Hooked, moment: str, confirm: str | None) -> dict[str, object]:
    body: dict[str, object] = {"target_time": moment, "target": {"in_place": True}}
    if confirm is not None:
        body["confirm"] = confirm
    return body


async def test_without_the_typed_confirmation_it_is_422_and_nothing_changes(
    api: ApiClient, world: World, settings: Settings, hooked: Hooked
) -> None:
    owner = world.auth("owner")
    before, live = snapshot(settings.database_url), ids_in(hooked.instance, DB)
    moment = sorted(hooked.commits.values())[5].isoformat()
    for confirm in [None, "", "wrong", hooked.name.upper(), f" {hooked.name}"]:
        problem = await expect(
            await api.post(hooked.restores, json=in_place(hooked, moment, confirm), headers=owner),
            422,
        )
        assert problem["type"] == "/problems/confirmation-required", problem
        assert problem["title"] == "Confirmation required"
        assert "replaces the live database shop" in problem["detail"]
        assert problem["errors"] == [
            {
                "field": "body.confirm",
                "message": "type the application's name exactly to confirm",
                "code": "confirmation-required",
            }
        ], problem
    for target in [
        {"in_place": True, "database_name": "shop_x"},  # exactly one
        {"in_place": False},
        {"in_place": "yes"},
        {},
    ]:
        body = {"target_time": moment, "target": target, "confirm": hooked.name}
        problem = await expect(await api.post(hooked.restores, json=body, headers=owner), 422)
        assert problem["errors"][0]["field"].startswith("body.target"), (target, problem)
    problem = await expect(
        await api.post(
            hooked.restores,
            json={"target_time": moment, "target": {"database_name": DB}, "confirm": hooked.name},
            headers=owner,
        ),
        422,
    )
    assert [e["field"] for e in problem["errors"]] == ["body.target.database_name"], problem
    assert "target.in_place" in problem["errors"][0]["message"]
    # a member may not restore, confirmed or not
    await expect(
        await api.post(
            hooked.restores,
            json=in_place(hooked, moment, hooked.name),
            headers=world.auth("member"),
        ),
        403,
    )
    assert snapshot(settings.database_url) == before
    assert ids_in(hooked.instance, DB) == live
    assert not any(n.startswith("cairn_") for n in databases(hooked.instance))
    assert hooked.hooks_ran() == []


async def test_a_staging_copy_does_not_stop_the_archiver_another_database_does(
    hooked: Hooked,
) -> None:
    """A stretch or base backup that starts while a restore's copy is beside the live
    database goes on (the copy is the application's own data); a foreign database does not."""
    target = hooked.instance.target(DB)
    slot = stream.slot_name(hooked.app.id)
    for name in ["cairn_restore_000000000000", "tenant_b"]:
        with hooked.instance.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {name}")
        try:
            if name == "tenant_b":
                with pytest.raises(ProtectedDatabase, match="also holds tenant_b"):
                    stream.prepare(target, slot)
            else:
                stream.prepare(target, slot)
        finally:
            pg_databases.drop(hooked.instance.target(name), name)
    # a restore to a moment's new database is known by identity: the same name made again
    # (dropped, and someone else's now) is refused
    for attempt in range(2):
        with hooked.instance.connect("postgres") as conn:
            conn.execute("CREATE DATABASE shop_restored")
        try:
            with hooked.instance.connect("shop_restored") as conn:
                made = identity_of_current(conn)
            if attempt == 0:
                restored = (made,)
                stream.prepare(target, slot, restored)
            else:
                with pytest.raises(ProtectedDatabase, match="also holds shop_restored"):
                    stream.prepare(target, slot, restored)
        finally:
            pg_databases.drop(hooked.instance.target("shop_restored"), "shop_restored")


async def test_a_failure_before_the_swap_leaves_the_live_database_untouched(
    api: ApiClient, world: World, temporal_client: Client, hooked: Hooked
) -> None:
    owner = world.auth("owner")
    live = ids_in(hooked.instance, DB)
    hooked.failing.touch()  # the stop command fails: the copy is ready, the swap never comes
    try:
        moment = sorted(hooked.commits.values())[5].isoformat()
        started = await expect(
            await api.post(
                hooked.restores, json=in_place(hooked, moment, hooked.name), headers=owner
            ),
            202,
        )
        handle = temporal_client.get_workflow_handle(started["workflow_id"])
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), 240)
    finally:
        hooked.failing.unlink()
    done = await expect(await api.get(f"{hooked.restores}/{started['id']}", headers=owner), 200)
    assert done["status"] == "failed", done
    assert done["error_message"].startswith("quiesce: the application could not be stopped")
    assert "tables verified" in done["notes"]["database"]
    assert hooked.hooks_ran() == ["start 30"]  # never stopped, started again all the same
    assert ids_in(hooked.instance, DB) == live
    assert not any(n.startswith("cairn_") for n in databases(hooked.instance))  # copy dropped
    hooked.log.unlink()


async def test_in_place_replaces_the_live_database_with_the_moment_and_archiving_goes_on(
    api: ApiClient, world: World, temporal_client: Client, hooked: Hooked
) -> None:
    owner, member = world.auth("owner"), world.auth("member")
    moment = sorted(hooked.commits.values())[11]
    before = {i for i, c in hooked.commits.items() if c <= moment}
    assert len(before) == 12
    started = await expect(
        await api.post(
            hooked.restores,
            json=in_place(hooked, moment.isoformat(), hooked.name),
            headers=owner,
        ),
        202,
    )
    assert (started["target"], started["target_time"]) == (None, stamp(moment))
    done = await wait_for(
        api,
        f"{hooked.restores}/{started['id']}",
        member,
        lambda r: r["status"] not in ("pending", "running"),
        seconds=240,
    )
    assert done["status"] == "succeeded", done["error_message"]
    await histories.record(temporal_client, done["workflow_id"], "restore-to-time-in-place")
    # rows after the moment are gone from the live database, rows up to it are there
    assert ids_in(hooked.instance, DB) == before
    # stopped while the live database still held every row, started once it held the moment
    assert hooked.hooks_ran() == ["stop 30", "start 12"]
    assert "replaced by the copy" in done["notes"]["swap"]
    assert not any(n.startswith("cairn_") for n in databases(hooked.instance))
    events = await expect(
        await api.get(
            f"/api/v1/workspaces/{hooked.app.ws}/audit-events", headers=world.auth("ws_admin")
        ),
        200,
    )
    requested = [
        e
        for e in events["items"]
        if e["action"] == "restore.request" and e["target_id"] == started["id"]
    ]
    assert requested and requested[0]["details"]["in_place"] is True, requested

    # the archiver goes on: rows committed after the swap reach the window, with no gap
    described = await temporal_client.get_workflow_handle(f"archiver-{hooked.app.id}").describe()
    assert described.status == WorkflowExecutionStatus.RUNNING
    await commit_rows(hooked, range(101, 106))
    after = {i: hooked.commits[i] for i in range(101, 106)}
    shown = await window_when(
        api,
        world,
        hooked,
        lambda w: w["latest"] is not None and at(w["latest"]) >= max(after.values()),
    )
    assert shown["gaps"] == [] and shown["archiver"]["streaming"] is True, shown
    # and restores across the swap: latest holds the moment's rows and the new ones
    name = f"{DB}_after_{uuid.uuid4().hex[:6]}"
    latest = await expect(
        await api.post(
            hooked.restores,
            json={"target_time": "latest", "target": {"database_name": name}},
            headers=owner,
        ),
        202,
    )
    done = await wait_for(
        api,
        f"{hooked.restores}/{latest['id']}",
        member,
        lambda r: r["status"] not in ("pending", "running"),
        seconds=240,
    )
    assert done["status"] == "succeeded", done["error_message"]
    try:
        assert ids_in(hooked.instance, name) == before | set(after)
    finally:
        pg_databases.drop(hooked.instance.target(name), name)


async def test_the_cli_restores_in_place_once_the_name_is_typed(
    api: ApiClient,
    world: World,
    hooked: Hooked,
    served: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    owner, app = world.tokens["owner"], hooked.app.id
    await commit_rows(hooked, range(201, 204))
    last = max(hooked.commits[i] for i in range(201, 204))
    await window_when(
        api, world, hooked, lambda w: w["latest"] is not None and at(w["latest"]) >= last
    )
    live = ids_in(hooked.instance, DB)
    restores = await expect(await api.get(hooked.restores, headers=world.auth("owner")), 200)
    moment = hooked.commits[201].isoformat()
    to = ["restores", "create", "--app", app, "--to", moment]
    for extra, said in [
        (["--in-place"], "not confirmed: pass --confirm"),  # no terminal to ask at
        (["--in-place", "--confirm", "wrong"], "is not"),
        (["--in-place", "--confirm", hooked.name, "--target-database", "x"], "not both"),
    ]:
        ran = await cairn(served, owner, tmp_path, *to, *extra)
        assert ran.code == 2 and said in ran.err, (extra, ran)
    ran = await cairn(served, owner, tmp_path, *to, "--confirm", hooked.name)
    assert ran.code == 2 and "--confirm goes with --in-place" in ran.err, ran
    assert ids_in(hooked.instance, DB) == live
    unchanged = await expect(await api.get(hooked.restores, headers=world.auth("owner")), 200)
    assert unchanged["items"] == restores["items"]

    ran = await typed(
        served, owner, tmp_path, hooked.name, *to, "--in-place", "--wait", "-o", "json"
    )
    assert ran.code == 0, ran
    assert "OVERWRITES live data" in ran.err
    assert ran.json()["status"] == "succeeded"
    assert ids_in(hooked.instance, DB) == live - {202, 203}
