"""Bodies of backup storages; the connection settings depend on the storage type."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from api.schemas.common import AbsolutePath, Input, Output, Slug

Host = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=253,
        pattern=r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[?[0-9A-Fa-f:.]+\]?)$",
    ),
]
CephName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
MountOptions = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9=,._:-]+$")
]
Secret = Annotated[
    str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\x00-\x1f\x7f]+$")
]
CapacityGb = Annotated[
    int, Field(ge=1, le=1_000_000, description="size granted to this storage, GB")
]

SECRET_FIELDS = {"keyring"}


class LocalConnection(Input):
    """No settings: cairn names the folder after the storage id."""


class NfsConnection(Input):
    server: Host
    export: AbsolutePath
    options: MountOptions | None = None


class CephConnection(Input):
    monhost: list[Host] = Field(min_length=1, max_length=16)
    username: CephName
    fs_name: CephName
    subdir: AbsolutePath | None = None
    keyring: Secret = Field(description="the client's secret key; write-only")


class CephConnectionUpdate(CephConnection):
    keyring: Secret | None = None  # type: ignore[assignment]


CONNECTIONS: dict[str, type[Input]] = {
    "local": LocalConnection,
    "nfs": NfsConnection,
    "ceph": CephConnection,
}
CONNECTION_UPDATES: dict[str, type[Input]] = {**CONNECTIONS, "ceph": CephConnectionUpdate}


class StorageCreate(Input):
    name: Slug
    type: Literal["local", "nfs", "ceph"]
    capacity_gb: CapacityGb
    connection: dict[str, Any] = Field(
        default_factory=dict,
        description="nfs: server, export, options; ceph: monhost, username, fs_name, subdir,"
        " keyring (write-only); local: nothing",
    )


class StorageUpdate(Input):
    name: Slug | None = None
    capacity_gb: CapacityGb | None = None
    connection: dict[str, Any] | None = Field(
        default=None, description="the full connection settings of the storage's type"
    )


class StorageOut(Output):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    type: str
    proxmox_storage_id: str
    capacity_gb: int
    used_gb: int | None
    used_bytes: int
    available_bytes: int | None
    usage_read_at: datetime | None
    status: str | None
    status_message: str | None
    connection: dict[str, Any]
    secrets_set: list[str]
    created_at: datetime | None
    updated_at: datetime | None


class StorageAccepted(StorageOut):
    workflow_id: str
    temporal_ui_url: str


class UsageSample(Output):
    sampled_at: datetime
    active: bool
    total_bytes: int
    used_bytes: int
    available_bytes: int


class StorageUsageOut(Output):
    storage_id: uuid.UUID
    name: str
    status: str | None
    capacity_gb: int
    used_bytes: int
    available_bytes: int | None
    usage_read_at: datetime | None
    history: list[UsageSample]


class WorkspaceUsageOut(Output):
    workspace_id: uuid.UUID
    quota_gb: int
    allocated_gb: int
    used_bytes: int
    storages: list[StorageUsageOut]
