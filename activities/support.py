"""Helpers the backup, restore and drill activities share."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import fatal, to_application_error
from adapters.platform import Platform, PlatformError, open_platform
from adapters.restic import Progress, Repository, Restic
from core import crypto, secret_contexts
from core.settings import Settings
from db.availability import database_unavailable
from db.models import Application, BackupExecution, BackupStorage
from repository.store import open_repository

T = TypeVar("T")
HEARTBEAT_SECONDS = 2.0
# How long a data step waits for the metadata database before it lets its retry policy decide.
METADATA_WAIT_SECONDS = 180.0


def platform_of(application: Application, settings: Settings, restic: Restic) -> Platform:
    """The application's platform, chosen by its kind, its secrets opened (worker-side only).

    Activities reach an application's data only through it (``adapters/platform.py``).
    """
    secrets: dict[str, Any] = {}
    if application.platform_secrets:
        try:
            secrets = crypto.open_json(
                application.platform_secrets,
                master_key=settings.master_key_text,
                context=secret_contexts.application_secrets(application.id),
            )
        except crypto.CryptoError as exc:
            raise fatal(str(exc), "SecretsUnavailable") from None
    try:
        return open_platform(
            application.platform_kind,
            application.platform_settings,
            secrets,
            cairn=settings,
            restic=restic,
        )
    except PlatformError as exc:
        raise to_application_error(exc) from None


class ReadingActivities:
    """Steps that read backups back into an application's data (restores, drills)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, restic: Restic
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.restic = restic

    def _platform(self, application: Application) -> Platform:
        return platform_of(application, self.settings, self.restic)


async def with_progress(work: Callable[[Callable[[Any], None]], T]) -> T:
    """Runs ``work`` in a thread, heartbeating its latest progress (a dataclass: restic's
    bytes, a copy's packs; None keeps the last); cancellation stops it."""
    latest: list[Any] = []
    cancelled = threading.Event()

    def progress(p: Any) -> None:
        if p is not None:
            latest[:] = [p]
        if cancelled.is_set():
            raise ApplicationError("cancelled", type="Cancelled", non_retryable=True)

    task = asyncio.ensure_future(asyncio.to_thread(work, progress))
    try:
        while not task.done():
            activity.heartbeat(asdict(latest[0]) if latest else {})
            await asyncio.wait({task}, timeout=HEARTBEAT_SECONDS)
    except asyncio.CancelledError:
        cancelled.set()
        await asyncio.gather(task, return_exceptions=True)
        raise
    return task.result()


async def heartbeating(work: Awaitable[T]) -> T:
    """Awaits ``work`` while heartbeating, so a dead worker is noticed within a heartbeat."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            activity.heartbeat()
            await asyncio.wait({task}, timeout=HEARTBEAT_SECONDS)
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    return task.result()


async def to_completion(work: Callable[[], T]) -> T:
    """Runs ``work`` in a thread to its end, heartbeating; a cancel is honoured only after.

    For steps that must not stop half-way (a stop hook, a folder swap): the workflow
    learns of the cancellation once the step has finished.
    """
    task = asyncio.ensure_future(asyncio.to_thread(work))
    cancelled = False
    while not task.done():
        activity.heartbeat()
        try:
            await asyncio.wait({asyncio.shield(task)}, timeout=HEARTBEAT_SECONDS)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()


def no_progress(_progress: Progress) -> None:
    """What a step run by ``to_completion`` gives as progress: it heartbeats all the same."""


async def read_metadata(
    sessions: async_sessionmaker[AsyncSession], read: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """Runs ``read`` in a session, waiting out a metadata database outage of minutes.

    A data step must not fail because the metadata database restarts; it heartbeats while
    it waits, so a dead worker is still noticed. Other errors are raised at once.
    """
    deadline = time.monotonic() + METADATA_WAIT_SECONDS
    delay = 1.0
    while True:
        try:
            async with sessions() as session:
                return await read(session)
        except Exception as exc:
            if not database_unavailable(exc) or time.monotonic() > deadline:
                raise
            activity.logger.warning("metadata database unavailable, waiting: %s", exc)
        activity.heartbeat()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 15.0)


async def execution_repository(
    session: AsyncSession, settings: Settings, execution: BackupExecution, application: Application
) -> tuple[BackupStorage, Repository]:
    """The storage and restic repository a backup lives in, its password opened."""
    storage = (
        await session.get(BackupStorage, execution.storage_id) if execution.storage_id else None
    )
    if storage is None:
        raise fatal("the storage that held this backup was deleted", "StorageDeleted")
    try:
        repo = await open_repository(session, settings, application, storage)
    except crypto.CryptoError as exc:
        raise fatal(str(exc), "SecretsUnavailable") from None
    return storage, repo
