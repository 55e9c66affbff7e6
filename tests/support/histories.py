"""Workflow histories recorded from real runs, replayed to guard workflow code changes.

Set CAIRN_RECORD_HISTORIES=1 when running the integration tests to (re)record them.
"""

from __future__ import annotations

import os
from pathlib import Path

from temporalio.client import Client

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


async def record(client: Client, workflow_id: str, name: str) -> None:
    if not os.environ.get("CAIRN_RECORD_HISTORIES"):
        return
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json())
