"""Every policy schedule repaired in one pass, for the periodic workflow and the operator CLI."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from core.settings import Settings
from schedules import archiver, backup_policy, drill_policy
from schedules.backup_policy import ReconcileReport


async def reconcile_all(
    client: Client, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> ReconcileReport:
    """Backup schedules, drill schedules, then archivers, into one report of what changed."""
    report = await backup_policy.reconcile(client, sessions, settings)
    report = await drill_policy.reconcile(client, sessions, settings, report)
    report.created.extend(await archiver.reconcile(client, sessions))
    return report
