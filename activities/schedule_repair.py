"""The periodic repair of drift between backup and drill policies and their Temporal Schedules."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from core.settings import Settings
from schedules.reconcile import reconcile_all


class ScheduleActivities:
    def __init__(
        self, client: Client, sessions: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        self.client = client
        self.sessions = sessions
        self.settings = settings

    @activity.defn
    async def reconcile_policy_schedules(self) -> dict[str, Any]:
        return asdict(await reconcile_all(self.client, self.sessions, self.settings))
