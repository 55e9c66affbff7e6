"""Drills to a moment through the API (docs/drills.md, docs/pitr.md), on a PostgreSQL server
of the test's own with continuous archiving on: the moment recovered into the drill's scratch
database from the WAL archive, the drill's checks run on it, the scratch removed.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, ScheduleOverlapPolicy

from adapters.pg_archive.window import stamp
from core.settings import Settings
from tests.integration import test_pitr_api
from tests.integration.test_cli import cairn
from tests.integration.test_drills import finished_drill
from tests.integration.test_pitr_api import (
    DB,
    Archived,
    at,
    on_instance,
    policy,
    refused_outside_window,
    register,
    until_closed,
    window_when,
)
from tests.support import histories, pg_instance
from tests.support.api import ApiClient, World, expect, wait_for
from tests.support.backups import finished
from tests.support.database import snapshot
from tests.support.served import served  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("worker")]

# the fixtures of test_pitr_api: a server of the module's own, an application archiving it
instance = test_pitr_api.instance
archived = test_pitr_api.archived


def drills_of(archived: Archived) -> str:
    return f"/api/v1/applications/{archived.app.id}/drills"


def exactly(ids: Iterable[int]) -> dict[str, str]:
    """A check that passes only when ``orders`` holds exactly these ids."""
    listed = ",".join(str(i) for i in sorted(ids))
    return {
        "name": "exactly the rows committed by then",
        "sql": "SELECT coalesce(array_agg(id ORDER BY id), '{}') = "
        f"'{{{listed}}}'::bigint[] FROM orders",
    }


async def checks(api: ApiClient, world: World, archived: Archived, *sql: dict[str, str]) -> None:
    body = {"schedule": "0 4 * * 0", "enabled": False, "checks": list(sql)}
    response = await api.put(
        f"/api/v1/applications/{archived.app.id}/drill-policy",
        json=body,
        headers=world.auth("owner"),
    )
    assert response.status_code in (200, 201), response.text


async def drilled(
    api: ApiClient, world: World, archived: Archived, body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Starts a drill through the API and waits for its end: the answer and the drill."""
    started = await expect(
        await api.post(drills_of(archived), json=body, headers=world.auth("owner")), 202
    )
    assert started["backup_id"] is None
    done = await wait_for(
        api,
        f"{drills_of(archived)}/{started['id']}",
        world.auth("member"),
        finished,
        seconds=180,
    )
    return started, done


def scratch_left(archived: Archived, drill_id: str) -> list[str]:
    """What the drill left: its scratch database, its scratch server's folder."""
    with archived.instance.connect("postgres") as conn:
        left = [
            str(r[0])
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'cairn_drill_%'"
            ).fetchall()
        ]
    folder = Path(tempfile.gettempdir()) / f"cairn-scratch-{drill_id}"
    return left + ([str(folder)] if folder.exists() else [])


async def commit_rows(archived: Archived, ids: range) -> datetime:
    """Commits rows one by one; the last one's commit time."""
    with archived.instance.connect(DB) as conn:
        for i in ids:
            conn.execute("INSERT INTO orders VALUES (%s, clock_timestamp())", (i,))
            await asyncio.sleep(0.05)
        archived.commits.update(
            (int(row[0]), row[1])
            for row in conn.execute(
                "SELECT id, pg_xact_commit_timestamp(xmin) FROM orders WHERE id = ANY(%s)",
                (list(ids),),
            )
        )
    return max(archived.commits[i] for i in ids)


