"""Users and their API tokens (platform admin only): how the PaaS syncs its people."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Response
from sqlalchemy import select

from api.deps import PlatformAdmin, SessionDep
from api.pagination import Cursor, Limit, Page, fetch_page
from api.problems import conflict, not_found
from api.schemas.registry import TokenCreate, TokenIssued, TokenOut, UserCreate, UserOut
from core.tokens import hash_token, new_token
from db import audit
from db.models import ApiToken, User

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.post("/users", status_code=201, response_model=UserOut)
async def create_user(body: UserCreate, admin: PlatformAdmin, session: SessionDep) -> User:
    email = body.email.lower()
    if await session.scalar(select(User.id).where(User.email == email)):
        raise conflict(f"a user with email {email} already exists")
    user = User(email=email, name=body.name, is_platform_admin=body.is_platform_admin)
    session.add(user)
    await session.flush()
    audit.record(
        session,
        admin.actor,
        "user.create",
        "user",
        user.id,
        details={"email": email, "is_platform_admin": body.is_platform_admin},
    )
    await session.commit()
    return user


@router.get("/users", response_model=Page[UserOut])
async def list_users(
    _: PlatformAdmin, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, object]:
    items, next_cursor = await fetch_page(
        session, select(User), User.created_at, User.id, limit, cursor
    )
    return {"items": items, "next_cursor": next_cursor}


@router.post("/users/{user_id}/tokens", status_code=201, response_model=TokenIssued)
async def issue_token(
    user_id: uuid.UUID, body: TokenCreate, admin: PlatformAdmin, session: SessionDep
) -> dict[str, object]:
    if await session.get(User, user_id) is None:
        raise not_found("user", user_id)
    token = new_token()
    row = ApiToken(user_id=user_id, name=body.name, token_hash=hash_token(token))
    session.add(row)
    await session.flush()
    audit.record(
        session,
        admin.actor,
        "token.issue",
        "api_token",
        row.id,
        details={"user_id": str(user_id), "name": body.name},
    )
    await session.commit()
    return {**TokenOut.model_validate(row).model_dump(), "token": token}


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(token_id: uuid.UUID, admin: PlatformAdmin, session: SessionDep) -> Response:
    row = await session.get(ApiToken, token_id)
    if row is None:
        raise not_found("token", token_id)
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        audit.record(
            session,
            admin.actor,
            "token.revoke",
            "api_token",
            row.id,
            details={"user_id": str(row.user_id)},
        )
        await session.commit()
    return Response(status_code=204)
