"""What a workspace's notification channels are told: the notice a workflow carries.

A notice holds ids, names of events and words, never a secret: the sending step loads each
channel (and opens its secret) itself by the channel's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

CHANNEL_NOTICES_WORKFLOW = "ChannelNoticesWorkflow"

# the events a channel may choose (docs/alerts.md)
Event = Literal[
    "backup.failed",
    "backup.cancelled",
    "backup.recovered",
    "application.overdue",
    "application.recovered",
    "drill.failed",
    "drill.overdue",
    "drill.recovered",
    "offsite.overdue",
    "offsite.recovered",
    "archive.overdue",
    "archive.recovered",
    "archive.slot_lost",
    "storage.nearly_full",
]
EVENTS: tuple[str, ...] = get_args(Event)


@dataclass
class ChannelNotice:
    event: str  # one of EVENTS
    key: str  # what names this notice once: its workflow id follows from it
    workspace_id: str
    application_id: str | None = None
    run_kind: str | None = None  # backup | drill
    run_id: str | None = None
    status: str | None = None
    trigger: str | None = None
    workflow_id: str | None = None
    message: str | None = None
    overdue_since: str | None = None
    occurred_at: str | None = None
    storage_id: str | None = None  # storage.nearly_full of one storage (None: the quota)


@dataclass
class ChannelSend:
    channel_id: str
    notice: ChannelNotice


def notices_workflow_id(notice: ChannelNotice) -> str:
    """One workflow per notice: starting it twice (a retried step) tells nobody twice."""
    return f"channel-notice-{notice.event}-{notice.key}"
