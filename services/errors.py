"""Why a domain operation refused: one exception per kind of refusal, named for its meaning.

The API turns each into its problem answer (``api.problems.refusals``); the domain does not
speak HTTP. ``kind`` and ``title`` name a specific refusal (a stable word clients match on);
``facts`` are the numbers or names behind it, shown beside the sentence.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any


class Refusal(Exception):
    """Base of every refusal: ``detail`` is the sentence the caller reads."""

    def __init__(self, detail: str, kind: str, title: str, **facts: Any) -> None:
        super().__init__(detail)
        self.detail, self.kind, self.title, self.facts = detail, kind, title, facts


class Conflict(Refusal):
    """The resource's present state refuses the change (another name, a busy storage...)."""

    def __init__(
        self, detail: str, kind: str = "conflict", title: str = "Conflict", **facts: Any
    ) -> None:
        super().__init__(detail, kind, title, **facts)


class Unsupported(Refusal):
    """A well-formed request this installation or this resource cannot carry out; ``fields``
    maps each field of the request that asks for it (a path in the body, ``connection.server``)
    to why, so the caller learns which value to change."""

    def __init__(
        self, detail: str, kind: str, title: str, fields: Mapping[str, str], **facts: Any
    ) -> None:
        super().__init__(detail, kind, title, **facts)
        self.fields = dict(fields)


class Invalid(Refusal):
    """Fields refused by a domain rule, each as pydantic reports one (``loc``, ``msg``,
    ``type``), ``loc`` relative to the request body."""

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(
            "; ".join(str(err["msg"]) for err in errors), "validation-error", "Invalid request"
        )
        self.errors = list(errors)


class NotFound(Refusal):
    """``what`` named ``ident`` does not exist where the caller may see it."""

    def __init__(self, what: str, ident: uuid.UUID | str) -> None:
        super().__init__(f"{what} {ident} does not exist", "not-found", "Not found")
        self.what, self.ident = what, ident


class Gone(Refusal):
    """``what`` existed but may no longer be used (an expired or revoked link)."""


class TemporalUnavailable(Refusal):
    """Temporal did not answer while ``what`` was tried (``cause``: its error); ``then`` says
    what was left and what the caller may do."""

    def __init__(self, what: str, cause: BaseException, then: str) -> None:
        super().__init__(
            f"{what} ({type(cause).__name__}); {then}",
            "temporal-unavailable",
            "Temporal unavailable",
        )
        self.what, self.cause, self.then = what, cause, then
