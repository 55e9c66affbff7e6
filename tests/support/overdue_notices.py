"""What the tests of overdue notices (issue 25) share: a signed webhook channel for them, what
it was told about an application, and one run of the notices workflow as its schedule runs it."""

from __future__ import annotations

import uuid

from temporalio.client import Client

from contracts.task_queues import CONTROL_TASK_QUEUE
from tests.support.api import ApiClient, World, expect
from tests.support.notification_receivers import SignedReceiver
from workflows.overdue_notices import OVERDUE_NOTICES_WORKFLOW


async def add_hook(
    api: ApiClient,
    world: World,
    workspace: str,
    receiver: SignedReceiver,
    name: str,
    events: list[str],
) -> None:
    """A webhook channel of ``workspace`` for ``events``, signed with the receiver's key."""
    assert receiver.key is not None, "a channel's webhook is always signed"
    body = {
        "name": name,
        "kind": "webhook",
        "events": events,
        "url": receiver.url,
        "secret": receiver.key,
    }
    channels = f"/api/v1/workspaces/{workspace}/notification-channels"
    await expect(await api.post(channels, json=body, headers=world.auth("ws_admin")), 201)


def told(receiver: SignedReceiver, app_id: str) -> list[str]:
    """The events the receiver was told about the application, in order."""
    return [e["event"] for e in receiver.events if (e["application"] or {}).get("id") == app_id]


async def run_notices(temporal: Client) -> str:
    """One run of the ``overdue-notices`` schedule's workflow, as the schedule starts it;
    returns its workflow id."""
    workflow_id = f"test-overdue-notices-{uuid.uuid4()}"
    await temporal.execute_workflow(
        OVERDUE_NOTICES_WORKFLOW, id=workflow_id, task_queue=CONTROL_TASK_QUEUE
    )
    return workflow_id
