"""Notification channels of a workspace (issue 25): managed by its admins, secrets sealed and
write-only, test-sends and real notices of failed runs received by a real HTTP receiver that
verifies the HMAC signature and by a real SMTP server (aiosmtpd, STARTTLS and AUTH)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from adapters.pg_archive import stream
from adapters.pg_archive.window import read_stamp, stamp
from adapters.restic import Restic
from contracts.copy import copy_workflow_id
from contracts.task_queues import CONTROL_TASK_QUEUE
from core.settings import Settings
from devstack.postgres import PostgresServer
from schedules.backup_policy import schedule_id
from tests.conftest import free_port
from tests.integration.test_offsite import copied, second_copy_waiting
from tests.integration.test_pitr_api import App, on_instance, policy, register, until_closed
from tests.integration.test_pitr_crash import BOUND_MB
from tests.support import histories, pg_instance
from tests.support.api import ApiClient, World, expect, new_workspace, wait_for
from tests.support.backups import finished, make_app, repository_of, run_backup
from tests.support.cli import cairn
from tests.support.database import libpq_url
from tests.support.notification_receivers import SignedReceiver, SmtpServer, verify
from tests.support.offsite_servers import OffsiteSite
from tests.support.overdue_notices import add_hook, run_notices, told
from tests.support.served import served  # noqa: F401  (the fixture)
from tests.support.webhook import WebhookReceiver
from workflows.storage import RefreshStorageUsageWorkflow

pytestmark = pytest.mark.integration

HMAC_KEY = "whsec-" + secrets.token_hex(16)
SMTP_PASSWORD = "smtp-" + secrets.token_hex(8)
MOMENTS = ("until", "from")  # the archive tags holding a server time (repository/names.py)


def channels_of(workspace: str) -> str:
    return f"/api/v1/workspaces/{workspace}/notification-channels"


@pytest.fixture(scope="module")
def hook() -> Iterator[SignedReceiver]:
    with SignedReceiver(HMAC_KEY) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def slack() -> Iterator[SignedReceiver]:
    with SignedReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    folder = tmp_path_factory.mktemp("smtp")
    with SmtpServer(folder, free_port(), "cairn", SMTP_PASSWORD) as server:
        yield server


@pytest.fixture
def trusts_smtp(smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """cairn verifies the SMTP server's certificate with the system's CAs; here the test CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(smtp.ca_path))


def bodies(hook: SignedReceiver, slack: SignedReceiver, smtp: SmtpServer) -> dict[str, Any]:
    return {
        "webhook": {
            "name": "ops hook",
            "kind": "webhook",
            "events": ["backup.failed", "backup.recovered", "drill.failed"],
            "url": hook.url,
            "secret": HMAC_KEY,
        },
        "slack": {
            "name": "team slack",
            "kind": "slack",
            "events": ["backup.failed", "backup.cancelled"],
            "url": slack.url,
        },
        "email": {
            "name": "on-call mail",
            "kind": "email",
            "events": ["backup.failed", "application.overdue"],
            "recipients": ["oncall@example.com", "dba@example.com"],
            "sender": "cairn@example.com",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "starttls": True,
            "username": "cairn",
            "password": SMTP_PASSWORD,
        },
    }


