"""Notification channels of a workspace (issue 25): managed by its admins, secrets sealed and
write-only, test-sends and real notices of failed runs received by a real HTTP receiver that
verifies the HMAC signature and by a real SMTP server (aiosmtpd, STARTTLS and AUTH)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from core.settings import Settings
from tests.conftest import free_port
from tests.support.api import ApiClient, World, expect, new_workspace
from tests.support.database import libpq_url
from tests.support.notification_receivers import SignedReceiver, SmtpServer, verify

pytestmark = pytest.mark.integration

HMAC_KEY = "whsec-" + secrets.token_hex(16)
SMTP_PASSWORD = "smtp-" + secrets.token_hex(8)


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
