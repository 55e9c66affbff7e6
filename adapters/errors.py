"""The one failure shape every adapter raises: a message safe to show, and whether a retry can help.

Activities turn it into a Temporal error in one place (``activities/errors.py``), so the
retry decision is made where the outside system was understood, not re-guessed per step.
"""

from __future__ import annotations

from typing import Any


class AdapterError(Exception):
    """An outside system (restic, PostgreSQL, Proxmox, a storage, a platform) failed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive the default pickling (threads pools, Temporal).
        return (_rebuild, (type(self), self.message, self.retryable, self.__dict__))


def _rebuild(
    cls: type[AdapterError], message: str, retryable: bool, state: dict[str, Any]
) -> AdapterError:
    error = cls.__new__(cls)
    AdapterError.__init__(error, message, retryable=retryable)
    error.__dict__.update(state)
    return error
