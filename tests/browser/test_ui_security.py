"""The web UI's guards, in Chromium: the session cookie, sign-out and expiry, CSRF, members
without write controls whose forged requests are refused, names shown as text, and another
workspace's pages that do not exist for the caller."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from playwright.async_api import Browser, BrowserContext, expect

from core.settings import Settings
from core.tokens import hash_token
from devstack.postgres import PostgresServer
from tests.browser.ui_pages import csrf_of, signed_in
from tests.support.api import ApiClient, World
from tests.support.api import expect as expect_status
from tests.support.backups import App, make_app
from tests.support.database import libpq_url

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("worker")]

SCRIPT = "<script>alert(1)</script>"


def _sql(settings: Settings, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(settings.database_url), autocommit=True) as conn:
        cursor = conn.execute(statement, args)
        return cursor.fetchall() if cursor.description else []


async def _post(
    context: BrowserContext, url: str, token: str | None, form: dict[str, str] | None = None
) -> int:
    """A hand-made POST from the context's session, as a forged request would be."""
    headers = {"X-CSRF-Token": token} if token is not None else {}
    response = await context.request.post(
        url, form=form or {}, headers=headers, max_redirects=0, timeout=15_000
    )
    return response.status


def _pages(app: App) -> tuple[str, ...]:
    """The pages that show an application or its storage by name."""
    return (
        f"/ui/workspaces/{app.workspace}",
        f"/ui/workspaces/{app.workspace}/storages",
        f"/ui/workspaces/{app.workspace}/storages/{app.storage}",
        f"/ui/applications/{app.id}",
        f"/ui/applications/{app.id}/restore",
        f"/ui/applications/{app.id}/retention",
    )


async def _backups(api: ApiClient, world: World, app: App) -> list[Any]:
    body = await expect_status(await api.get(app.backups, headers=world.auth("owner")), 200)
    return list(body["items"])


@pytest.fixture
async def app(api: ApiClient, world: World, database_server: PostgresServer, tmp_path: Path) -> App:
    """An application with a storage and a policy: every write control has something to act on."""
    return await make_app(api, world, database_server, tmp_path)


async def test_session_cookie_sign_out_and_expiry(
    browser: Browser, served: str, world: World, settings: Settings, screenshots: Path
) -> None:
    context = await browser.new_context(base_url=served)
    page = await context.new_page()
    try:
        response = await page.goto("/ui/workspaces/" + world.workspaces["a"])
        assert response is not None and "/ui/sign-in" in page.url
        await page.fill("input[name=token]", "cairn_not-a-token")
        await page.click("button[type=submit]")
        await expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
        await page.screenshot(path=screenshots / "ui-sign-in.png", full_page=True)
    finally:
        await context.close()

    context, page = await signed_in(browser, served, world.tokens["member"])
    try:
        cookie = next(c for c in await context.cookies() if c["name"] == "cairn_session")
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["secure"] is False  # plain HTTP here; Secure whenever the request is HTTPS
        assert cookie["path"] == "/ui"
        # only the hash is stored
        stored = _sql(
            settings,
            "SELECT id_hash FROM ui_sessions WHERE id_hash = %s",
            hash_token(cookie["value"]),
        )
        assert stored == [(hash_token(cookie["value"]),)]
        assert _sql(settings, "SELECT 1 FROM ui_sessions WHERE id_hash = %s", cookie["value"]) == []

        # signing in again in the same browser replaces the session
        await page.goto("/ui/sign-in")
        await page.fill("input[name=token]", world.tokens["member"])
        await page.click("button[type=submit]")
        await page.wait_for_url(lambda url: "/ui/sign-in" not in url)
        renewed = next(c for c in await context.cookies() if c["name"] == "cairn_session")
        assert renewed["value"] != cookie["value"]
        assert (
            _sql(
                settings,
                "SELECT 1 FROM ui_sessions WHERE id_hash = %s",
                hash_token(cookie["value"]),
            )
            == []
        )
        cookie = renewed
        await page.click("text=Sign out")
        await page.wait_for_url("**/ui/sign-in")
        assert (
            _sql(
                settings,
                "SELECT 1 FROM ui_sessions WHERE id_hash = %s",
                hash_token(cookie["value"]),
            )
            == []
        )
        assert not [c for c in await context.cookies() if c["name"] == "cairn_session"]
        audited = _sql(
            settings,
            "SELECT action, details::text FROM audit_events WHERE"
            " target_id = %s AND action LIKE 'ui.%%' ORDER BY occurred_at",
            world.users["member"],
        )
        assert [a for a, _ in audited][-3:] == ["ui.sign_in", "ui.sign_in", "ui.sign_out"]
        assert not any(cookie["value"] in d or hash_token(cookie["value"]) in d for _, d in audited)
        # the old cookie, replayed, opens nothing
        await context.add_cookies([{**cookie}])  # type: ignore[list-item]
        await page.goto("/ui")
        assert "/ui/sign-in" in page.url
    finally:
        await context.close()

    context, page = await signed_in(browser, served, world.tokens["member"])
    try:
        cookie = next(c for c in await context.cookies() if c["name"] == "cairn_session")
        _sql(
            settings,
            "UPDATE ui_sessions SET expires_at = now() - interval '1 second' WHERE id_hash = %s",
            hash_token(cookie["value"]),
        )
        await page.goto("/ui")
        assert "/ui/sign-in" in page.url  # expired
    finally:
        await context.close()


