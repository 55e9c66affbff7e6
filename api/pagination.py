"""Keyset pagination, newest first, over any model with ``created_at`` and ``id``."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from api.problems import Problem

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=200, description="page size")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="the next_cursor of the previous page")
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def _encode(created_at: datetime, ident: Any) -> str:
    raw = json.dumps([created_at.isoformat(), str(ident)]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, ident = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise Problem(
            400,
            "invalid-cursor",
            "Invalid cursor",
            "cursor must be a next_cursor returned by this list",
        ) from exc


async def fetch_page(
    session: AsyncSession,
    stmt: Select[Any],
    created_col: InstrumentedAttribute[Any],
    id_col: InstrumentedAttribute[Any],
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Any], str | None]:
    if cursor:
        created, ident = _decode(cursor)
        stmt = stmt.where(or_(created_col < created, and_(created_col == created, id_col < ident)))
    rows = (
        await session.scalars(stmt.order_by(created_col.desc(), id_col.desc()).limit(limit + 1))
    ).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], _encode(getattr(last, created_col.key), getattr(last, id_col.key))


async def page_of(
    session: AsyncSession,
    stmt: Select[Any],
    limit: int,
    cursor: str | None,
    newest_by: str = "created_at",
) -> tuple[Sequence[Any], str | None]:
    """A page of what ``stmt`` selects (one model, as the services' lists give it), newest
    first by that model's ``newest_by`` time, then its ``id``."""
    model = stmt.column_descriptions[0]["entity"]
    return await fetch_page(session, stmt, getattr(model, newest_by), model.id, limit, cursor)
