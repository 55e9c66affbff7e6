"""Bodies of backup storages; the connection settings depend on the storage type."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictInt, StringConstraints, ValidationError

from api.problems import field_errors, invalid_fields
from api.schemas.common import AbsolutePath, Input, Output, Slug

# Formats of the PVE parameters cairn forwards, mirrored so a value PVE would refuse is a 422
# here, before anything reaches PVE (pve-common JSONSchema.pm, pve-storage Plugin.pm).
_DNS_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?"
_DNS_NAME = re.compile(rf"(?:{_DNS_LABEL}\.)*{_DNS_LABEL}")
_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
)


def _is_ip(value: str) -> bool:
    if "%" in value:  # a zone index is not an address PVE accepts
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _storage_server(value: str) -> str:
    """PVE's ``pve-storage-server``: a bare IP address or DNS name (no port, no brackets)."""
    if not (_is_ip(value) or _DNS_NAME.fullmatch(value)):
        raise ValueError(
            "must be an IP address or a DNS name, without port or brackets (PVE's"
            " pve-storage-server)"
        )
    return value


def _portal(value: str) -> str:
    """PVE's ``pve-storage-portal-dns``: IP, ``[IPv6]`` or DNS name, with an optional port."""
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d{1,5}))?", value)
    if bracketed:
        ok = ":" in bracketed.group(1) and _is_ip(bracketed.group(1))
    elif _is_ip(value):
        ok = True
    else:
        host, sep, port = value.partition(":")
        port_ok = not sep or (port.isdigit() and len(port) <= 5)
        ok = port_ok and bool(_IPV4.fullmatch(host) or _DNS_NAME.fullmatch(host))
    if not ok:
        raise ValueError(
            "must be an IP address, [IPv6 address] or DNS name with an optional :port (PVE's"
            " pve-storage-portal-dns)"
        )
    return value


StorageServer = Annotated[
    str, StringConstraints(min_length=1, max_length=253), AfterValidator(_storage_server)
]
Portal = Annotated[str, StringConstraints(min_length=1, max_length=261), AfterValidator(_portal)]
CephName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
ConfigId = Annotated[
    str,
    StringConstraints(min_length=2, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_-]+$"),
    Field(description="PVE's pve-configid: a letter, then letters, digits, '_' or '-'"),
]
MountOptions = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9=,._:-]+$")
]
Keyring = Annotated[
    str,
    StringConstraints(min_length=3, max_length=4096, pattern=r"^[^\x00-\x20\x7f]+==[ ]*$"),
    Field(description="the client's CephX key (base64, ending in '=='); write-only"),
]
CapacityGb = Annotated[
    StrictInt, Field(ge=1, le=1_000_000, description="size granted to this storage, GB")
]


class LocalConnection(Input):
    """No settings: cairn names the folder after the storage id."""


class NfsConnection(Input):
    server: StorageServer
    export: AbsolutePath
    options: MountOptions | None = None


class CephConnection(Input):
    monhost: list[Portal] = Field(min_length=1, max_length=16)
    username: CephName
    fs_name: ConfigId
    subdir: AbsolutePath | None = None
    keyring: Keyring


class CephConnectionUpdate(CephConnection):
    keyring: Keyring | None = None  # type: ignore[assignment]


CONNECTIONS: dict[str, type[Input]] = {
    "local": LocalConnection,
    "nfs": NfsConnection,
    "ceph": CephConnection,
}
CONNECTION_UPDATES: dict[str, type[Input]] = {**CONNECTIONS, "ceph": CephConnectionUpdate}


def _parser(
    models: dict[str, type[Input]], given: dict[str, Any]
) -> Callable[[str], dict[str, Any]]:
    """Checks ``given`` against the storage type's connection model, which only the service
    knows once it has the storage; a 422 names the field."""

    def parse(kind: str) -> dict[str, Any]:
        try:
            return models[kind].model_validate(given).model_dump()
        except ValidationError as exc:
            raise invalid_fields(
                field_errors(exc.errors(include_url=False), "body", "connection")
            ) from exc

    return parse


class StorageCreate(Input):
    name: Slug
    type: Literal["local", "nfs", "ceph"]
    capacity_gb: CapacityGb
    connection: dict[str, Any] = Field(
        default_factory=dict,
        description="nfs: server, export, options; ceph: monhost, username, fs_name, subdir,"
        " keyring (write-only); local: nothing",
    )

    def checked_connection(self) -> Callable[[str], dict[str, Any]]:
        return _parser(CONNECTIONS, self.connection)


class StorageUpdate(Input):
    name: Slug | None = None
    capacity_gb: CapacityGb | None = None
    connection: dict[str, Any] | None = Field(
        default=None, description="the full connection settings of the storage's type"
    )

    def checked_connection(self) -> Callable[[str], dict[str, Any]] | None:
        """None: the connection stays as it is."""
        return None if self.connection is None else _parser(CONNECTION_UPDATES, self.connection)


class StorageOut(Output):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    type: str
    proxmox_storage_id: str
    capacity_gb: int
    used_gb: int | None
    used_bytes: int = Field(description="bytes of cairn's repositories in this storage")
    available_bytes: int | None = Field(description="free bytes of the storage's file system")
    filesystem_total_bytes: int | None = Field(description="size of the storage's file system")
    filesystem_used_bytes: int | None = Field(
        description="used bytes of the storage's file system, other data included"
    )
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
    """One reading: cairn's own bytes, and the file system's total, used and free bytes."""

    sampled_at: datetime
    active: bool
    used_bytes: int
    total_bytes: int
    filesystem_used_bytes: int
    available_bytes: int


class StorageUsageOut(Output):
    storage_id: uuid.UUID
    name: str
    status: str | None
    capacity_gb: int
    used_bytes: int = Field(description="bytes of cairn's repositories in this storage")
    available_bytes: int | None = Field(description="free bytes of the storage's file system")
    filesystem_total_bytes: int | None
    filesystem_used_bytes: int | None
    usage_read_at: datetime | None
    history: list[UsageSample]


class WorkspaceUsageOut(Output):
    workspace_id: uuid.UUID
    quota_gb: int
    allocated_gb: int
    used_bytes: int
    storages: list[StorageUsageOut]
