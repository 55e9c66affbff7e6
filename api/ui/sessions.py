"""Web UI sign-in: an API token pasted once becomes a server session behind a cookie.

The cookie holds 256 random bits; the ``ui_sessions`` table holds only their SHA-256, so a
copy of the database cannot be replayed as a cookie. A session ends at its expiry
(``CAIRN_UI_SESSION_HOURS``), at sign-out, or as soon as its API token is revoked: every
request checks the token again, so the UI never outlives the API's decision.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request, Response
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Principal
from core.settings import Settings
from core.tokens import hash_token
from db import audit
from db.models import ApiToken, UiSession, User

COOKIE = "cairn_session"


@dataclass(frozen=True)
class SignedIn:
    """The caller of a UI request: the API's principal plus the session's own secret."""

    principal: Principal
    session_id: str


class SignInRequired(Exception):
    """No valid session: the UI answers with the sign-in page (or tells htmx to go there)."""


def set_cookie(request: Request, response: Response, session_id: str, expires: datetime) -> None:
    """HttpOnly and SameSite=Strict always; Secure whenever the request came over HTTPS."""
    response.set_cookie(
        COOKIE,
        session_id,
        expires=expires,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE, path="/ui", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


async def start(
    session: AsyncSession, principal: Principal, settings: Settings
) -> tuple[str, datetime]:
    """Stores a new session for the principal; returns the cookie value and its expiry."""
    session_id = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(hours=settings.ui_session_hours)
    await session.execute(delete(UiSession).where(UiSession.expires_at < datetime.now(UTC)))
    session.add(
        UiSession(
            id_hash=hash_token(session_id),
            user_id=principal.user.id,
            token_id=principal.token_id,
            expires_at=expires,
        )
    )
    audit.record(
        session,
        principal.actor,
        "ui.sign_in",
        "user",
        principal.user.id,
        details={"token_id": str(principal.token_id), "expires_at": expires.isoformat()},
    )
    await session.commit()
    return session_id, expires


async def resume(session: AsyncSession, request: Request) -> SignedIn:
    """The session of the request's cookie, if it is unexpired and its token not revoked."""
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        raise SignInRequired
    row = (
        await session.execute(
            select(User, ApiToken.id)
            .join(UiSession, UiSession.user_id == User.id)
            .join(ApiToken, ApiToken.id == UiSession.token_id)
            .where(
                UiSession.id_hash == hash_token(session_id),
                UiSession.expires_at > datetime.now(UTC),
                ApiToken.revoked_at.is_(None),
            )
        )
    ).one_or_none()
    if row is None:
        raise SignInRequired
    user: User = row[0]
    token_id: uuid.UUID = row[1]
    return SignedIn(Principal(user=user, token_id=token_id), session_id)


async def end(session: AsyncSession, session_id: str, principal: Principal | None) -> None:
    """Deletes the session; a sign-out by its user is audited (a replaced one is not)."""
    await session.execute(delete(UiSession).where(UiSession.id_hash == hash_token(session_id)))
    if principal is not None:
        audit.record(session, principal.actor, "ui.sign_out", "user", principal.user.id)
    await session.commit()