async def test_a_revoked_token_ends_its_sessions(
    browser: Browser, served: str, api: ApiClient, world: World
) -> None:
    root = world.auth("platform_admin")
    issued = await expect_status(
        await api.post(
            f"/api/v1/admin/users/{world.users['member']}/tokens", json={}, headers=root
        ),
        201,
    )
    context, page = await signed_in(browser, served, issued["token"])
    try:
        await expect_status(
            await api.delete(f"/api/v1/admin/tokens/{issued['id']}", headers=root), 204
        )
        await page.goto("/ui")
        assert "/ui/sign-in" in page.url
    finally:
        await context.close()


async def test_member_sees_no_write_controls_and_is_refused(
    browser: Browser, served: str, api: ApiClient, world: World, app: App, screenshots: Path
) -> None:
    context, page = await signed_in(browser, served, world.tokens["member"])
    try:
        await page.goto(f"/ui/applications/{app.id}")
        await expect(page.get_by_role("heading", name="Backup policy")).to_be_visible()
        await expect(page.get_by_test_id("schedule-preview").locator("li")).to_have_count(5)
        for control in ("Save policy", "Run now", "Restore…"):
            assert await page.get_by_text(control).count() == 0, control
        assert await page.locator("form[method=post]").count() == 1  # sign-out only
        await page.screenshot(path=screenshots / "ui-application-member.png", full_page=True)
        await page.goto(f"/ui/workspaces/{app.workspace}/storages")
        assert await page.get_by_text("Create storage").count() == 0
        await page.goto(f"/ui/workspaces/{app.workspace}/storages/{app.storage}")
        assert await page.get_by_text("Delete storage").count() == 0
        assert await page.locator("form[method=post]").count() == 1
        assert await page.get_by_role("link", name="Audit log").count() == 0
        audit = await page.goto(f"/ui/workspaces/{app.workspace}/audit")
        assert audit is not None and audit.status == 403

        token = await csrf_of(page)
        before = await _backups(api, world, app)
        policy = {
            "storage_id": app.storage,
            "schedule": "0 4 * * *",
            "timezone": "UTC",
            "retention_days": "5",
            "backup_type": "full",
            "paused": "on",
        }
        refused = {
            f"/ui/applications/{app.id}/run": {},
            f"/ui/applications/{app.id}/policy": policy,
            f"/ui/applications/{app.id}/restore": {
                "backup_id": str(uuid.uuid4()),
                "restore_type": "full",
            },
            f"/ui/applications/{app.id}/restore-to-time": {
                "target_time": "latest",
                "moment_target": "in_place",
                "confirm": "forged",
            },
            f"/ui/workspaces/{app.workspace}/storages": {
                "name": "forged",
                "type": "local",
                "capacity_gb": "1",
            },
            f"/ui/workspaces/{app.workspace}/storages/{app.storage}": {
                "name": "renamed",
                "capacity_gb": "2",
            },
            f"/ui/workspaces/{app.workspace}/storages/{app.storage}/delete": {"force": "true"},
            f"/ui/applications/{app.id}/backups/{uuid.uuid4()}/protection": {"protect": "true"},
            f"/ui/applications/{app.id}/backups/{uuid.uuid4()}/cancel": {},
        }
        for url, form in refused.items():
            assert await _post(context, url, token, form) == 403, url
        assert await _backups(api, world, app) == before
        policy_now = await expect_status(
            await api.get(app.policy, headers=world.auth("owner")), 200
        )
        assert policy_now["schedule"] == "0 3 * * *" and policy_now["enabled"] is True
        storage = await expect_status(
            await api.get(
                f"/api/v1/workspaces/{app.workspace}/backup-storages/{app.storage}",
                headers=world.auth("ws_admin"),
            ),
            200,
        )
        assert (storage["name"], storage["capacity_gb"], storage["status"]) == (
            "main",
            10,
            "active",
        )
    finally:
        await context.close()


