"""Bodies of the registry: users, tokens, workspaces, members, me, audit events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, StrictBool, StrictInt

from api.schemas.common import DisplayName, Email, Input, Output, Slug
from core.states import Plan

Role = Literal["admin", "member"]


class UserCreate(Input):
    email: Email
    name: DisplayName
    is_platform_admin: StrictBool = False


class UserOut(Output):
    id: uuid.UUID
    email: str
    name: str
    is_platform_admin: bool
    created_at: datetime


class TokenCreate(Input):
    name: DisplayName = "default"


class TokenOut(Output):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


class TokenIssued(TokenOut):
    token: str = Field(description="shown only in this answer; cairn stores only its hash")


class WorkspaceCreate(Input):
    name: Slug
    plan: Plan = Plan.FREE
    backup_quota_gb: StrictInt = Field(default=0, ge=0, le=1_000_000)


class WorkspaceUpdate(Input):
    plan: Plan | None = None
    backup_quota_gb: StrictInt | None = Field(default=None, ge=0, le=1_000_000)


class WorkspaceOut(Output):
    id: uuid.UUID
    name: str
    plan: str
    backup_quota_gb: int
    created_at: datetime
    updated_at: datetime


class MemberCreate(Input):
    user_id: uuid.UUID
    role: Role


class MemberOut(Output):
    workspace_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    created_at: datetime


class Membership(Output):
    workspace_id: uuid.UUID
    workspace_name: str
    plan: str
    role: str


class MeOut(Output):
    user: UserOut
    memberships: list[Membership]


class AuditEventOut(Output):
    id: uuid.UUID
    occurred_at: datetime
    actor: str
    actor_user_id: uuid.UUID | None
    workspace_id: uuid.UUID | None
    action: str
    target_type: str
    target_id: str
    request_id: str | None
    details: dict[str, Any]
