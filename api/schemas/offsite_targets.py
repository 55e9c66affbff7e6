"""Bodies of offsite targets: a restic REST server or an S3 bucket, with two sets of credentials."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StrictInt, StringConstraints, model_validator

from api.schemas.common import DisplayName, Input, Output, web_url

PROTECTION_DAYS_MAX = 3650


def _server_url(value: str) -> str:
    checked = web_url(
        value, what=" of the REST server", query=False, credentials=": give them in credentials"
    )
    return checked.rstrip("/")


ServerUrl = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_server_url)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class BasicAuth(Input):
    username: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^:\s]+$")]
    password: Secret


class OffsiteTargetCreate(Input):
    """A restic REST server (rest-server or ``rclone serve restic``) run append-only, or an
    S3 bucket whose policy grants the everyday credentials no delete.

    ``credentials`` are the everyday ones every copy uses: the server must refuse them a
    delete (checked when the target is added). ``maintenance_credentials`` at
    ``maintenance_url`` (a second endpoint of the same storage that allows deletes; for S3
    usually the same URL) are used by offsite retention alone. For ``s3`` the URL is
    path-style, ``https://host/bucket[/prefix]``, and a credential's ``username`` is the
    access key id, its ``password`` the secret access key.
    """

    name: DisplayName
    kind: Literal["rest", "s3"]
    url: ServerUrl
    region: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,40}$")] | None = Field(
        default=None, description="s3: the bucket's region the add-time check signs for"
    )
    credentials: BasicAuth
    maintenance_url: ServerUrl | None = None
    maintenance_credentials: BasicAuth | None = None
    protection_days: StrictInt = Field(
        default=14,
        ge=1,
        le=PROTECTION_DAYS_MAX,
        description="offsite retention never removes a copy younger than this, whatever a"
        " policy keeps",
    )
    upload_limit_kib: StrictInt | None = Field(
        default=None, ge=1, description="restic --limit-upload for copies, KiB/s; null: none"
    )

    @model_validator(mode="after")
    def _s3_names_a_bucket(self) -> OffsiteTargetCreate:
        if self.kind == "s3" and not urlsplit(self.url).path.strip("/"):
            raise ValueError("an s3 url names the bucket in its path: https://host/bucket")
        if self.kind == "rest" and self.region is not None:
            raise ValueError("region applies to s3 targets only")
        return self


class OffsiteTargetUpdate(Input):
    """What may change on a target; a field left out stays as it is.

    New ``credentials`` pass the same check as when the target was added (a probe written
    at its URL, a delete refused) and the check's findings replace its ``immutability``;
    new ``maintenance_credentials`` (with a new ``maintenance_url`` if it moved) must write
    and delete there. A refusal saves nothing. The URL and kind do not change (a target
    elsewhere is a new target); ``protection_days`` can only be raised.
    """

    name: DisplayName | None = None
    upload_limit_kib: StrictInt | None = Field(
        default=None, ge=1, description="restic --limit-upload for copies, KiB/s; null: none"
    )
    protection_days: StrictInt | None = Field(
        default=None,
        ge=1,
        le=PROTECTION_DAYS_MAX,
        description="raised only: a shorter protection would let offsite retention remove"
        " younger copies",
    )
    credentials: BasicAuth | None = Field(
        default=None, description="new everyday credentials (rotation); write-only"
    )
    maintenance_url: ServerUrl | None = None
    maintenance_credentials: BasicAuth | None = Field(
        default=None, description="new maintenance credentials (rotation); write-only"
    )

    @model_validator(mode="after")
    def _something(self) -> OffsiteTargetUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        for key in ("name", "protection_days", "credentials", "maintenance_credentials"):
            if key in self.model_fields_set and getattr(self, key) is None:
                raise ValueError(f"{key} cannot be null (leave it out to keep it)")
        if self.maintenance_url is not None and self.maintenance_credentials is None:
            raise ValueError("a new maintenance_url comes with the maintenance_credentials for it")
        return self


class ObjectLock(Output):
    mode: str = Field(description="GOVERNANCE or COMPLIANCE")
    days: int = Field(description="the bucket's default retention")


class Immutability(Output):
    """What keeps copies at a target from cairn's everyday credentials (docs/offsite.md)."""

    deletes_refused: bool
    overwrites_refused: bool = Field(
        description="an append-only REST server refuses an overwrite; no S3 policy can"
    )
    versioning: str | None = Field(
        default=None, description="S3: Enabled, Suspended or null (never turned on)"
    )
    object_lock: ObjectLock | None = Field(
        default=None, description="S3: the bucket's default retention; null: none"
    )
    unreadable: list[str] = Field(
        default_factory=list, description="S3: what the everyday credentials could not read"
    )


class OffsiteTargetOut(Output):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    kind: str
    url: str
    maintenance_url: str | None
    region: str | None = None
    immutability: Immutability | None = Field(
        default=None,
        description="what the check found when the target was added; null for targets"
        " added before it was recorded",
    )
    credentials_set: bool
    maintenance_credentials_set: bool
    protection_days: int
    upload_limit_kib: int | None
    created_at: datetime
    updated_at: datetime


class OffsiteLagOut(Output):
    """How far the application's offsite copies trail its backups (docs/offsite.md)."""

    target_id: uuid.UUID = Field(description="the target the backup policy copies to")
    lag_seconds: float = Field(
        description="time since the oldest backup newer than the newest copied one completed;"
        " 0 when the newest backup is copied (or none waits)"
    )
    last_copied_backup_at: datetime | None = Field(
        description="when the newest backup copied there completed; null: none yet"
    )
    last_copied_at: datetime | None = Field(description="when that copy finished")
    copies_pending: int = Field(description="backups newer than it whose copy is still pending")
    copies_failed: int = Field(description="backups newer than it whose copy failed")
    overdue: bool = Field(
        description="the oldest backup waiting for its copy is past its allowance: the backup"
        " schedule's grace after it completed (docs/offsite.md)"
    )
    overdue_since: datetime | None = Field(description="when that allowance ran out")


class BackupCopyOut(Output):
    """One place a backup lives: ``primary`` (its storage) or ``offsite`` (a target)."""

    where: Literal["primary", "offsite"]
    status: str
    storage_id: uuid.UUID | None = None
    target_id: uuid.UUID | None = None
    target_name: str | None = None
    copied_at: datetime | None = None
    error_message: str | None = None
    snapshot_ids: list[str] | None = None
