"""What an application can be restored to (docs/pitr.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from api.schemas.common import Input, Output
from api.schemas.restores import DatabaseName
from contracts.archive import LATEST


class GapOut(Output):
    """A stretch inside the window no restore can reach (WAL was lost)."""

    from_: datetime = Field(alias="from")
    to: datetime


class ArchiverOut(Output):
    streaming: bool | None = Field(
        description="true: the archiver streams WAL; false: stopped; null: Temporal could not"
        " be reached"
    )
    last_shipment_at: datetime | None = Field(
        description="the server time every archived commit is in by"
    )
    lag_seconds: float | None = Field(description="how far the archive is behind now")


class RecoveryWindowOut(Output):
    continuous_archiving: bool = Field(description="whether the policy has archiving on")
    earliest: datetime | None = Field(description="null: nothing is restorable yet")
    latest: datetime | None
    gaps: list[GapOut]
    archiver: ArchiverOut


class MomentTarget(Input):
    """Where the recovered database goes; exactly one field."""

    database_name: DatabaseName | None = Field(
        default=None,
        description="a new database on the application's server; never its own database,"
        " cairn's metadata database, a system database or another application's database",
    )
    in_place: Literal[True] | None = Field(
        default=None,
        description="over the live database: the moment is recovered beside it and verified,"
        " then the application is stopped, the copy swapped in (the live database dropped)"
        " and the application started again; needs `confirm`",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> MomentTarget:
        if (self.database_name is None) == (self.in_place is None):
            raise ValueError("give exactly one of database_name and in_place")
        return self


class RestoreToTimeRequest(Input):
    target_time: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="an RFC 3339 time with its offset, or `latest`"
    )
    target: MomentTarget | None = Field(
        default=None,
        description="default: a new database named after the application's and the moment",
    )
    confirm: Annotated[str, StringConstraints(max_length=255)] | None = Field(
        default=None,
        description="with `target.in_place`: the application's name, typed to confirm that"
        " its live database is replaced (422 `confirmation-required` otherwise)",
    )

    @field_validator("target_time")
    @classmethod
    def _moment(cls, value: str) -> str:
        if value != LATEST:
            moment(value)
        return value


def moment(value: str) -> datetime | None:
    """The moment asked (None: latest); ValueError for a time without its offset."""
    if value == LATEST:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an RFC 3339 time (2026-12-07T14:31:05Z) or latest") from None
    if parsed.tzinfo is None:
        raise ValueError("the time needs its offset (Z or +01:00)")
    return parsed