async def test_a_drill_to_latest_passes_its_checks_on_rows_committed_seconds_before(
    api: ApiClient, world: World, temporal_client: Client, archived: Archived
) -> None:
    last = await commit_rows(archived, range(31, 36))
    await window_when(
        api, world, archived, lambda w: w["latest"] is not None and at(w["latest"]) >= last
    )
    await checks(api, world, archived, exactly(archived.commits))
    requested = time.time()
    started, done = await drilled(api, world, archived, {"target_time": "latest"})
    assert started["target_time"] == "latest" and started["target_time_random"] is False
    assert done["status"] == "succeeded", done["error_message"]
    print(
        f"drill to latest: requested {requested - last.timestamp():.1f} s after the commit,"
        f" recovered and verified in {done['recovery_seconds']:.1f} s"
    )
    assert [c["outcome"] for c in done["checks"]] == ["passed"]
    assert done["recovery_seconds"] > 0 and done["bytes_restored"] > 0
    assert done["notes"]["recover database"].startswith("recovered to latest (")
    assert "1 tables verified" in done["notes"]["recover database"]
    steps = [s["step"] for s in done["timeline"]["steps"]]
    assert steps == [
        "begin_drill",
        "recover_drill_database",
        "run_drill_checks",
        "finish_drill",
        "clean_up_drill",
    ], steps
    assert "removed" in done["cleanup"]
    assert scratch_left(archived, done["id"]) == []
    if os.environ.get("CAIRN_RECORD_HISTORIES"):
        history = await temporal_client.get_workflow_handle(done["workflow_id"]).fetch_history()
        (histories.HISTORIES / "drill-to-a-moment.json").write_text(history.to_json())
    events = await expect(
        await api.get(
            f"/api/v1/workspaces/{archived.app.ws}/audit-events", headers=world.auth("ws_admin")
        ),
        200,
    )
    mine = [e for e in events["items"] if e["target_id"] == done["id"]]
    assert {e["action"]: e["details"].get("target_time") for e in mine} == {
        "drill.request": "latest",
        "drill.start": "latest",
        "drill.succeeded": "latest",
    }


async def test_a_drill_to_a_moment_sees_exactly_the_rows_committed_by_then(
    api: ApiClient, world: World, archived: Archived
) -> None:
    moment = sorted(archived.commits.values())[11]
    by_then = [i for i, c in archived.commits.items() if c <= moment]
    assert len(by_then) == 12
    await checks(api, world, archived, exactly(by_then))
    started, done = await drilled(api, world, archived, {"target_time": moment.isoformat()})
    assert started["target_time"] == done["target_time"] == stamp(moment)
    assert done["status"] == "succeeded", done["error_message"]
    assert [c["outcome"] for c in done["checks"]] == ["passed"]
    # the same drill with a check expecting one row more fails, naming it
    await checks(api, world, archived, exactly([*by_then, 13]))
    _, failed = await drilled(api, world, archived, {"target_time": moment.isoformat()})
    assert failed["status"] == "failed"
    assert failed["error_message"].startswith("checks: check 'exactly the rows"), failed
    assert scratch_left(archived, failed["id"]) == []


