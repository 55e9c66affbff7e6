"""The first platform admin, so a fresh installation can be driven through its own API."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.tokens import hash_token, new_token
from db import audit
from db.models import ApiToken, User

SYSTEM = audit.Actor(label="system:bootstrap")


async def create_admin(session: AsyncSession, email: str, name: str = "Platform admin") -> str:
    """Creates (or reuses) the admin user and issues a new token; returns the token."""
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, name=name, is_platform_admin=True)
        session.add(user)
        await session.flush()
        audit.record(session, SYSTEM, "user.create", "user", user.id, details={"email": email})
    token = new_token()
    row = ApiToken(user_id=user.id, name="bootstrap", token_hash=hash_token(token))
    session.add(row)
    await session.flush()
    audit.record(
        session, SYSTEM, "token.issue", "api_token", row.id, details={"user_id": str(user.id)}
    )
    await session.commit()
    return token
