"""The web UI while Temporal cannot be reached: pages still show what the database holds and
say what is missing; starting work answers the API's 503 in words and records nothing."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from core.settings import Settings
from devstack.postgres import PostgresServer
from tests.conftest import free_port
from tests.support.api import ApiClient, World
from tests.support.backups import App, make_app, run_backup

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("worker")]


@contextlib.asynccontextmanager
async def _ui_without_temporal(settings: Settings, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """A second cairn on the same database whose Temporal address answers nothing, signed in
    through the real form."""
    nowhere = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    app = create_app(nowhere)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://cairn.test", timeout=30
        ) as client:
            await client.get("/ui/sign-in")
            csrf = client.cookies["cairn_sign_in_csrf"]
            signed = await client.post("/ui/sign-in", data={"token": token, "csrf_token": csrf})
            assert signed.status_code == 303, signed.text
            yield client


async def test_pages_without_temporal(
    api: ApiClient,
    world: World,
    settings: Settings,
    database_server: PostgresServer,
    tmp_path: Path,
) -> None:
    app: App = await make_app(api, world, database_server, tmp_path)
    backup = await run_backup(api, world, app)
    async with _ui_without_temporal(settings, world.tokens["owner"]) as ui:
        page = await ui.get(f"/ui/applications/{app.id}")
        assert page.status_code == 200
        assert "Temporal cannot be reached" in page.text
        assert "At 03:00" in page.text  # the schedule from the database, in words
        detail = await ui.get(f"/ui/applications/{app.id}/backups/{backup['id']}")
        assert detail.status_code == 200
        assert "Temporal cannot be reached; the run&#39;s steps are not shown" in detail.text
        overview = await ui.get(f"/ui/workspaces/{app.workspace}")
        assert overview.status_code == 200 and "protected" in overview.text

        found = re.search(r'"X-CSRF-Token": "([0-9a-f]{64})"', page.text)
        assert found is not None
        token = found.group(1)
        run = await ui.post(
            f"/ui/applications/{app.id}/run",
            headers={"X-CSRF-Token": token, "HX-Request": "true"},
        )
        assert run.status_code == 503
        assert "the Temporal service cannot be reached" in run.text
    listed = (await api.get(app.backups, headers=world.auth("owner"))).json()["items"]
    assert [b["id"] for b in listed] == [backup["id"]]
