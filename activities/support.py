"""Helpers the backup and restore activities share."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from adapters.local_platform import LocalPlatform
from adapters.platform import Platform
from adapters.restic import Progress, ResticError
from core import crypto
from core.settings import Settings
from db.models import Application

T = TypeVar("T")
HEARTBEAT_SECONDS = 2.0


def fatal(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def restic_failure(exc: ResticError) -> ApplicationError:
    return ApplicationError(exc.message, type="ResticError", non_retryable=not exc.retryable)


def open_platform(application: Application, settings: Settings) -> Platform:
    """The application's platform adapter, with its secrets opened (worker-side only)."""
    secrets: dict[str, Any] = {}
    if application.platform_secrets:
        secrets = crypto.open_json(
            application.platform_secrets,
            master_key=settings.master_key_text,
            context=f"applications/{application.id}/platform_secrets",
        )
    return LocalPlatform(application.platform_settings, secrets)


async def with_progress(work: Callable[[Callable[[Progress], None]], T]) -> T:
    """Runs ``work`` in a thread, heartbeating its latest progress; cancellation stops it."""
    latest: list[Progress] = []
    cancelled = threading.Event()

    def progress(p: Progress) -> None:
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
