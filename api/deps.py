"""Dependencies every route uses: database session, caller identity, access rules."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from sqlalchemy import ScalarSelect, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from temporalio.client import Client

from api.problems import forbidden, not_found, temporal_unavailable, unauthorized
from api.request_id import current_request_id
from core.settings import Settings
from core.states import has_backups
from core.tokens import hash_token
from db.audit import Actor
from db.models import ApiToken, Application, User, Workspace, WorkspaceMember


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_temporal(request: Request) -> Client:
    try:
        client: Client = await request.app.state.temporal.get()
    except Exception as exc:
        raise temporal_unavailable(
            "the Temporal service cannot be reached", exc, "nothing was changed, retry later"
        ) from exc
    return client


TemporalDep = Annotated[Client, Depends(get_temporal)]


async def get_temporal_if_up(request: Request) -> Client | None:
    """For reads that show what the database holds even while Temporal cannot be reached."""
    try:
        client: Client = await request.app.state.temporal.get()
    except Exception:
        return None
    return client


OptionalTemporalDep = Annotated[Client | None, Depends(get_temporal_if_up)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="a retried POST with the same key returns the same run",
    ),
]


@dataclass(frozen=True)
class Principal:
    user: User
    token_id: uuid.UUID

    @property
    def actor(self) -> Actor:
        return Actor(label=self.user.email, user_id=self.user.id, request_id=current_request_id())


# Writing last_used_at on every request would turn each read into a write.
LAST_USED_GRANULARITY = timedelta(minutes=1)


async def current_principal(
    session: SessionDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    if not authorization:
        raise unauthorized("send an API token as 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be 'Bearer <token>'")
    row = (
        await session.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == hash_token(token.strip()))
        )
    ).one_or_none()
    if row is None or row.ApiToken.revoked_at is not None:
        raise unauthorized("the token is unknown or revoked")
    now = datetime.now(UTC)
    last_used = row.ApiToken.last_used_at
    if last_used is None or now - last_used > LAST_USED_GRANULARITY:
        await session.execute(
            update(ApiToken).where(ApiToken.id == row.ApiToken.id).values(last_used_at=now)
        )
        await session.commit()
    return Principal(user=row.User, token_id=row.ApiToken.id)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def platform_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.user.is_platform_admin:
        raise forbidden("this operation needs a platform administrator")
    return principal


PlatformAdmin = Annotated[Principal, Depends(platform_admin)]


@dataclass(frozen=True)
class WorkspaceAccess:
    principal: Principal
    workspace: Workspace
    role: str | None  # None: a platform admin who is not a member

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" or self.principal.user.is_platform_admin

    def require_admin(self) -> None:
        if not self.is_admin:
            raise forbidden("this operation needs a workspace administrator")

    def require_dedicated(self) -> None:
        if not has_backups(self.workspace.plan):
            raise forbidden(
                f"backups are available on the Dedicated plan; workspace {self.workspace.id}"
                f" is on the '{self.workspace.plan}' plan",
                kind="plan-required",
                title="Dedicated plan required",
            )


def _role_of(
    principal: Principal, workspace_id: InstrumentedAttribute[uuid.UUID]
) -> ScalarSelect[str]:
    """The caller's role in the workspace, as a column to select beside it (None: no member)."""
    return (
        select(WorkspaceMember.role)
        .where(
            WorkspaceMember.workspace_id == workspace_id,
            WorkspaceMember.user_id == principal.user.id,
        )
        .scalar_subquery()
    )


def _visible(principal: Principal, workspace: Workspace | None, role: str | None) -> bool:
    """A workspace is seen by its members and by platform admins; to anyone else it does
    not exist (404, so ids of other tenants are not confirmed)."""
    return workspace is not None and (role is not None or principal.user.is_platform_admin)


async def _workspace_access(
    session: AsyncSession, principal: Principal, workspace_id: uuid.UUID
) -> WorkspaceAccess:
    row = (
        await session.execute(
            select(Workspace, _role_of(principal, Workspace.id)).where(Workspace.id == workspace_id)
        )
    ).one_or_none()
    workspace, role = row if row is not None else (None, None)
    if not _visible(principal, workspace, role):
        raise not_found("workspace", workspace_id)
    assert workspace is not None
    return WorkspaceAccess(principal=principal, workspace=workspace, role=role)


async def workspace_reader(
    workspace_id: Annotated[uuid.UUID, Path()], principal: CurrentPrincipal, session: SessionDep
) -> WorkspaceAccess:
    return await _workspace_access(session, principal, workspace_id)


WorkspaceReader = Annotated[WorkspaceAccess, Depends(workspace_reader)]


async def workspace_admin(access: WorkspaceReader) -> WorkspaceAccess:
    access.require_admin()
    return access


WorkspaceAdmin = Annotated[WorkspaceAccess, Depends(workspace_admin)]


@dataclass(frozen=True)
class ApplicationAccess:
    workspace: WorkspaceAccess
    application: Application

    @property
    def is_owner(self) -> bool:
        return self.application.owner_id == self.workspace.principal.user.id

    @property
    def can_write(self) -> bool:
        return self.is_owner or self.workspace.is_admin


async def application_reader(
    app_id: Annotated[uuid.UUID, Path()], principal: CurrentPrincipal, session: SessionDep
) -> ApplicationAccess:
    """Application, workspace and the caller's role in one query: every read pays for it."""
    row = (
        await session.execute(
            select(Application, Workspace, _role_of(principal, Application.workspace_id))
            .join(Workspace, Workspace.id == Application.workspace_id)
            .where(Application.id == app_id)
        )
    ).one_or_none()
    if row is None or not _visible(principal, row[1], row[2]):
        raise not_found("application", app_id)
    application, workspace, role = row
    access = WorkspaceAccess(principal=principal, workspace=workspace, role=role)
    return ApplicationAccess(workspace=access, application=application)


ApplicationReader = Annotated[ApplicationAccess, Depends(application_reader)]


async def application_writer(access: ApplicationReader) -> ApplicationAccess:
    if not access.can_write:
        raise forbidden("this operation needs the application's owner or a workspace administrator")
    return access


async def dedicated_reader(access: WorkspaceReader) -> WorkspaceAccess:
    access.require_dedicated()
    return access


DedicatedReader = Annotated[WorkspaceAccess, Depends(dedicated_reader)]


async def dedicated_admin(access: DedicatedReader) -> WorkspaceAccess:
    access.require_admin()
    return access


DedicatedAdmin = Annotated[WorkspaceAccess, Depends(dedicated_admin)]


async def dedicated_app_reader(access: ApplicationReader) -> ApplicationAccess:
    access.workspace.require_dedicated()
    return access


DedicatedAppReader = Annotated[ApplicationAccess, Depends(dedicated_app_reader)]


async def dedicated_app_writer(access: DedicatedAppReader) -> ApplicationAccess:
    return await application_writer(access)


DedicatedAppWriter = Annotated[ApplicationAccess, Depends(dedicated_app_writer)]
