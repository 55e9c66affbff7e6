"""``cairn admin bootstrap``: the first platform admin of a real deployment.

``cairn dev`` makes one for itself; a deployment (containers, a host) has no admin to issue
the first token through the API, so this reads the database directly, once: it refuses while
any platform admin exists, so it cannot be used to mint tokens later on.
"""

from __future__ import annotations

import asyncio

import click
from sqlalchemy import select, text

from core.settings import get_settings
from db.bootstrap import create_admin
from db.models import User
from db.session import make_engine, make_sessionmaker


class AdminExists(click.ClickException):
    """A platform admin is there already: new tokens come from the API."""


async def first_admin(database_url: str, email: str, name: str) -> str:
    """Creates the platform admin and its token; refuses if there is one already."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            # two bootstraps at once: the second waits here, then sees the first's admin
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('cairn-bootstrap'))"))
            existing = await session.scalar(
                select(User.email).where(User.is_platform_admin.is_(True)).limit(1)
            )
            if existing is not None:
                raise AdminExists(
                    f"a platform admin exists already ({existing}); issue tokens through the API:"
                    " cairn admin users token <userId>"
                )
            return await create_admin(session, email, name)
    finally:
        await engine.dispose()


@click.command()
@click.option("--email", required=True, help="the admin's e-mail address (their login name)")
@click.option("--name", default="Platform admin", show_default=True, help="display name")
def bootstrap(email: str, name: str) -> None:
    """Create the first platform admin and print its token once (reads the database).

    Needs CAIRN_DATABASE_URL; refuses when a platform admin exists already. Store the token
    safely: it is not shown again.
    """
    token = asyncio.run(first_admin(get_settings().database_url, email, name))
    click.echo(f"created platform admin {email}; its token (shown only this once):", err=True)
    click.echo(token)
