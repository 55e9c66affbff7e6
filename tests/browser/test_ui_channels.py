"""A workspace's notification channels in the web UI, in Chromium: an admin adds a signed
webhook, sends a test that a real receiver verifies (the HMAC recipe of docs/alerts.md), sees
a channel whose endpoint refuses marked failing with its error, chooses events and deletes;
the secret never reaches a page; a member sees no channels and a forged write is refused."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from core.settings import Settings
from tests.browser.ui_pages import csrf_of, signed_in
from tests.support.api import ApiClient, World, new_workspace
from tests.support.api import expect as expect_status
from tests.support.database import libpq_url
from tests.support.notification_receivers import SignedReceiver, verify

pytestmark = [pytest.mark.browser, pytest.mark.integration]

KEY = "whsec-" + secrets.token_hex(16)


def _audit(settings: Settings, workspace: str) -> list[tuple[str, str]]:
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        found = conn.execute(
            "SELECT action, details::text FROM audit_events WHERE workspace_id = %s"
            " ORDER BY occurred_at",
            (workspace,),
        ).fetchall()
    return [(a, d) for a, d in found]


async def _add_webhook(page: Page, name: str, url: str, events: list[str]) -> None:
    form = page.get_by_test_id("new-channel")
    await form.locator("input[name=name]").fill(name)
    await form.locator("select[name=kind]").select_option("webhook")
    for event in events:
        await form.locator(f"input[name=events][value='{event}']").check()
    await form.locator("input[name=webhook_url]").fill(url)
    await form.locator("input[name=webhook_secret]").fill(KEY)
    await form.get_by_role("button", name="Add channel").click()
    await page.wait_for_load_state()


def _row(page: Page, name: str) -> Any:
    return page.get_by_test_id("channel-row").filter(has_text=name)


async def _forged(context: BrowserContext, url: str, token: str, form: dict[str, str]) -> int:
    response = await context.request.post(
        url, form=form, headers={"X-CSRF-Token": token}, max_redirects=0, timeout=15_000
    )
    return response.status


async def test_an_admin_manages_channels_and_a_member_cannot(
    browser: Browser,
    served: str,
    api: ApiClient,
    world: World,
    settings: Settings,
    screenshots: Path,
) -> None:
    workspace = await new_workspace(api, world)
    channels = f"/ui/workspaces/{workspace}/channels"
    with SignedReceiver(KEY) as receiver, SignedReceiver(KEY) as broken:
        context, page = await signed_in(browser, served, world.tokens["ws_admin"])
        try:
            await page.goto(f"/ui/workspaces/{workspace}")
            await page.get_by_role("link", name="Notifications").click()
            await expect(page.get_by_role("heading", name="Notification channels")).to_be_visible()

            # a refusal of the service (a short key) is shown in words; the key is not kept
            form = page.get_by_test_id("new-channel")
            await form.locator("input[name=name]").fill("too short")
            await form.locator("input[name=events][value='backup.failed']").check()
            await form.locator("input[name=webhook_url]").fill(receiver.url)
            await form.locator("input[name=webhook_secret]").fill("short-key")
            await form.get_by_role("button", name="Add channel").click()
            await expect(page.get_by_role("alert")).to_contain_text("secret")
            assert "short-key" not in await page.content()
            await expect(page.get_by_test_id("channel-row")).to_have_count(0)

            await _add_webhook(page, "ops hook", receiver.url, ["backup.failed", "drill.failed"])
            row = _row(page, "ops hook")
            await expect(row).to_have_count(1)
            await expect(row.get_by_test_id("channel-status")).to_contain_text("untested")
            assert KEY not in await page.content()

            await row.get_by_role("button", name="Send a test").click()
            await expect(page.get_by_test_id("test-outcome")).to_contain_text(
                "Test to ops hook delivered"
            )
            await expect(_row(page, "ops hook").get_by_test_id("channel-status")).to_contain_text(
                "ok"
            )
            assert len(receiver.events) == 1 and receiver.events[0]["event"] == "test"
            headers, raw = receiver.raw[-1]
            assert verify(KEY, headers, raw) and receiver.refused == []
            assert receiver.events[0]["workspace"]["id"] == workspace

            # an endpoint that refuses: failing, with its error, after the test says so
            await _add_webhook(page, "broken hook", broken.url, ["backup.failed"])
            broken.fail_next = 1
            await _row(page, "broken hook").get_by_role("button", name="Send a test").click()
            await expect(page.get_by_test_id("test-outcome")).to_contain_text("not delivered")
            failing = _row(page, "broken hook")
            await expect(failing).to_have_attribute("data-status", "failing")
            await expect(failing.get_by_test_id("channel-error")).to_contain_text(
                "answered HTTP 503"
            )
            await page.screenshot(path=screenshots / "ui-channels.png", full_page=True)
            assert KEY not in await page.content()

            # choosing events: as the API keeps them
            row = _row(page, "ops hook")
            await row.locator("input[name=events][value='drill.failed']").uncheck()
            await row.locator("input[name=events][value='application.overdue']").check()
            await row.get_by_role("button", name="Save events").click()
            await page.wait_for_load_state()
            listed = await expect_status(
                await api.get(
                    f"/api/v1/workspaces/{workspace}/notification-channels",
                    headers=world.auth("ws_admin"),
                ),
                200,
            )
            by_name = {c["name"]: c for c in listed["items"]}
            assert by_name["ops hook"]["events"] == ["backup.failed", "application.overdue"]
            assert by_name["broken hook"]["status"] == "failing"

            await _row(page, "broken hook").get_by_role("button", name="Delete").click()
            await expect(_row(page, "broken hook")).to_have_count(0)
            await expect(_row(page, "ops hook")).to_have_count(1)
        finally:
            await context.close()

    # a member: no tab, no page, and a forged write (with the session's own CSRF token) refused
    context, page = await signed_in(browser, served, world.tokens["member"])
    try:
        await page.goto(f"/ui/workspaces/{workspace}")
        assert await page.get_by_role("link", name="Notifications").count() == 0
        shown = await page.goto(channels)
        assert shown is not None and shown.status == 403
        token = await csrf_of(page)
        ops = by_name["ops hook"]["id"]
        forged = {
            channels: {
                "name": "forged",
                "kind": "webhook",
                "events": "backup.failed",
                "webhook_url": "http://127.0.0.1:9/x",
                "webhook_secret": KEY,
            },
            f"{channels}/{ops}": {"events": "backup.failed"},
            f"{channels}/{ops}/test": {},
            f"{channels}/{ops}/delete": {},
        }
        for url, body in forged.items():
            assert await _forged(context, url, token, body) == 403, url
    finally:
        await context.close()
    # and the admin's session without its CSRF token is refused as every UI form is
    context, page = await signed_in(browser, served, world.tokens["ws_admin"])
    try:
        assert await _forged(context, f"{channels}/{ops}/delete", "0" * 64, {}) == 403
    finally:
        await context.close()

    listed = await expect_status(
        await api.get(
            f"/api/v1/workspaces/{workspace}/notification-channels",
            headers=world.auth("ws_admin"),
        ),
        200,
    )
    assert [(c["name"], c["events"]) for c in listed["items"]] == [
        ("ops hook", ["backup.failed", "application.overdue"])
    ]
    audit = _audit(settings, workspace)
    actions = [a for a, _ in audit if a.startswith("notification_channel.")]
    assert actions == [
        "notification_channel.create",
        "notification_channel.test",
        "notification_channel.create",
        "notification_channel.test",
        "notification_channel.update",
        "notification_channel.delete",
    ]
    assert not any(KEY in details for _, details in audit)