async def test_writes_without_the_sessions_csrf_token_are_refused(
    browser: Browser, served: str, api: ApiClient, world: World, app: App
) -> None:
    context, page = await signed_in(browser, served, world.tokens["owner"])
    other, other_page = await signed_in(browser, served, world.tokens["owner"])
    try:
        await page.goto(f"/ui/applications/{app.id}")
        token = await csrf_of(page)
        other_token = await csrf_of(other_page)
        assert token != other_token  # bound to the session
        run = f"/ui/applications/{app.id}/run"
        assert await _post(context, run, None) == 403
        assert await _post(context, run, "") == 403
        assert await _post(context, run, "0" * 64) == 403
        assert await _post(context, run, other_token) == 403
        assert (
            await _post(
                context,
                f"/ui/applications/{app.id}/policy",
                None,
                {"csrf_token": other_token, "storage_id": app.storage, "schedule": "0 5 * * *"},
            )
            == 403
        )
        assert await _post(context, "/ui/sign-out", None) == 403
        # with the token, a malformed backup id is simply not found
        bad = {"backup_id": "not-an-id", "restore_type": "full"}
        assert await _post(context, f"/ui/applications/{app.id}/restore", token, bad) == 404
        assert await _backups(api, world, app) == []
        # signing in needs the form's own token too (its pre-session cookie)
        async with httpx.AsyncClient(base_url=served) as client:
            answer = await client.post("/ui/sign-in", data={"token": world.tokens["owner"]})
        assert answer.status_code == 403
        assert "set-cookie" not in answer.headers
        # the page's own Run now (htmx, token in hx-headers) is accepted
        await page.click("text=Run now")
        await page.wait_for_url("**/backups/**")
        assert len(await _backups(api, world, app)) == 1
    finally:
        await context.close()
        await other.close()


async def test_names_render_as_text(
    browser: Browser,
    served: str,
    api: ApiClient,
    world: World,
    app: App,
    settings: Settings,
    screenshots: Path,
) -> None:
    """The API refuses such names (slugs), but a page must not trust that: it escapes them."""
    root = world.auth("platform_admin")
    user = await expect_status(
        await api.post(
            "/api/v1/admin/users",
            headers=root,
            json={"email": f"x-{uuid.uuid4().hex[:6]}@example.com", "name": SCRIPT},
        ),
        201,
    )
    issued = await expect_status(
        await api.post(f"/api/v1/admin/users/{user['id']}/tokens", json={}, headers=root), 201
    )
    await expect_status(
        await api.post(
            f"/api/v1/workspaces/{app.workspace}/members",
            headers=root,
            json={"user_id": user["id"], "role": "admin"},
        ),
        201,
    )
    _sql(settings, "UPDATE applications SET name = %s WHERE id = %s", SCRIPT, app.id)
    _sql(settings, "UPDATE backup_storages SET name = %s WHERE id = %s", SCRIPT, app.storage)
    context, page = await signed_in(browser, served, issued["token"])
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    try:
        for url in _pages(app):
            response = await page.goto(url)
            assert response is not None and response.status == 200, url
            await expect(page.get_by_text(SCRIPT).first).to_be_visible()
            html = await response.text()  # as the server sent it
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
            assert SCRIPT not in html
        await page.goto(f"/ui/workspaces/{app.workspace}")
        await page.screenshot(path=screenshots / "ui-names-as-text.png", full_page=True)
        assert dialogs == []
    finally:
        await context.close()


async def test_another_workspaces_pages_answer_not_found(
    browser: Browser, served: str, world: World, app: App
) -> None:
    context, page = await signed_in(browser, served, world.tokens["other_admin"])
    try:
        token = await csrf_of(page)
        for url in (
            *_pages(app),
            f"/ui/workspaces/{app.workspace}/audit",
            f"/ui/applications/{uuid.uuid4()}",
        ):
            response = await page.goto(url)
            assert response is not None and response.status == 404, url
            await expect(page.get_by_test_id("problem")).to_contain_text("does not exist")
        assert await _post(context, f"/ui/applications/{app.id}/run", token) == 404
        assert (
            await _post(
                context, f"/ui/workspaces/{app.workspace}/storages/{app.storage}/delete", token
            )
            == 404
        )
    finally:
        await context.close()


async def test_root_redirects_to_the_ui(served: str) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        response = await client.get("/")
        assert (response.status_code, response.headers["location"]) == (307, "/ui")
        signed_out = await client.get("/ui")
        assert (signed_out.status_code, signed_out.headers["location"]) == (
            303,
            "/ui/sign-in?next=%2Fui",
        )


async def test_a_free_plan_workspace_says_backups_need_the_dedicated_plan(
    browser: Browser, served: str, world: World
) -> None:
    context, page = await signed_in(browser, served, world.tokens["free_admin"])
    try:
        await page.goto(f"/ui/workspaces/{world.workspaces['free']}")
        await expect(
            page.get_by_text("Backups are available on the Dedicated plan")
        ).to_be_visible()
        assert await page.get_by_role("link", name="Storages").count() == 0
        storages = await page.goto(f"/ui/workspaces/{world.workspaces['free']}/storages")
        assert storages is not None and storages.status == 403
        await expect(page.get_by_test_id("problem")).to_contain_text("Dedicated plan")
        app = await page.goto(f"/ui/applications/{world.apps['free']}")
        assert app is not None and app.status == 403
    finally:
        await context.close()
