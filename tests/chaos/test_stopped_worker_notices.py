"""Issue 25's acceptance with a stopped worker, in real time: a policy firing every minute
(grace 45 s) whose data side stops serving becomes overdue by itself, nobody can be told while
no worker runs the notices, a worker serving only the control queue (the data queue still
unserved) tells the channel and the platform webhook exactly once, and once more
(``recovered``) after the first success when the whole worker is back. Nothing is backdated."""

from __future__ import annotations

import asyncio
import inspect
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from core.temporal import connect
from db.session import make_engine, make_sessionmaker
from tests.support import overdue_notices
from tests.support.api import expect
from tests.support.backups import make_app
from tests.support.chaos import Stack
from tests.support.notification_receivers import SignedReceiver, verify
from worker.main import build_workers

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

KEY = "whsec-" + secrets.token_hex(16)
GRACE = timedelta(seconds=45)
# a schedule every minute with 45 s to succeed: the test waits minutes, not hours
FAST = {
    "CAIRN_POLICY_MIN_INTERVAL_MINUTES": "1",
    "CAIRN_OVERDUE_GRACE_MIN_MINUTES": "0.75",
    "CAIRN_OVERDUE_NOTICE_MINUTES": "1",
}


async def _until(
    check: Callable[[], bool | Awaitable[bool]],
    seconds: float,
    why: Callable[[], object] = lambda: "",
) -> None:
    """Waits for ``check`` (plain or async) to hold, at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not await _value(check()):
        assert time.monotonic() < deadline, f"not in {seconds} s: {why()}"
        await asyncio.sleep(0.5)


async def test_a_stopped_worker_is_told_once_overdue_and_once_recovered(stack: Stack) -> None:
    settings = stack.settings
    settings.policy_min_interval_minutes = 1  # the API in this process
    settings.overdue_grace_min_minutes = GRACE.total_seconds() / 60
    stack.worker.extra_env.update(FAST)
    stack.replace_worker()
    api, world = stack.api, stack.world
    app = await make_app(
        api, world, stack.pg, stack.app_folder("app"), policy={"schedule": "* * * * *"}
    )
    owner = world.auth("owner")
    application = f"/api/v1/applications/{app.id}"

    async def successes() -> list[dict[str, Any]]:
        listed = await expect(await api.get(f"{app.backups}?limit=100", headers=owner), 200)
        return [b for b in listed["items"] if b["status"] == "succeeded"]

    async def scheduled_success() -> bool:
        return any(b["trigger"] == "schedule" for b in await successes())

    await _until(scheduled_success, 180)
    assert (await expect(await api.get(application, headers=owner), 200))["overdue"] is False

    with SignedReceiver(KEY) as receiver:
        events = ["application.overdue", "application.recovered"]
        await overdue_notices.add_hook(api, world, app.workspace, receiver, "on-call hook", events)

        def told() -> list[str]:
            return overdue_notices.told(receiver, app.id)

        def webhook() -> list[dict[str, Any]]:
            return [e for e in stack.webhook.events if e.get("application_id") == app.id]

        # the worker stops: the schedule keeps firing, nothing runs
        stack.worker.stop()
        last = max(datetime.fromisoformat(b["completed_at"]) for b in await successes())

        async def overdue() -> bool:
            shown = await expect(await api.get(application, headers=owner), 200)
            return bool(shown["overdue"])

        await _until(overdue, 60 + GRACE.total_seconds() + 30)
        standing = await expect(await api.get(application, headers=owner), 200)
        since = datetime.fromisoformat(standing["overdue_since"])
        # the first fire after the last success, plus the grace
        assert last < since <= last + timedelta(minutes=1) + GRACE, (last, since)
        await asyncio.sleep(3)
        assert told() == [] and webhook() == []  # no worker: nobody can be told

        # a worker serving the control queue alone (the data queue still unserved)
        client = await connect(settings)
        engine = make_engine(settings.database_url)
        control = build_workers(client, settings, make_sessionmaker(engine))[0]
        running = asyncio.create_task(control.run())
        try:
            for _ in range(3):
                await overdue_notices.run_notices(client)
            await _until(lambda: told() == ["application.overdue"], 60, told)
            await _until(lambda: len(webhook()) == 1, 60, webhook)
            await asyncio.sleep(3)
            assert told() == ["application.overdue"]
            assert [e["event"] for e in webhook()] == ["backup.overdue"]
            assert datetime.fromisoformat(webhook()[0]["overdue_since"]) == since
            notice = next(e for e in receiver.events if e["event"] == "application.overdue")
            assert datetime.fromisoformat(notice["overdue_since"]) == since
            assert all(verify(KEY, h, r) for h, r in receiver.raw)
        finally:
            await control.shutdown()
            await running
            await engine.dispose()

        # the whole worker back: the waiting backup succeeds, the recovery is told once
        stack.worker.start()

        async def recovered() -> bool:
            return any(datetime.fromisoformat(b["completed_at"]) > since for b in await successes())

        await _until(recovered, 180)
        await _until(
            lambda: told() == ["application.overdue", "application.recovered"],
            150,  # the notices schedule fires every minute
            told,
        )
        await asyncio.sleep(3)
        assert told() == ["application.overdue", "application.recovered"]
        assert [e["event"] for e in webhook()] == ["backup.overdue", "backup.recovered"]
    paused = {"storage_id": app.storage, "schedule": "* * * * *", "enabled": False}
    await expect(await api.post(app.policy, json=paused, headers=owner), 200)


async def _value(result: bool | Awaitable[bool]) -> bool:
    return await result if inspect.isawaitable(result) else result
