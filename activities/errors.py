"""How a failure becomes a Temporal error: the only place an activity decides retry or not.

Temporal refuses a failure over its size limit and records "Failure exceeds size limit"
instead, losing the cause; a run then reads as if its worker had died. So the error carries
a bounded message, no details and no chained exception (whose own message and traceback
Temporal would store as the failure's cause).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from temporalio.exceptions import ApplicationError

from adapters.errors import AdapterError, shortened


def _bounded(message: str, kind: str, *, non_retryable: bool) -> ApplicationError:
    error = ApplicationError(shortened(message), type=kind, non_retryable=non_retryable)
    # kept however the caller raises it: an implicit ``__context__`` would become the cause
    error.__suppress_context__ = True
    return error


def fatal(message: str, kind: str) -> ApplicationError:
    """A failure no retry can mend (bad configuration, a refused target, missing data)."""
    return _bounded(message, kind, non_retryable=True)


def to_application_error(exc: AdapterError, doing: str | None = None) -> ApplicationError:
    """``exc`` as Temporal sees it: its class names the type, its ``retryable`` the retry."""
    message = f"{doing}: {exc.message}" if doing else exc.message
    return _bounded(message, type(exc).__name__, non_retryable=not exc.retryable)


@contextmanager
def temporal_errors(
    doing: str | None = None,
    *,
    translate: Callable[[AdapterError], ApplicationError] | None = None,
) -> Iterator[None]:
    """A step's calls into adapters: an ``AdapterError`` leaves as its Temporal error
    (``translate``, else :func:`to_application_error` with ``doing``), without a chained cause."""
    try:
        yield
    except AdapterError as exc:
        raise (translate(exc) if translate else to_application_error(exc, doing)) from None