async def test_a_random_drill_records_a_moment_inside_the_window(
    api: ApiClient,
    world: World,
    archived: Archived,
    served: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    # any prefix of the ids committed in order is 1..n
    prefix = {"name": "a prefix", "sql": "SELECT count(*) = coalesce(max(id), 0) FROM orders"}
    await checks(api, world, archived, prefix)
    shown = await expect(await api.get(archived.window, headers=world.auth("member")), 200)
    ran = await cairn(
        served, world.tokens["owner"], tmp_path,
        "drills", "create", "--app", archived.app.id, "--to", "random", "--wait", "-o", "json",
    )  # fmt: skip
    assert ran.code == 0, ran
    done = ran.json()
    assert done["status"] == "succeeded", done
    assert done["target_time_random"] is True
    drawn = at(done["target_time"])
    assert at(shown["earliest"]) <= drawn <= at(shown["latest"]) + timedelta(seconds=30)
    assert done["notes"]["recover database"].startswith(f"recovered to {stamp(drawn)} into")
    listed = await expect(await api.get(drills_of(archived), headers=world.auth("member")), 200)
    assert {d["id"]: d["target_time"] for d in listed["items"]}[done["id"]] == stamp(drawn)

    refused = await cairn(
        served, world.tokens["owner"], tmp_path,
        "drills", "create", "--app", archived.app.id, "--to", "latest", "--from", "offsite",
    )  # fmt: skip
    assert refused.code == 2, refused


async def test_bad_moments_and_an_application_without_archiving_are_422_and_make_nothing(
    api: ApiClient,
    world: World,
    settings: Settings,
    archived: Archived,
    instance: pg_instance.Instance,
) -> None:
    owner = world.auth("owner")
    plain = await register(api, world, on_instance(instance))
    await expect(await api.post(plain.policy, json=policy(plain), headers=owner), 201)
    before = snapshot(settings.database_url)
    early = min(archived.commits.values()) - timedelta(days=1)
    await refused_outside_window(api, drills_of(archived), early, owner)
    for body in [
        {"target_time": "2026-12-07T14:31:05"},  # no offset
        {"target_time": "yesterday"},
        {"target_time": "RANDOM"},
        {"target_time": ""},
        {"target_time": 1765000000},
        {"target_time": "latest", "backup_id": "00000000-0000-0000-0000-000000000000"},
        {"target_time": "random", "source": "primary"},
    ]:
        problem = await expect(await api.post(drills_of(archived), json=body, headers=owner), 422)
        assert problem["errors"][0]["field"].startswith("body"), (body, problem)
    for moment in ["latest", "random", early.isoformat()]:
        problem = await expect(
            await api.post(
                f"/api/v1/applications/{plain.id}/drills",
                json={"target_time": moment},
                headers=owner,
            ),
            422,
        )
        assert [e["field"] for e in problem["errors"]] == ["body.target_time"], problem
        assert problem["errors"][0]["message"].startswith("continuous archiving is off"), problem
    await expect(
        await api.post(
            drills_of(archived), json={"target_time": "latest"}, headers=world.auth("member")
        ),
        403,
    )
    assert snapshot(settings.database_url) == before


async def test_a_moment_in_a_gap_is_422_naming_the_window(
    api: ApiClient,
    world: World,
    settings: Settings,
    temporal_client: Client,
    archived: Archived,
) -> None:
    """Archiving off, WAL written, switched and checkpointed past (so the new slot starts
    after segments never archived), archiving on: the window has a gap from the last archived
    moment to the new base backup; a drill into it is refused."""
    owner = world.auth("owner")
    body = policy(archived.app, continuous_archiving=True)
    await expect(
        await api.post(
            archived.app.policy, json={**body, "continuous_archiving": False}, headers=owner
        ),
        200,
    )
    await until_closed(temporal_client, archived.app)
    await commit_rows(archived, range(100, 103))
    with archived.instance.connect(DB) as conn:  # a new slot reserves from the next redo on
        for _ in range(2):
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("CHECKPOINT")
    await expect(await api.post(archived.app.policy, json=body, headers=owner), 200)
    shown = await window_when(api, world, archived, lambda w: bool(w["gaps"]))
    gap = shown["gaps"][0]
    inside = at(gap["from"]) + (at(gap["to"]) - at(gap["from"])) / 2
    before = snapshot(settings.database_url)
    problem = await expect(
        await api.post(
            drills_of(archived), json={"target_time": inside.isoformat()}, headers=owner
        ),
        422,
    )
    assert [e["field"] for e in problem["errors"]] == ["body.target_time"], problem
    message = problem["errors"][0]["message"]
    assert f"{stamp(at(gap['from']))} to {stamp(at(gap['to']))}" in message, message
    assert ", except " in message
    assert snapshot(settings.database_url) == before


async def test_a_scheduled_drill_recovers_the_policy_moment(
    api: ApiClient,
    world: World,
    settings: Settings,
    temporal_client: Client,
    archived: Archived,
    instance: pg_instance.Instance,
    served: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A drill policy with ``target_time`` (``latest``, ``random``): the drill its Temporal
    schedule starts recovers that moment instead of restoring a backup; only with archiving
    on, and never a fixed time."""
    owner = world.auth("owner")
    url = f"/api/v1/applications/{archived.app.id}/drill-policy"
    last = await commit_rows(archived, range(40, 43))
    await window_when(api, world, archived, lambda w: w["latest"] and at(w["latest"]) >= last)
    body = {"schedule": "0 4 * * 0", "checks": [exactly(archived.commits)], "target_time": "latest"}
    response = await api.put(url, json=body, headers=owner)
    assert response.status_code in (200, 201), response.text
    assert response.json()["target_time"] == "latest"
    shown = await expect(await api.get(url, headers=world.auth("member")), 200)
    assert shown["target_time"] == "latest" and shown["schedule_state"]["paused"] is False
    schedule = temporal_client.get_schedule_handle(shown["schedule_id"])

    def drills_to(target: str) -> list[str]:
        return ["drills", "policy", "--app", archived.app.id, "--to", target, "-o", "json"]

    async def scheduled() -> dict[str, Any]:
        """The drill the schedule starts now, at its end."""
        page = await expect(await api.get(drills_of(archived), headers=owner), 200)
        known = {d["id"] for d in page["items"]}
        # the schedule may not have seen the last one end yet, which its SKIP would drop
        await schedule.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
        page = await wait_for(
            api,
            drills_of(archived),
            owner,
            lambda p: (
                bool(p["items"])
                and p["items"][0]["id"] not in known
                and finished_drill(p["items"][0])
            ),
            seconds=180,
        )
        drill = page["items"][0]
        assert drill["trigger"] == "schedule" and drill["backup_id"] is None, drill
        return dict(drill)

    latest = await scheduled()
    assert latest["status"] == "succeeded", latest["error_message"]
    assert latest["target_time"] == "latest" and latest["target_time_random"] is False
    assert [c["outcome"] for c in latest["checks"]] == ["passed"]
    assert latest["notes"]["recover database"].startswith("recovered to latest (")
    assert scratch_left(archived, latest["id"]) == []
    await histories.record(temporal_client, latest["workflow_id"], "drill-scheduled-to-a-moment")

    listed = ",".join(str(i) for i in sorted(archived.commits))
    committed = {
        "name": "only rows committed",
        "sql": f"SELECT coalesce(bool_and(id = ANY('{{{listed}}}'::bigint[])), true) FROM orders",
    }
    window = await expect(await api.get(archived.window, headers=owner), 200)
    body = {**body, "checks": [committed]}
    await expect(await api.put(url, json=body, headers=owner), 200)
    ran = await cairn(served, world.tokens["owner"], tmp_path, *drills_to("random"))
    assert ran.code == 0, ran
    assert ran.json()["target_time"] == "random" and ran.json()["checks"] == [committed]
    drawn = await scheduled()
    assert drawn["status"] == "succeeded", drawn["error_message"]
    assert drawn["target_time_random"] is True
    assert [c["outcome"] for c in drawn["checks"]] == ["passed"]
    assert at(window["earliest"]) <= at(drawn["target_time"]) <= at(window["latest"])
    assert drawn["notes"]["recover database"].startswith(f"recovered to {drawn['target_time']}")

    # a fixed time, or any moment without archiving: 422 on target_time, nothing changed
    plain = await register(api, world, on_instance(instance))
    await expect(await api.post(plain.policy, json=policy(plain), headers=owner), 201)
    before = snapshot(settings.database_url)
    for moment in ["2026-12-07T14:31:05Z", "RANDOM", "", 1]:
        problem = await expect(
            await api.put(url, json={**body, "target_time": moment}, headers=owner), 422
        )
        assert [e["field"] for e in problem["errors"]] == ["body.target_time"], problem
    problem = await expect(
        await api.put(
            f"/api/v1/applications/{plain.id}/drill-policy",
            json={**body, "target_time": "latest"},
            headers=owner,
        ),
        422,
    )
    assert [e["field"] for e in problem["errors"]] == ["body.target_time"], problem
    assert problem["errors"][0]["message"].startswith("continuous archiving is off"), problem
    assert snapshot(settings.database_url) == before
    ran = await cairn(served, world.tokens["owner"], tmp_path, *drills_to("backup"))
    assert ran.code == 0 and ran.json()["target_time"] is None, ran
    await expect(await api.delete(url, headers=owner), 204)
