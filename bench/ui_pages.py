"""How fast the web UI's pages render with real history: 50 applications in a workspace and
1,000 backups of one application (issue 12).

The pages are served in-process (ASGI, no network) by the real app against a migrated
PostgreSQL database and a Temporal dev server; the history is inserted as rows. Each page is
timed against the API's own JSON list of the same data, fetched in the same run, so the ratio
says what the page adds over the query it is built on.

    .venv/bin/python -m bench.ui_pages [--apps 50] [--backups 1000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.crypto import generate_master_key
from core.search_attributes import SEARCH_ATTRIBUTE_KEYS
from core.settings import Settings
from db import migrate
from db.bootstrap import create_admin
from db.models import (
    Application,
    BackupExecution,
    BackupPolicy,
    BackupStorage,
    User,
    Workspace,
    WorkspaceMember,
)
from devstack.postgres import running_server
from devstack.temporal import cli_path


async def _seed(app: object, apps: int, backups: int) -> tuple[str, uuid.UUID, uuid.UUID]:
    """An admin's token, a workspace of ``apps`` applications and the first one's history."""
    sessions = app.state.sessions  # type: ignore[attr-defined]
    async with sessions() as session:
        email = f"bench-{uuid.uuid4().hex[:6]}@cairn.test"
        token = await create_admin(session, email)
        admin = await session.scalar(select(User).where(User.email == email))
        assert admin is not None
        workspace = Workspace(
            name=f"bench-{uuid.uuid4().hex[:6]}", plan="dedicated", backup_quota_gb=1000
        )
        session.add(workspace)
        await session.flush()
        session.add(WorkspaceMember(workspace_id=workspace.id, user_id=admin.id, role="admin"))
        storage = BackupStorage(
            workspace_id=workspace.id,
            name="main",
            type="local",
            status="active",
            proxmox_storage_id=f"cairn-{uuid.uuid4().hex[:16]}",
            capacity_gb=500,
        )
        session.add(storage)
        await session.flush()
        now = datetime.now(UTC)
        first = None
        for index in range(apps):
            application = Application(
                workspace_id=workspace.id,
                owner_id=admin.id,
                name=f"app-{index:03d}",
                platform_kind="local",
                platform_settings={"volumes": {"data": "/srv/x"}},
            )
            session.add(application)
            await session.flush()
            first = first or application
            policy = BackupPolicy(
                application_id=application.id,
                storage_id=storage.id,
                schedule="0 3 * * *",
                include_database=False,
            )
            session.add(policy)
            await session.flush()
            count = backups if application is first else 20
            for n in range(count):
                started = now - timedelta(hours=6 * n + 1)
                failed = n % 50 == 7
                session.add(
                    BackupExecution(
                        policy_id=policy.id,
                        application_id=application.id,
                        storage_id=storage.id,
                        workflow_id=f"backup-{uuid.uuid4()}",
                        trigger="schedule",
                        status="failed" if failed else "succeeded",
                        started_at=started,
                        completed_at=started + timedelta(seconds=30 + n % 90),
                        size_bytes=None if failed else 50_000_000 + n * 10_000,
                        error_message="dump_database: connection refused" if failed else None,
                        created_at=started,
                    )
                )
        await session.commit()
        assert first is not None
        return token, workspace.id, first.id


async def _timed(fetch: Callable[[], Awaitable[httpx.Response]], rounds: int) -> list[float]:
    """Times of ``rounds + 1`` fetches; the first is cold (templates compiled, caches empty)."""
    times = []
    for _ in range(rounds + 1):
        start = time.perf_counter()
        response = await fetch()
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, (response.status_code, response.text[:500])
    return times


def _row(label: str, page: list[float], api: list[float]) -> str:
    """Cold time, then median and p95 of the warm ones (ms), the API's median and the ratio."""
    median, base = statistics.median(page[1:]), statistics.median(api[1:])
    p95 = statistics.quantiles(page[1:], n=20)[-1]
    return (
        f"{label:44} {page[0] * 1000:8.1f} {median * 1000:10.1f} {p95 * 1000:8.1f}"
        f" {base * 1000:8.1f} {median / base:6.2f}"
    )


async def main(apps: int, backups: int, rounds: int) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="cairn-bench-ui-") as tmp,
        running_server(Path(tmp)) as pg,
    ):
        dbname = f"bench_ui_{uuid.uuid4().hex[:8]}"
        pg.create_database(dbname)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=cli_path(),
            search_attributes=SEARCH_ATTRIBUTE_KEYS,
            dev_server_log_level="error",
        )
        try:
            await asyncio.to_thread(migrate.upgrade, pg.url(dbname))
            settings = Settings(
                database_url=pg.url(dbname),
                master_key=generate_master_key(),
                temporal_address=env.client.service_client.config.target_host,
                temporal_namespace=env.client.namespace,
            )
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                token, workspace, first = await _seed(app, apps, backups)
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://ui") as ui:
                    await ui.get("/ui/sign-in")
                    csrf = ui.cookies["cairn_sign_in_csrf"]
                    signed = await ui.post("/ui/sign-in", data={"token": token, "csrf_token": csrf})
                    assert signed.status_code == 303, signed.text
                    bearer = {"Authorization": f"Bearer {token}"}
                    pairs = {
                        f"overview ({apps} applications)": (
                            f"/ui/workspaces/{workspace}",
                            f"/api/v1/workspaces/{workspace}/applications?limit=100",
                        ),
                        f"application ({backups} backups, first page)": (
                            f"/ui/applications/{first}",
                            f"/api/v1/applications/{first}/backups?limit=25",
                        ),
                        "backups chart (last 200 successes)": (
                            f"/ui/applications/{first}/chart.svg",
                            f"/api/v1/applications/{first}/backups?limit=200&status=succeeded",
                        ),
                        "restore wizard (50 backups listed)": (
                            f"/ui/applications/{first}/restore",
                            f"/api/v1/applications/{first}/backups?limit=50&status=succeeded",
                        ),
                        "audit log (50 events)": (
                            f"/ui/workspaces/{workspace}/audit",
                            f"/api/v1/workspaces/{workspace}/audit-events?limit=50",
                        ),
                    }
                    print(
                        f"{'page':44} {'cold ms':>8} {'median ms':>10} {'p95 ms':>8}"
                        f" {'API ms':>8} {'ratio':>6}"
                    )
                    for label, (page, api) in pairs.items():
                        ui_times = await _timed(partial(ui.get, page), rounds)
                        api_times = await _timed(partial(ui.get, api, headers=bearer), rounds)
                        print(_row(label, ui_times, api_times))
        finally:
            await env.shutdown()
            pg.drop_database(dbname)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--backups", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.apps, args.backups, args.rounds))
