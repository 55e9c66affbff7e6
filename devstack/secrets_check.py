"""Whether a master key opens the secrets already sealed in a metadata database.

``cairn dev`` keeps its key in the data folder and its metadata in a database named after
that folder. When the folder is reset but the database kept, a new key is generated that
opens nothing, and every backup fails later on. Opening one secret of each kind at start
finds that in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import crypto, secret_contexts
from db.models import Application, BackupRepository, BackupStorage
from db.session import make_engine, make_sessionmaker


@dataclass(frozen=True)
class Unopened:
    """A sealed secret the key could not open: which kind, and which row."""

    kind: str
    row: str


async def _newest(session: AsyncSession, model: Any, column: Any) -> Any:
    return await session.scalar(
        select(model).where(column.is_not(None)).order_by(model.created_at.desc()).limit(1)
    )


async def unopened_secrets(database_url: str, master_key: str | None) -> list[Unopened]:
    """One secret of each kind present (the newest), tried with ``master_key``; the failures."""
    kinds: list[tuple[str, Any, Any, Callable[[Any], str]]] = [
        (
            "application database password",
            Application,
            Application.platform_secrets,
            lambda row: secret_contexts.application_secrets(row.id),
        ),
        (
            "storage connection secret",
            BackupStorage,
            BackupStorage.connection_secrets,
            lambda row: secret_contexts.storage_secrets(row.id),
        ),
        (
            "restic repository password",
            BackupRepository,
            BackupRepository.password_sealed,
            lambda row: secret_contexts.repository_password(row.application_id, row.storage_id),
        ),
    ]
    failures: list[Unopened] = []
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            for kind, model, column, context in kinds:
                row = await _newest(session, model, column)
                if row is None:
                    continue
                sealed = getattr(row, column.key)
                try:
                    crypto.open_sealed(sealed, master_key=master_key, context=context(row))
                except crypto.CryptoError:
                    failures.append(Unopened(kind, f"{model.__tablename__} {row.id}"))
    finally:
        await engine.dispose()
    return failures
