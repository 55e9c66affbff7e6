"""``cairn admin repo-password``: the restic password of an application, for recovery by hand.

It reads the database and the master key directly (so the password never crosses the
API), demands a platform admin's token, and writes an audit event.
"""

from __future__ import annotations

import asyncio
import uuid

import click
from sqlalchemy import select
from sqlalchemy.engine import make_url

from core.settings import get_settings
from core.tokens import hash_token
from db import audit
from db.models import ApiToken, Application, BackupRepository, User
from db.session import make_engine, make_sessionmaker
from repository.store import read_password


async def reveal(token: str, application_id: uuid.UUID) -> list[tuple[str, str]]:
    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            user = await session.scalar(
                select(User)
                .join(ApiToken, ApiToken.user_id == User.id)
                .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
            )
            if user is None or not user.is_platform_admin:
                raise click.ClickException(
                    "this needs a platform admin token of the installation whose database is"
                    f" {make_url(settings.database_url).render_as_string(hide_password=True)};"
                    " set CAIRN_DATABASE_URL and CAIRN_MASTER_KEY as the worker has them (next to"
                    " cairn dev they are read from .cairn/cairn.env)"
                )
            application = await session.get(Application, application_id)
            if application is None:
                raise click.ClickException(f"application {application_id} does not exist")
            rows = (
                await session.scalars(
                    select(BackupRepository).where(
                        BackupRepository.application_id == application_id
                    )
                )
            ).all()
            if not rows:
                raise click.ClickException("the application has no backup repository yet")
            audit.record(
                session,
                audit.Actor(label=user.email, user_id=user.id),
                "repository.password_reveal",
                "application",
                application_id,
                workspace_id=application.workspace_id,
                details={"repositories": [r.path for r in rows], "via": "cli"},
            )
            await session.commit()
            return [(row.path, read_password(settings, row)) for row in rows]
    finally:
        await engine.dispose()


def print_passwords(token: str, application_id: str) -> None:
    try:
        app_id = uuid.UUID(application_id)
    except ValueError:
        raise click.BadParameter("must be an application id (UUID)") from None
    found = asyncio.run(reveal(token, app_id))  # no database, wrong key: cli.operator says so
    for path, password in found:
        click.echo(f"repository: {path}")
        click.echo(f"password:   {password}")
