"""Who may make a download link: the application's owner or a workspace administrator, and
never a member (issue 26, docs/downloads.md). The API's routes and the web UI's form both ask
here, so the rule and its audit are the same on both. Every refusal is audited (a member,
another workspace's caller), since a download takes data out of the platform."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ApplicationAccess, Principal, application_reader, dedicated_app_reader
from api.problems import Problem, forbidden
from services import downloads


async def granted(
    session: AsyncSession, principal: Principal, app_id: uuid.UUID
) -> ApplicationAccess:
    """The caller's access to the application when it may make links; else the refusal
    (403, 404…), recorded as ``download.refused`` and committed before it is raised."""
    try:
        access = await dedicated_app_reader(await application_reader(app_id, principal, session))
        if not access.can_write:
            raise forbidden("downloads need the application's owner or a workspace administrator")
    except Problem as exc:
        await downloads.audit_refused_request(session, principal.actor, app_id, exc.detail)
        await session.commit()
        raise
    return access
