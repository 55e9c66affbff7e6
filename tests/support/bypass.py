"""Runs the worker on a request the API never judged: what a registration or request made
before a rule existed leaves behind, so the worker's own checks are what is tested."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from temporalio.client import Client

from contracts.task_queues import CONTROL_TASK_QUEUE
from core.restore_details import RestoreDetails, RestoreSource, StoredTarget
from core.settings import Settings
from tests.support.api import ApiClient, World, wait_for
from tests.support.backups import App, finished
from tests.support.database import libpq_url
from workflows.restore import RestoreWorkflow


async def restore_bypassing_the_api(
    api: ApiClient,
    world: World,
    settings: Settings,
    temporal_client: Client,
    app: App,
    backup: dict[str, Any],
    target: str = "",
    volumes: tuple[str, ...] = (),
    source: RestoreSource | None = None,
) -> dict[str, Any]:
    """What a request made before a rule existed leaves: a row the API never judged, run by
    the worker to its end; the restore as the API shows it then. ``source``: another
    application's backup (``backup``) restored into ``app``."""
    restore_id = str(uuid.uuid4())
    stored = StoredTarget(database_name=target) if target else None
    details = RestoreDetails(not volumes, list(volumes), stored, source=source)
    with psycopg.connect(libpq_url(settings.database_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO backup_restores (id, backup_execution_id, application_id, workflow_id,"
            " status, restore_type, details) VALUES (%s, %s, %s, %s, 'pending', 'selective', %s)",
            (
                restore_id,
                backup["id"],
                app.id,
                f"restore-{restore_id}",
                psycopg.types.json.Jsonb(details.to_dict()),
            ),
        )
    await temporal_client.start_workflow(
        RestoreWorkflow.run,
        args=[restore_id, app.id, app.workspace],
        id=f"restore-{restore_id}",
        task_queue=CONTROL_TASK_QUEUE,
    )
    return await wait_for(
        api,
        f"/api/v1/applications/{app.id}/restores/{restore_id}",
        world.auth("owner"),
        finished,
        seconds=120,
    )


def register_anew(settings: Settings, app: App, key: str, value: str) -> None:
    """Changes one database setting of the application's row (``host``, ``dbname``), as a
    registration accepted by an earlier release left it."""
    with psycopg.connect(libpq_url(settings.database_url), autocommit=True) as conn:
        conn.execute(
            "UPDATE applications SET platform_settings = jsonb_set(platform_settings,"
            " %s, to_jsonb(%s::text)) WHERE id = %s",
            (f"{{database,{key}}}", value, app.id),
        )
