"""The one failure shape every adapter raises: a message safe to show, and whether a retry can help.

Activities turn it into a Temporal error in one place (``activities/errors.py``), so the
retry decision is made where the outside system was understood, not re-guessed per step.

A message is what a person reads in a run's status and what Temporal stores in the run's
history: it stays short (``MESSAGE_LIMIT``) and never carries a tool's stack trace. A longer
text is shortened when the error is made, and the whole of it goes to the worker log.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

logger = logging.getLogger(__name__)

# Characters of a failure message: a few lines a person reads, far below Temporal's limits.
MESSAGE_LIMIT: Final = 1500

# A Go program's stack trace (restic, kubectl) as ``%+v`` prints it: a function line, then
# its file and line indented by a tab.
_GO_FRAME: Final = re.compile(r"^\S+\n\t\S+:\d+(?: \+0x[0-9a-f]+)?$\n?", re.MULTILINE)


def without_stack_traces(text: str) -> str:
    """``text`` without the Go stack frames an unexpected error of a tool carries."""
    return _GO_FRAME.sub("", text)


def shortened(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` without stack traces, cut to ``limit`` characters at a line end if longer."""
    short = without_stack_traces(text).strip()
    if len(short) <= limit:
        return short
    cut = short.rfind("\n", 0, limit)
    cut = cut if cut > limit // 2 else limit
    return short[:cut].rstrip() + f" … (shortened; the worker log has all {len(text)} characters)"


class AdapterError(Exception):
    """An outside system (restic, PostgreSQL, Proxmox, a storage, a platform) failed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        short = shortened(message)
        if short != message.strip():
            logger.warning("%s, in full: %s", type(self).__name__, message)
        super().__init__(short)
        self.message = short
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
