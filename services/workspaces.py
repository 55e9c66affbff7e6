"""A workspace's plan and backup quota, as the PaaS sets them: the changes that would strand
what the workspace already holds are refused.

Backups live on the Dedicated plan only (``api.deps`` answers 403 ``plan-required`` on every
other). A workspace moved off it while it holds storages or policies could no longer reach
them, and its scheduled backups would fail every night; so the move waits until they are gone.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.states import Plan, has_backups
from db import audit
from db.models import (
    Application,
    AuditEvent,
    BackupPolicy,
    BackupStorage,
    Workspace,
    WorkspaceMember,
)
from db.quota import allocated_gb, lock_workspace
from services.errors import Conflict


def every_workspace() -> Select[Any]:
    """Every workspace, for a page of them (platform administrators)."""
    return select(Workspace)


def applications_of(workspace_id: uuid.UUID) -> Select[Any]:
    """The workspace's applications, for a page of them."""
    return select(Application).where(Application.workspace_id == workspace_id)


async def memberships(session: AsyncSession, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """The workspaces a user belongs to and the role in each, by name."""
    rows = await session.execute(
        select(Workspace, WorkspaceMember.role)
        .join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
        .where(WorkspaceMember.user_id == user_id)
        .order_by(Workspace.name)
    )
    return [
        {"workspace_id": ws.id, "workspace_name": ws.name, "plan": ws.plan, "role": role}
        for ws, role in rows.all()
    ]


def audit_events(
    workspace_id: uuid.UUID, *, action: str = "", actor: str = "", target: str = ""
) -> Select[Any]:
    """The workspace's audit events, for a page of them; each filter given narrows them: the
    exact action, an actor containing ``actor`` (any case), the exact target id."""
    query = select(AuditEvent).where(AuditEvent.workspace_id == workspace_id)
    if action:
        query = query.where(AuditEvent.action == action)
    if actor:
        query = query.where(func.lower(AuditEvent.actor).contains(actor.lower(), autoescape=True))
    if target:
        query = query.where(AuditEvent.target_id == target)
    return query


async def audit_actions(session: AsyncSession, workspace_id: uuid.UUID) -> list[str]:
    """The actions the workspace's audit trail holds (the UI's filter offers them)."""
    actions = await session.scalars(
        audit_events(workspace_id)
        .with_only_columns(AuditEvent.action)
        .distinct()
        .order_by(AuditEvent.action)
    )
    return list(actions)


async def update(
    session: AsyncSession,
    actor: audit.Actor,
    workspace: Workspace,
    *,
    plan: str | None,
    backup_quota_gb: int | None,
) -> None:
    """Sets the fields given, with an audit event; a refusal changes nothing."""
    changes: dict[str, Any] = {
        key: value
        for key, value in (("plan", plan), ("backup_quota_gb", backup_quota_gb))
        if value is not None
    }
    if not changes:
        return
    await lock_workspace(session, workspace.id)
    if backup_quota_gb is not None:
        await _check_quota(session, workspace, backup_quota_gb)
    if plan is not None and plan != workspace.plan and not has_backups(plan):
        await _check_nothing_stranded(session, workspace, plan)
    for key, value in changes.items():
        setattr(workspace, key, value)
    audit.record(
        session,
        actor,
        "workspace.update",
        "workspace",
        workspace.id,
        workspace_id=workspace.id,
        details=changes,
    )


async def _check_quota(session: AsyncSession, workspace: Workspace, quota_gb: int) -> None:
    allocated = await allocated_gb(session, workspace.id)
    if quota_gb < allocated:
        raise Conflict(
            f"the workspace's backup storages already allocate {allocated} GB; a quota of"
            f" {quota_gb} GB is too small (shrink or delete storages first)",
            kind="quota-exceeded",
            title="Quota below allocation",
            quota_gb=quota_gb,
            allocated_gb=allocated,
        )


async def _check_nothing_stranded(session: AsyncSession, workspace: Workspace, plan: str) -> None:
    """Refuses leaving the backup plan while the workspace holds storages or policies,
    naming each so the caller knows what to delete first."""
    storages = (
        await session.execute(
            select(BackupStorage.id, BackupStorage.name)
            .where(BackupStorage.workspace_id == workspace.id)
            .order_by(BackupStorage.name)
        )
    ).all()
    policies = (
        await session.execute(
            select(BackupPolicy.id, Application.id, Application.name)
            .join(Application, BackupPolicy.application_id == Application.id)
            .where(Application.workspace_id == workspace.id)
            .order_by(Application.name)
        )
    ).all()
    if not storages and not policies:
        return
    held = []
    if policies:
        apps = [row[2] for row in policies]
        held.append(f"{_counted(apps, 'backup policy', 'backup policies')} (of {', '.join(apps)})")
    if storages:
        names = [row[1] for row in storages]
        held.append(f"{_counted(names, 'backup storage', 'backup storages')} ({', '.join(names)})")
    raise Conflict(
        f"workspace {workspace.name} holds {' and '.join(held)}, which only the"
        f" '{Plan.DEDICATED}' plan serves; delete the backup policies, then the storages, before"
        f" moving it to the '{plan}' plan",
        kind="plan-in-use",
        title="Plan still in use",
        plan=plan,
        storage_count=len(storages),
        storages=[{"id": str(sid), "name": name} for sid, name in storages],
        policy_count=len(policies),
        policies=[
            {"id": str(pid), "application_id": str(aid), "application_name": name}
            for pid, aid, name in policies
        ],
    )


def _counted(items: list[str], one: str, many: str) -> str:
    return f"{len(items)} {one if len(items) == 1 else many}"


async def hold_backup_plan(session: AsyncSession, workspace_id: uuid.UUID) -> Workspace:
    """Locks the workspace for a new storage or policy and refuses when it has left the
    backup plan meanwhile: a plan change waits for the lock, so it sees what is made here."""
    workspace = await lock_workspace(session, workspace_id)
    if not has_backups(workspace.plan):
        raise Conflict(
            f"the workspace moved to the '{workspace.plan}' plan meanwhile; backups live on the"
            f" '{Plan.DEDICATED}' plan only",
            "plan-required",
            "Dedicated plan required",
        )
    return workspace
