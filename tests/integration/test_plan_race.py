"""A storage or policy made while the workspace leaves the backup plan (issue 21).

The request loaded its workspace (Dedicated) before a concurrent plan change committed; the
storage and policy rules lock the workspace and read it afresh, so they see the new plan and
refuse, and the plan change, which waits for the same lock, never strands what they made.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from core.settings import Settings
from db.models import Workspace
from db.session import make_engine, make_sessionmaker
from services import workspaces
from services.errors import Conflict
from tests.support.api import ApiClient, World, new_workspace
from tests.support.database import libpq_url

pytestmark = pytest.mark.integration


async def test_a_plan_left_meanwhile_is_seen_under_the_lock(
    api: ApiClient, world: World, settings: Settings
) -> None:
    workspace_id = uuid.UUID(await new_workspace(api, world))
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            loaded = await session.get(Workspace, workspace_id)  # as the request's deps did
            assert loaded is not None and loaded.plan == "dedicated"
            with psycopg.connect(libpq_url(settings.database_url), autocommit=True) as conn:
                conn.execute("UPDATE workspaces SET plan = 'free' WHERE id = %s", (workspace_id,))
            with pytest.raises(Conflict, match="moved to the 'free' plan meanwhile"):
                await workspaces.hold_backup_plan(session, workspace_id)
            await session.rollback()
    finally:
        await engine.dispose()
