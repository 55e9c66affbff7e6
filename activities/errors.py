"""How a failure becomes a Temporal error: the only place an activity decides retry or not."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from adapters.errors import AdapterError


def fatal(message: str, kind: str) -> ApplicationError:
    """A failure no retry can mend (bad configuration, a refused target, missing data)."""
    return ApplicationError(message, type=kind, non_retryable=True)


def to_application_error(exc: AdapterError, doing: str | None = None) -> ApplicationError:
    """``exc`` as Temporal sees it: its class names the type, its ``retryable`` the retry."""
    message = f"{doing}: {exc.message}" if doing else exc.message
    return ApplicationError(message, type=type(exc).__name__, non_retryable=not exc.retryable)
