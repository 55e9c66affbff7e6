"""Bodies of backup downloads (docs/downloads.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field, StrictInt

from api.schemas.common import Input, Output
from services.downloads import DEFAULT_TTL, MAX_TTL, MIN_TTL


class DownloadCreate(Input):
    part: str = Field(
        min_length=1,
        max_length=300,
        description="`database`, `volume:<name>` or `config`: one part the backup's manifest lists",
    )
    compression: Literal["none", "gzip", "zstd"] | None = Field(
        None, description="default: gzip for a volume's tar archive, none for the rest"
    )
    expires_in: StrictInt = Field(
        DEFAULT_TTL,
        ge=MIN_TTL,
        le=MAX_TTL,
        description="seconds the link may be used, from its creation",
    )


class DownloadOut(Output):
    id: uuid.UUID
    backup_id: uuid.UUID
    part: str
    compression: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    uses: int
    last_used_at: datetime | None


class DownloadLink(DownloadOut):
    url: str = Field(
        description="the link itself, shown only in this answer: whoever holds it may fetch"
        " the part (no token needed) until it expires or is revoked"
    )