def rows(settings: Settings, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        return conn.execute(sql, args).fetchall()


async def test_channels_are_managed_by_admins_tested_and_their_secrets_never_show(
    api: ApiClient,
    world: World,
    settings: Settings,
    hook: SignedReceiver,
    slack: SignedReceiver,
    smtp: SmtpServer,
    trusts_smtp: None,
) -> None:
    workspace = await new_workspace(api, world)
    url = channels_of(workspace)
    admin = world.auth("ws_admin")
    made = bodies(hook, slack, smtp)

    async def refused(body: dict[str, Any], field: str | None, status: int = 422) -> Any:
        answer = await api.post(url, json=body, headers=admin)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        if field is not None:
            assert field in [e["field"] for e in problem["errors"]], problem
        return problem

    web, mail = made["webhook"], made["email"]
    await refused({**web, "url": "ftp://127.0.0.1/x"}, "body.url")
    await refused({**web, "url": "http://hooks.example.com/x"}, "body.url")  # http off loopback
    await refused({**web, "events": ["backup.exploded"]}, "body.events.0")
    await refused({**web, "events": []}, "body.events")
    await refused({**web, "events": ["backup.failed", "backup.failed"]}, "body.events")
    await refused({**web, "secret": "short"}, "body.secret")
    await refused({k: v for k, v in web.items() if k != "secret"}, "body.secret")
    await refused({**web, "recipients": ["a@example.com"]}, "body.recipients")
    await refused({**web, "kind": "pager"}, "body.kind")
    await refused({**web, "surprise": 1}, "body.surprise")
    await refused({**mail, "recipients": []}, "body.recipients")
    await refused({**mail, "recipients": ["not-an-address"]}, "body.recipients.0")
    await refused({**mail, "smtp_port": 70000}, "body.smtp_port")
    await refused({k: v for k, v in mail.items() if k != "password"}, "body.password")
    await refused({k: v for k, v in mail.items() if k != "smtp_host"}, "body.smtp_host")
    await refused({**made["slack"], "url": "ftp://x"}, "body.url")
    assert (await expect(await api.get(url, headers=admin), 200))["items"] == []

    # members may not see or change channels; another workspace's admin does not find them
    await expect(await api.get(url, headers=world.auth("member")), 403)
    await expect(await api.post(url, json=web, headers=world.auth("member")), 403)
    created = {}
    for kind, body in made.items():
        created[kind] = await expect(await api.post(url, json=body, headers=admin), 201)
        assert created[kind]["secret_set"] and created[kind]["status"] == "untested"
    await refused(web, None, 409)  # the same name again
    assert created["webhook"]["url"] == hook.url
    assert "url" not in created["slack"] or created["slack"]["url"] is None  # a secret
    assert created["email"]["recipients"] == mail["recipients"]
    other = channels_of(world.workspaces["b"])
    ident = created["webhook"]["id"]
    await expect(await api.get(f"{other}/{ident}", headers=world.auth("other_admin")), 404)
    await expect(await api.get(f"{url}/{ident}", headers=world.auth("other_admin")), 404)
    await expect(await api.delete(f"{url}/{ident}", headers=world.auth("member")), 403)
    await expect(await api.post(f"{url}/{ident}/test", headers=world.auth("member")), 403)

    # test-sends: the webhook signed, Slack's text, the mail over STARTTLS with AUTH
    for kind in made:
        sent = await expect(await api.post(f"{url}/{created[kind]['id']}/test", headers=admin), 200)
        assert sent["delivered"] and sent["error"] is None, sent
        assert sent["channel"]["status"] == "ok"
    assert hook.events[-1]["event"] == "test" and hook.events[-1]["test"] is True
    headers, raw = hook.raw[-1]
    assert headers["X-Cairn-Signature"].startswith("sha256=")
    assert verify(HMAC_KEY, headers, raw)
    assert not verify(HMAC_KEY, headers, raw, now=int(headers["X-Cairn-Timestamp"]) + 301)
    assert not verify("another-key-of-16chars", headers, raw)
    assert "[cairn test]" in slack.events[-1]["text"]
    message = smtp.messages[-1]
    assert message["To"] == "oncall@example.com, dba@example.com"
    assert message["Subject"].startswith("[cairn test]")
    assert smtp.logins[-1] == ("cairn", True)

    # a wrong SMTP password: a clear error on the channel, which shows failing
    wrong = await expect(
        await api.patch(
            f"{url}/{created['email']['id']}", json={"password": "wrong-one"}, headers=admin
        ),
        200,
    )
    assert wrong["secret_set"]
    failed = await expect(
        await api.post(f"{url}/{created['email']['id']}/test", headers=admin), 200
    )
    assert not failed["delivered"]
    assert "refused the login of cairn" in failed["error"], failed
    shown = await expect(await api.get(f"{url}/{created['email']['id']}", headers=admin), 200)
    assert shown["status"] == "failing" and shown["consecutive_failures"] == 1
    assert "refused the login" in shown["last_error"]
    assert "wrong-one" not in str(shown)
    await expect(
        await api.patch(
            f"{url}/{created['email']['id']}", json={"password": SMTP_PASSWORD}, headers=admin
        ),
        200,
    )

    # updates: precise refusals, nothing changed by them
    patch_url = f"{url}/{ident}"
    for body, field in (
        ({"events": ["nope"]}, "body.events.0"),
        ({"url": "gopher://x"}, "body.url"),
        ({"recipients": ["a@example.com"]}, "body.recipients"),
        ({"secret": None}, "body.secret"),
        ({"name": made["slack"]["name"]}, None),
    ):
        answer = await api.patch(patch_url, json=body, headers=admin)
        assert answer.status_code in (409, 422), answer.text
        if field:
            assert field in [e["field"] for e in answer.json()["errors"]], answer.text
    renamed = await expect(
        await api.patch(
            patch_url,
            json={"name": "ops hook 2", "events": ["backup.failed"], "enabled": False},
            headers=admin,
        ),
        200,
    )
    assert renamed["name"] == "ops hook 2" and renamed["events"] == ["backup.failed"]
    assert renamed["enabled"] is False

    # secrets: never in an answer, the row, the audit log
    listed = await expect(await api.get(url, headers=admin), 200)
    assert len(listed["items"]) == 3
    stored = rows(settings, "SELECT t::text FROM notification_channels t")
    audit = rows(
        settings,
        "SELECT action, details::text FROM audit_events WHERE workspace_id = %s"
        " AND action LIKE 'notification_channel.%%'",
        workspace,
    )
    everything = str(listed) + str(created) + str(stored) + str(audit)
    for secret in (HMAC_KEY, SMTP_PASSWORD, slack.url):
        assert secret not in everything
    actions = [a for a, _ in audit]
    assert actions.count("notification_channel.create") == 3
    assert actions.count("notification_channel.update") == 3
    assert actions.count("notification_channel.test") == 4

    await expect(await api.delete(f"{url}/{ident}", headers=admin), 204)
    await expect(await api.get(f"{url}/{ident}", headers=admin), 404)
    audit_after = rows(
        settings,
        "SELECT count(*) FROM audit_events WHERE target_id = %s"
        " AND action = 'notification_channel.delete'",
        ident,
    )
    assert audit_after[0][0] == 1


async def until(
    check: Callable[[], bool], seconds: float = 60, why: Callable[[], object] = lambda: ""
) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"not delivered in time: {why()}"
        await asyncio.sleep(0.2)


def about(receiver: SignedReceiver, run_id: str) -> list[dict[str, Any]]:
    return [e for e in receiver.events if (e.get("run") or {}).get("id") == run_id]


def texts_about(slack: SignedReceiver, run_id: str) -> list[str]:
    return [e["text"] for e in slack.events if run_id in e["text"]]


def mails_about(smtp: SmtpServer, run_id: str) -> list[Any]:
    return [m for m in smtp.messages if run_id in m.get_content()]


@pytest.mark.usefixtures("worker")
async def test_a_failed_backup_and_its_recovery_reach_each_channel_once(
    api: ApiClient,
    world: World,
    settings: Settings,
    database_server: PostgresServer,
    tmp_path: Path,
    temporal_client: Client,
    hook: SignedReceiver,
    slack: SignedReceiver,
    smtp: SmtpServer,
    trusts_smtp: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "public_url", "https://cairn.example.com/")
    app = await make_app(api, world, database_server, tmp_path, capacity_gb=1)
    url, admin = channels_of(app.workspace), world.auth("ws_admin")
    made = bodies(hook, slack, smtp)
    made["webhook"]["events"] = ["backup.failed", "backup.recovered"]
    made["email"]["events"] = ["backup.failed", "backup.recovered"]
    wrong = {**made["email"], "name": "wrong password", "password": "not-the-password"}
    ids = {}
    for kind, body in {**made, "wrong": wrong}.items():
        ids[kind] = (await expect(await api.post(url, json=body, headers=admin), 201))["id"]

    # a real failure: the quota check refuses the backup (a sparse GiB fills the storage)
    filler = settings.storage_mount_root / app.storage_pve_id / "workspaces" / "filler.bin"
    filler.parent.mkdir(exist_ok=True)
    with filler.open("wb") as handle:
        handle.truncate(1024**3)
    try:
        failed = await run_backup(api, world, app)
    finally:
        filler.unlink()
    assert failed["status"] == "failed"
    run = failed["id"]
    await until(
        lambda: bool(about(hook, run) and texts_about(slack, run) and mails_about(smtp, run)),
        why=lambda: (hook.events[-1:], hook.refused[-1:], slack.events[-1:], len(smtp.messages)),
    )
    told = about(hook, run)[0]
    assert told["event"] == "backup.failed" and told["run"]["status"] == "failed"
    assert told["application"]["id"] == app.id and told["application"]["name"]
    assert told["workspace"]["name"] and "quota check" in told["message"]
    assert (
        told["links"]["ui"] == f"https://cairn.example.com/ui/applications/{app.id}/backups/{run}"
    )
    assert told["links"]["temporal"].endswith(failed["workflow_id"])
    headers, raw = next((h, r) for h, r in hook.raw if run.encode() in r)
    assert verify(HMAC_KEY, headers, raw) and headers["X-Cairn-Event"] == "backup.failed"
    assert any(run in e["text"] and "backup failed" in e["text"] for e in slack.events)
    mail = mails_about(smtp, run)[0]
    assert "backup failed" in mail["Subject"] and "quota check" in mail.get_content()
    assert f"/ui/applications/{app.id}/backups/{run}" in mail.get_content()

    async def shown(kind: str) -> Any:
        return await expect(await api.get(f"{url}/{ids[kind]}", headers=admin), 200)

    # the channel with a wrong password is marked failing, with a clear error; the run is not
    # affected (it failed for its own reason, told everywhere else)
    for _ in range(300):
        if (await shown("wrong"))["status"] == "failing":
            break
        await asyncio.sleep(0.2)
    broken = await shown("wrong")
    assert broken["status"] == "failing" and broken["consecutive_failures"] >= 1
    assert "refused the login of cairn" in broken["last_error"]
    for kind in made:
        assert (await shown(kind))["status"] == "ok"

    # the next success: backup.recovered to the channels that chose it, once
    succeeded = await run_backup(api, world, app)
    assert succeeded["status"] == "succeeded"
    good = succeeded["id"]
    await until(lambda: bool(about(hook, good) and mails_about(smtp, good)))
    assert about(hook, good)[0]["event"] == "backup.recovered"
    assert "succeeded again" in mails_about(smtp, good)[0]["Subject"]
    again = await run_backup(api, world, app)  # a success after a success tells nobody
    assert again["status"] == "succeeded"
    await asyncio.sleep(3)
    assert len(about(hook, run)) == 1 and len(texts_about(slack, run)) == 1
    assert len(mails_about(smtp, run)) == 1
    assert len(about(hook, good)) == 1 and texts_about(slack, good) == []
    assert len(mails_about(smtp, good)) == 1
    assert about(hook, again["id"]) == [] and mails_about(smtp, again["id"]) == []
    assert (await shown("wrong"))["status"] == "failing"  # still retried, still refused

    # a failed restore drill reaches the webhook once it chose drill.failed
    events = ["backup.failed", "backup.recovered", "drill.failed"]
    await expect(
        await api.patch(f"{url}/{ids['webhook']}", json={"events": events}, headers=admin), 200
    )
    drills = f"/api/v1/applications/{app.id}/drills"
    owner = world.auth("owner")
    checks = [{"name": "never", "sql": "SELECT false"}]
    policy = {"schedule": "@weekly", "checks": checks}
    await expect(
        await api.put(f"/api/v1/applications/{app.id}/drill-policy", json=policy, headers=owner),
        201,
    )
    accepted = await expect(await api.post(drills, headers=owner), 202)
    drill = await wait_for(api, f"{drills}/{accepted['id']}", owner, finished, seconds=120)
    assert drill["status"] == "failed"
    await until(lambda: bool(about(hook, drill["id"])))
    told_drill = about(hook, drill["id"])
    assert [e["event"] for e in told_drill] == ["drill.failed"]
    assert "check 'never' failed" in told_drill[0]["message"]
    assert told_drill[0]["links"]["ui"] == f"https://cairn.example.com/ui/applications/{app.id}"
    assert texts_about(slack, drill["id"]) == [] and mails_about(smtp, drill["id"]) == []
    await histories.record(
        temporal_client, f"channel-notice-backup.failed-{run}", "channel-notices"
    )
    for ident in ids.values():  # the wrong channel's retries then find it gone: skipped
        await expect(await api.delete(f"{url}/{ident}", headers=admin), 204)


@pytest.mark.usefixtures("worker")
async def test_an_overdue_application_is_told_once_per_period(
    api: ApiClient,
    world: World,
    settings: Settings,
    database_server: PostgresServer,
    tmp_path: Path,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # channels alone, without the platform-wide webhook
    monkeypatch.setattr(settings, "failure_webhook_url", None)
    app = await make_app(api, world, database_server, tmp_path)
    with SignedReceiver(HMAC_KEY) as receiver:
        events = ["application.overdue", "application.recovered"]
        await add_hook(api, world, app.workspace, receiver, "overdue hook", events)
        admin = world.auth("ws_admin")
        with psycopg.connect(libpq_url(settings.database_url)) as conn:
            conn.execute(
                "UPDATE backup_policies SET created_at = %s WHERE application_id = %s",
                (datetime.now(UTC) - timedelta(days=3), app.id),
            )

        await run_notices(temporal_client)
        await until(lambda: told(receiver, app.id) == ["application.overdue"])
        overdue = receiver.events[-1]
        assert overdue["overdue_since"] and overdue["run"] is None
        await run_notices(temporal_client)  # the same period: nobody told twice
        assert (await run_backup(api, world, app))["status"] == "succeeded"
        await run_notices(temporal_client)
        await until(lambda: told(receiver, app.id) == events)
        await run_notices(temporal_client)
        await asyncio.sleep(2)
        assert told(receiver, app.id) == events
        audit = await expect(
            await api.get(f"/api/v1/workspaces/{app.workspace}/audit-events", headers=admin), 200
        )
        assert [e["action"] for e in audit["items"] if e["target_id"] == app.id][:2] == [
            "application.backup_recovered",
            "application.backup_overdue",
        ]


async def test_a_schedule_paused_behind_cairn_s_back_is_told_once_then_recovered_once(
    api: ApiClient,
    world: World,
    worker: None,
    settings: Settings,
    database_server: PostgresServer,
    tmp_path: Path,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 25's acceptance: a policy whose Temporal schedule someone paused behind cairn's
    back (cairn's own policy still enabled) is overdue once its fire time plus grace has
    passed (the policy made two hours ago, every 15 minutes: overdue an hour, the least
    grace, after its first fire), its channel is told once however often the notices run,
    and once more after the next success."""
    monkeypatch.setattr(settings, "failure_webhook_url", None)
    app = await make_app(api, world, database_server, tmp_path, policy={"schedule": "*/15 * * * *"})
    schedule = temporal_client.get_schedule_handle(schedule_id(app.id))
    owner = world.auth("owner")
    await schedule.pause(note="paused by hand, behind cairn's back")
    try:
        with SignedReceiver(HMAC_KEY) as receiver:
            events = ["application.overdue", "application.recovered"]
            await add_hook(api, world, app.workspace, receiver, "paused hook", events)
            with psycopg.connect(libpq_url(settings.database_url)) as conn:
                conn.execute(
                    "UPDATE backup_policies SET created_at = %s WHERE application_id = %s",
                    (datetime.now(UTC) - timedelta(hours=2), app.id),
                )
            assert (await schedule.describe()).schedule.state.paused

            async def told_once(wanted: list[str]) -> None:
                """The notices run three times, as their schedule would: told once."""
                for _ in range(3):
                    await run_notices(temporal_client)
                await until(lambda: told(receiver, app.id) == wanted)
                await asyncio.sleep(3)  # a second notice would be on its way by now
                assert told(receiver, app.id) == wanted

            application = f"/api/v1/applications/{app.id}"
            assert (await expect(await api.get(application, headers=owner), 200))["overdue"]
            await told_once(["application.overdue"])
            assert (await run_backup(api, world, app))["status"] == "succeeded"
            await told_once(events)
    finally:
        await schedule.unpause(note="found")
        disabled = {"storage_id": app.storage, "schedule": "*/15 * * * *", "enabled": False}
        await expect(await api.post(app.policy, json=disabled, headers=owner), 200)


async def test_channels_through_the_cli(
    api: ApiClient,
    world: World,
    served: str,  # noqa: F811
    hook: SignedReceiver,
) -> None:
    workspace = await new_workspace(api, world)
    admin = world.tokens["ws_admin"]
    group = ["notification-channels"]
    where = ["--workspace", workspace]
    add = [*group, "add", *where, "--kind", "webhook", "--name", "cli hook"]
    add += ["--event", "backup.failed", "--event", "drill.failed", "--url", hook.url]
    code, out, err = await cairn(served, admin, {}, *add)
    assert code == 2 and "CAIRN_CHANNEL_SECRET" in err  # no secret: nothing sent
    code, out, err = await cairn(
        served, admin, {"CAIRN_CHANNEL_SECRET": HMAC_KEY}, *add, "-o", "json"
    )
    assert code == 0, err
    made = json.loads(out)
    assert made["events"] == ["backup.failed", "drill.failed"] and HMAC_KEY not in out
    bad = [*group, "add", *where, "--kind", "email", "--name", "m"]
    code, out, err = await cairn(served, admin, {}, *bad, "--event", "backup.failed")
    assert code == 3 and "recipients" in err, err
    code, out, err = await cairn(served, admin, {}, *group, "list", *where, "-o", "json")
    assert code == 0 and [c["name"] for c in json.loads(out)["items"]] == ["cli hook"], err
    before = len(hook.events)
    code, out, err = await cairn(served, admin, {}, *group, "test", *where, made["id"])
    assert code == 0 and "delivered" in err, (out, err)
    assert len(hook.events) == before + 1 and hook.events[-1]["event"] == "test"
    hook.fail_next = 1
    code, out, err = await cairn(served, admin, {}, *group, "test", *where, made["id"])
    assert code == 1 and "answered HTTP 503" in err, (out, err)
    member = world.tokens["member"]
    code, out, err = await cairn(served, member, {}, *group, "list", *where)
    assert code == 3 and ("403" in err or "forbidden" in err.lower()), err
    code, out, err = await cairn(served, admin, {}, *group, "remove", *where, made["id"])
    assert code == 0, err
    assert (
        await expect(await api.get(channels_of(workspace), headers=world.auth("ws_admin")), 200)
    )["items"] == []


@pytest.mark.usefixtures("worker")
async def test_an_overdue_drill_is_told_once_per_period_and_once_when_it_ends(
    api: ApiClient,
    world: World,
    settings: Settings,
    database_server: PostgresServer,
    tmp_path: Path,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Also to the platform webhook, with three notices runs at once (one started by hand
    while the schedule's runs): still told once."""
    app = await make_app(api, world, database_server, tmp_path)
    owner, admin = world.auth("owner"), world.auth("ws_admin")
    drill_policy = f"/api/v1/applications/{app.id}/drill-policy"
    await expect(await api.put(drill_policy, json={"schedule": "0 4 * * *"}, headers=owner), 201)
    with SignedReceiver(HMAC_KEY) as receiver, WebhookReceiver() as platform:
        monkeypatch.setattr(settings, "failure_webhook_url", platform.url)
        drill_events = ["drill.overdue", "drill.recovered"]
        await add_hook(api, world, app.workspace, receiver, "drill hook", drill_events)
        # the daily drill made three days ago never ran
        with psycopg.connect(libpq_url(settings.database_url)) as conn:
            conn.execute(
                "UPDATE restore_drill_policies SET created_at = %s WHERE policy_id ="
                " (SELECT id FROM backup_policies WHERE application_id = %s)",
                (datetime.now(UTC) - timedelta(days=3), app.id),
            )
        standing = await expect(await api.get(drill_policy, headers=owner), 200)
        assert standing["overdue"] is True

        def platform_events() -> list[str]:
            return [e["event"] for e in platform.events if e.get("application_id") == app.id]

        await asyncio.gather(*(run_notices(temporal_client) for _ in range(3)))
        await until(
            lambda: told(receiver, app.id) == ["drill.overdue"], why=lambda: receiver.events
        )
        assert platform_events() == ["drill.overdue"]
        notice = receiver.events[-1]
        since = datetime.fromisoformat(standing["overdue_since"])
        assert datetime.fromisoformat(notice["overdue_since"]) == since
        assert "no successful restore drill since" in notice["message"]
        headers, raw = receiver.raw[-1]
        assert verify(HMAC_KEY, headers, raw) and headers["X-Cairn-Event"] == "drill.overdue"
        await run_notices(temporal_client)  # the same period: told once

        assert (await run_backup(api, world, app))["status"] == "succeeded"
        drills = f"/api/v1/applications/{app.id}/drills"
        accepted = await expect(await api.post(drills, headers=owner), 202)
        drill = await wait_for(api, f"{drills}/{accepted['id']}", owner, finished, seconds=180)
        assert drill["status"] == "succeeded", drill
        await run_notices(temporal_client)
        await until(lambda: told(receiver, app.id) == drill_events)
        await run_notices(temporal_client)
        await asyncio.sleep(2)
        assert told(receiver, app.id) == drill_events
        assert platform_events() == drill_events
        audit = await expect(
            await api.get(f"/api/v1/workspaces/{app.workspace}/audit-events", headers=admin), 200
        )
        assert [e["action"] for e in audit["items"] if e["target_id"] == app.id][:2] == [
            "application.drill_recovered",
            "application.drill_overdue",
        ]


@pytest.mark.usefixtures("worker")
async def test_a_nearly_full_storage_and_quota_are_told_once_per_period(
    api: ApiClient,
    world: World,
    settings: Settings,
    temporal_client: Client,
) -> None:
    """A real usage reading past 90 % of the storage's 1 GB and of the workspace's 1 GB quota
    (a sparse file in the storage's repositories' folder): each told once however often the
    notices run; back under, nothing is told and the period ends; past it again, told again."""
    workspace = await new_workspace(api, world, quota_gb=1)
    admin = world.auth("ws_admin")
    accepted = await expect(
        await api.post(
            f"/api/v1/workspaces/{workspace}/backup-storages",
            json={"name": "tight", "type": "local", "capacity_gb": 1},
            headers=admin,
        ),
        202,
    )
    storage_url = f"/api/v1/workspaces/{workspace}/backup-storages/{accepted['id']}"
    await wait_for(api, storage_url, admin, lambda s: s["status"] == "active")
    storage_id = str(accepted["id"])
    [(pve_id,)] = rows(
        settings, "SELECT proxmox_storage_id FROM backup_storages WHERE id = %s", storage_id
    )
    filler = settings.storage_mount_root / pve_id / "workspaces" / "filler.bin"
    filler.parent.mkdir(parents=True, exist_ok=True)

    async def reading(size: int | None) -> None:
        """The storage holds ``size`` bytes (None: nothing) at a real usage refresh."""
        if size is None:
            filler.unlink(missing_ok=True)
        else:
            with filler.open("wb") as handle:
                handle.truncate(size)
        await temporal_client.execute_workflow(
            RefreshStorageUsageWorkflow.run,
            id=f"test-usage-{uuid.uuid4()}",
            task_queue=CONTROL_TASK_QUEUE,
        )

    with SignedReceiver(HMAC_KEY) as receiver:
        body = {
            "name": "space hook",
            "kind": "webhook",
            "events": ["storage.nearly_full"],
            "url": receiver.url,
            "secret": HMAC_KEY,
        }
        await expect(await api.post(channels_of(workspace), json=body, headers=admin), 201)

        def told() -> list[dict[str, Any]]:
            return [e for e in receiver.events if e["workspace"]["id"] == workspace]

        def kinds() -> list[str]:
            return sorted(
                "storage" if e["storage"] else "quota"
                for e in told()
                if "holds" in e["message"] or "quota" in e["message"]
            )

        try:
            await reading(int(0.95 * 1024**3))
            first = await run_notices(temporal_client)
            for _ in range(2):
                await run_notices(temporal_client)
            await until(lambda: kinds() == ["quota", "storage"], why=told)
            await asyncio.sleep(2)
            assert kinds() == ["quota", "storage"]
            await histories.record(temporal_client, first, "overdue-notices-nearly-full")
            storage_notice = next(e for e in told() if e["storage"])
            assert storage_notice["event"] == "storage.nearly_full"
            assert storage_notice["storage"] == {"id": storage_id, "name": "tight"}
            assert "storage tight holds 0.95 GiB of its 1 GB (95%)" in storage_notice["message"]
            quota_notice = next(e for e in told() if e["storage"] is None)
            assert "of its 1 GB backup quota (95%)" in quota_notice["message"]
            assert all(
                verify(HMAC_KEY, h, r) and h["X-Cairn-Event"] == "storage.nearly_full"
                for h, r in receiver.raw
            )

            await reading(None)  # back under: the periods end, nobody is told
            await run_notices(temporal_client)
            await asyncio.sleep(2)
            assert len(kinds()) == 2

            await reading(int(0.93 * 1024**3))  # past it again: a new period, told again
            await run_notices(temporal_client)
            await until(lambda: kinds() == ["quota", "quota", "storage", "storage"], why=told)
            assert "(93%)" in told()[-1]["message"]
        finally:
            filler.unlink(missing_ok=True)
            await reading(None)
    audit = rows(
        settings,
        "SELECT action, target_type, details->>'check' FROM audit_events"
        " WHERE workspace_id = %s AND action LIKE 'storage.nearly_full%%' ORDER BY occurred_at",
        workspace,
    )
    assert sorted(audit) == sorted(
        [
            ("storage.nearly_full", "backup_storage", "storage"),
            ("storage.nearly_full", "workspace", "quota"),
            ("storage.nearly_full_ended", "backup_storage", "storage"),
            ("storage.nearly_full_ended", "workspace", "quota"),
            ("storage.nearly_full", "backup_storage", "storage"),
            ("storage.nearly_full", "workspace", "quota"),
        ]
    )
    await expect(await api.delete(storage_url, headers=admin), 202)


@pytest.mark.usefixtures("worker")
async def test_overdue_offsite_copies_are_told_once_then_recovered_once(
    api: ApiClient,
    world: World,
    settings: Settings,
    database_server: PostgresServer,
    tmp_path: Path,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real rclone target stopped after the first copy: the second backup's copy waits;
    moved 7 hours back (past a daily schedule's 6-hour allowance) it is overdue, told once;
    the target back and a third backup copied, the period's end is told once."""
    monkeypatch.setattr(settings, "failure_webhook_url", None)
    app = await make_app(api, world, database_server, tmp_path / "app")
    owner, admin = world.auth("owner"), world.auth("ws_admin")
    site = OffsiteSite.started(tmp_path / "offsite")
    waiting = None
    try:
        target_id, first, second = await second_copy_waiting(api, world, app, site)
        waiting = copy_workflow_id(second["id"], target_id)
        application = f"/api/v1/applications/{app.id}"
        await wait_for(api, application, owner, lambda a: a["offsite"]["copies_pending"] == 1)
        with psycopg.connect(libpq_url(settings.database_url)) as conn:
            conn.execute(
                "UPDATE backup_executions SET completed_at = completed_at - %s WHERE id = ANY(%s)",
                (timedelta(hours=7), [first["id"], second["id"]]),
            )
        lag = (await expect(await api.get(application, headers=owner), 200))["offsite"]
        assert lag["overdue"] is True, lag

        with SignedReceiver(HMAC_KEY) as receiver:
            body = {
                "name": "offsite hook",
                "kind": "webhook",
                "events": ["offsite.overdue", "offsite.recovered"],
                "url": receiver.url,
                "secret": HMAC_KEY,
            }
            await expect(await api.post(channels_of(app.workspace), json=body, headers=admin), 201)

            def events() -> list[str]:
                return [
                    e["event"]
                    for e in receiver.events
                    if (e["application"] or {}).get("id") == app.id
                ]

            for _ in range(2):
                await run_notices(temporal_client)
            await until(lambda: events() == ["offsite.overdue"], why=lambda: receiver.events)
            told = receiver.events[-1]
            since = datetime.fromisoformat(lag["overdue_since"])
            assert datetime.fromisoformat(told["overdue_since"]) == since
            assert "offsite copy past their allowance" in told["message"]

            site.everyday.start()
            await temporal_client.get_workflow_handle(waiting).terminate("test: replaced")
            third = await run_backup(api, world, app)
            await copied(api, world, app, third["id"])
            lag = (await expect(await api.get(application, headers=owner), 200))["offsite"]
            assert lag["overdue"] is False, lag
            for _ in range(2):
                await run_notices(temporal_client)
            await until(lambda: events() == ["offsite.overdue", "offsite.recovered"])
            await asyncio.sleep(2)
            assert events() == ["offsite.overdue", "offsite.recovered"]
            assert all(verify(HMAC_KEY, h, r) for h, r in receiver.raw)
        audit = await expect(
            await api.get(f"/api/v1/workspaces/{app.workspace}/audit-events", headers=admin), 200
        )
        assert [e["action"] for e in audit["items"] if e["target_id"] == app.id][:2] == [
            "application.offsite_recovered",
            "application.offsite_overdue",
        ]
    finally:
        site.stop()
        if waiting is not None:
            with contextlib.suppress(RPCError):  # already ended (terminated above)
                await temporal_client.get_workflow_handle(waiting).terminate("test over")


async def shift_archive(settings: Settings, app: App, by: timedelta) -> None:
    """Moves every moment the application's archive records (shipments' ``until``, base
    backups' ``from``) ``by`` into the past, by rewriting the snapshots' tags with ``restic
    tag``: the archive then reads as if its archiver had stopped that much earlier."""
    repo = await repository_of(settings, app.id, app.storage)
    for snap in Restic(settings.restic_bin, cache_dir=settings.restic_cache).snapshots(repo):
        tags = []
        for tag in snap.tags:
            key, _, value = tag.partition("=")
            tags.append(f"{key}={stamp(read_stamp(value) - by)}" if key in MOMENTS else tag)
        if tags != snap.tags:
            command = [settings.restic_bin, "-r", str(repo.path), "--no-cache", "tag"]
            subprocess.run(
                [*command, "--set", ",".join(tags), snap.id],
                env={**os.environ, "RESTIC_PASSWORD": repo.password},
                check=True,
                capture_output=True,
            )


async def settled_shipment(api: ApiClient, window: str, headers: dict[str, str]) -> datetime:
    """The last shipment's moment once it no longer moves (the archiver ships every 5 s)."""
    last, steady = None, 0
    while steady < 5:
        shown = await expect(await api.get(window, headers=headers), 200)
        moment = shown["archiver"]["last_shipment_at"]
        steady = steady + 1 if moment == last else 0
        last = moment
        await asyncio.sleep(5)
    assert last is not None
    return datetime.fromisoformat(last)


@pytest.mark.usefixtures("worker")
async def test_stalled_archiving_and_its_lost_slot_are_told_once_then_recovered_once(
    api: ApiClient,
    world: World,
    settings: Settings,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real archiver (a server of the test's own, ``max_slot_wal_keep_size`` bounded) whose
    ``pg_receivewal`` hangs (SIGSTOP): its shipments stop while its workflow runs on. The
    archive's moments and the audit event that turned archiving on moved 20 minutes back (as
    if it had hung then: past CairnArchiverStalled's 5 minutes for 10), it is told once to a
    channel and the platform webhook, however often the notices run. Meanwhile the server
    writes past the bound and the slot is lost; ``pg_receivewal`` going on (SIGCONT), the
    archiver finds the slot lost, replaces it (``archive.slot_lost`` in the audit log) and
    ships: the period's end and the lost slot are told once each."""
    bounded = {"max_slot_wal_keep_size": f"{BOUND_MB}MB"}
    with pg_instance.running(bounded) as server, SignedReceiver(HMAC_KEY) as receiver:
        with server.connect("postgres") as conn:
            conn.execute("CREATE DATABASE shop")
        app = await register(api, world, on_instance(server))
        owner, admin = world.auth("owner"), world.auth("ws_admin")
        window = f"/api/v1/applications/{app.id}/recovery-window"
        made = await expect(
            await api.post(app.policy, json=policy(app, continuous_archiving=True), headers=owner),
            201,
        )
        hung = 0
        try:
            # a base backup stored and shipments after it: the window has begun
            await wait_for(api, window, owner, lambda w: w["latest"] is not None, 180)
            body = {
                "name": "archive hook",
                "kind": "webhook",
                "events": ["archive.overdue", "archive.recovered", "archive.slot_lost"],
                "url": receiver.url,
                "secret": HMAC_KEY,
            }
            await expect(await api.post(channels_of(app.ws), json=body, headers=admin), 201)
            await run_notices(temporal_client)  # streaming: nothing to tell
            slot = stream.slot_name(app.id)
            found = subprocess.run(["pgrep", "-f", f"pg_receivewal.*{slot}"], capture_output=True)
            (hung,) = [int(pid) for pid in found.stdout.split()]  # this test worker's child
            os.kill(hung, signal.SIGSTOP)
            await settled_shipment(api, window, owner)
            await shift_archive(settings, app, timedelta(minutes=20))
            with psycopg.connect(libpq_url(settings.database_url)) as conn:
                conn.execute(
                    "UPDATE audit_events SET occurred_at = occurred_at - %s WHERE target_id = %s",
                    (timedelta(minutes=20), made["id"]),
                )
            shown = await expect(await api.get(window, headers=owner), 200)
            last = datetime.fromisoformat(shown["archiver"]["last_shipment_at"])
            assert shown["archiver"]["lag_seconds"] > 20 * 60

            def events() -> list[str]:
                return [
                    e["event"]
                    for e in receiver.events
                    if (e["application"] or {}).get("id") == app.id
                ]

            with WebhookReceiver() as platform:
                monkeypatch.setattr(settings, "failure_webhook_url", platform.url)

                def platform_events() -> list[str]:
                    return [
                        e["event"] for e in platform.events if e.get("application_id") == app.id
                    ]

                await asyncio.gather(*(run_notices(temporal_client) for _ in range(2)))
                await until(lambda: events() == ["archive.overdue"], why=lambda: receiver.events)
                assert platform_events() == ["archive.overdue"]
                told = receiver.events[-1]
                since = last + timedelta(minutes=15)  # 5 minutes behind, for 10
                assert datetime.fromisoformat(told["overdue_since"]) == since
                assert f"no WAL reached the storage after {last.isoformat()}" in told["message"]
                assert platform.events[-1]["overdue_since"] == since.isoformat()
                headers, raw = receiver.raw[-1]
                assert (
                    verify(HMAC_KEY, headers, raw) and headers["X-Cairn-Event"] == "archive.overdue"
                )
                await run_notices(temporal_client)  # the same period: told once

                # the server writes past its bound while nobody streams: the slot is lost
                target = server.target("shop")
                with server.connect("shop") as conn:
                    conn.execute("CREATE TABLE filler (id serial)")
                    for _ in range(BOUND_MB // 16 + 2):
                        conn.execute("INSERT INTO filler DEFAULT VALUES")
                        conn.execute("SELECT pg_switch_wal()")
                    for _ in range(10):
                        conn.execute("CHECKPOINT")  # removes the segments past the bound
                        if stream.slot_state(target, slot).lost:
                            break
                assert stream.slot_state(target, slot).lost
                os.kill(hung, signal.SIGCONT)
                hung = 0
                # the archiver replaces the slot by itself and ships again after a gap
                shown = await wait_for(
                    api,
                    window,
                    owner,
                    lambda w: (
                        w["gaps"] != []
                        and w["archiver"]["lag_seconds"] is not None
                        and w["archiver"]["lag_seconds"] < 60
                    ),
                    240,
                )
                assert datetime.fromisoformat(shown["gaps"][0]["from"]) == last
                told_all = ["archive.overdue", "archive.recovered", "archive.slot_lost"]
                await run_notices(temporal_client)
                await until(lambda: events() == told_all, why=lambda: receiver.events)
                await run_notices(temporal_client)
                await asyncio.sleep(2)
                assert events() == told_all
                assert platform_events() == told_all
                lost = receiver.events[-1]
                assert f"a gap from {stamp(last)}" in lost["message"], lost
                assert platform.events[-1]["last_archived"] == stamp(last)
            audit = await expect(
                await api.get(f"/api/v1/workspaces/{app.ws}/audit-events", headers=admin), 200
            )
            actions = [e["action"] for e in audit["items"] if e["target_id"] == app.id]
            assert actions.count("archive.slot_lost") == 1  # the archiver's own, told once:
            assert [a for a in actions if a.startswith("application.archive_")] == [
                "application.archive_slot_lost",
                "application.archive_recovered",
                "application.archive_overdue",
            ]
        finally:
            if hung:
                os.kill(hung, signal.SIGCONT)
            off = policy(app, continuous_archiving=False)
            await expect(await api.post(app.policy, json=off, headers=owner), 200)
            await until_closed(temporal_client, app)  # slot and spool gone before the server
