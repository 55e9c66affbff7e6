"""Where an application's offsite repository lives at a target, and the keys that open it.

Each application has one repository per target, at ``{url}/workspaces/{workspace
id}/applications/{application id}`` (the primary's relative path), with its own random
password sealed in ``offsite_repositories``. The target's everyday credentials (append only)
and its maintenance credentials (sealed apart, at the maintenance URL) open the same
repository; only offsite retention asks for the maintenance ones.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.restic_remote import Remote
from core import crypto, secret_contexts
from core.settings import Settings
from db.models import Application, OffsiteRepository, OffsiteTarget

SOURCE_KEY: Final = "offsite_target_id"
"""The key of a restore's details naming the target whose copy it reads, not the primary."""


CHOSEN_KEY: Final = "offsite_chosen"
"""The key of a scheduled drill's details saying which backup it read from a copy and why."""


def offsite_source(details: Mapping[str, Any] | None) -> uuid.UUID | None:
    """The target a restore reads its backup from; None: the primary storage."""
    raw = (details or {}).get(SOURCE_KEY)
    return uuid.UUID(raw) if raw else None


def open_credentials(settings: Settings, target: OffsiteTarget) -> dict[str, Any]:
    """The everyday credentials: what copies and restores use."""
    return crypto.open_json(
        target.credentials_sealed,
        master_key=settings.master_key_text,
        context=secret_contexts.offsite_credentials(target.id),
    )


def seal_credentials(settings: Settings, target: OffsiteTarget, value: dict[str, Any]) -> None:
    target.credentials_sealed = crypto.seal_json(
        value,
        master_key=settings.master_key_text,
        context=secret_contexts.offsite_credentials(target.id),
    )


def seal_maintenance(settings: Settings, target: OffsiteTarget, value: dict[str, Any]) -> None:
    target.maintenance_sealed = crypto.seal_json(
        value,
        master_key=settings.master_key_text,
        context=secret_contexts.offsite_maintenance(target.id),
    )


def relative(application: Application) -> tuple[str, ...]:
    return ("workspaces", str(application.workspace_id), "applications", str(application.id))


async def repository_password(
    session: AsyncSession, settings: Settings, application: Application, target: OffsiteTarget
) -> str:
    """The application's repository password at ``target``; the first caller creates it."""
    context = secret_contexts.offsite_repository_password(application.id, target.id)
    await session.execute(
        insert(OffsiteRepository)
        .values(
            application_id=application.id,
            target_id=target.id,
            password_sealed=crypto.seal(
                secrets.token_urlsafe(32).encode(),
                master_key=settings.master_key_text,
                context=context,
            ),
        )
        .on_conflict_do_nothing(index_elements=["application_id", "target_id"])
    )
    await session.commit()
    sealed = await session.scalar(
        select(OffsiteRepository.password_sealed).where(
            OffsiteRepository.application_id == application.id,
            OffsiteRepository.target_id == target.id,
        )
    )
    assert sealed is not None
    return crypto.open_sealed(sealed, master_key=settings.master_key_text, context=context).decode()


async def everyday_remote(
    session: AsyncSession, settings: Settings, application: Application, target: OffsiteTarget
) -> Remote:
    """The application's repository at ``target`` with the everyday (append-only) credentials."""
    credentials = open_credentials(settings, target)
    password = await repository_password(session, settings, application, target)
    base = Remote(
        target.location["url"],
        credentials["username"],
        credentials["password"],
        password,
        target.kind,
    )
    return base.at(*relative(application))


async def maintenance_remote(
    session: AsyncSession, settings: Settings, application: Application, target: OffsiteTarget
) -> Remote | None:
    """The same repository with the maintenance credentials; None when the target has none."""
    if target.maintenance_sealed is None:
        return None
    maintenance = crypto.open_json(
        target.maintenance_sealed,
        master_key=settings.master_key_text,
        context=secret_contexts.offsite_maintenance(target.id),
    )
    password = await repository_password(session, settings, application, target)
    url = target.location.get("maintenance_url") or target.location["url"]
    base = Remote(url, maintenance["username"], maintenance["password"], password, target.kind)
    return base.at(*relative(application))
