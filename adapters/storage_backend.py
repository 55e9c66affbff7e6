"""Where backup storage is provisioned: Proxmox VE when configured, else plain local folders.

Both sides speak the same small interface, so the storage workflows never know
which one they drive.

A ``local`` storage whose folder has vanished (deleted, or its disk not mounted) is an
error of its own, never recreated: PVE's ``dir`` activation would make an empty folder in
its place (``create-base-path``, on by default) and report it active, so backups would
silently land beside the lost ones, on whatever disk is underneath. The worker looks at
its own view of the folder before asking PVE.

``status`` answers with the figures of the file system the storage lives on, as PVE does;
what cairn itself stored there is ``repository.store.repository_bytes``: the file system
may hold other data (the node's root disk, a shared NFS export), which is not this storage's
usage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from adapters.errors import AdapterError
from adapters.proxmox import (
    ProxmoxClient,
    ProxmoxConfig,
    ProxmoxError,
    StorageStatus,
    canonpath,
)
from core.settings import Settings


class BackendError(AdapterError):
    """Provisioning a storage, or reading its status, failed."""


class StorageBackend(Protocol):
    def exists(self, storage_id: str) -> bool: ...

    def create(
        self, kind: str, storage_id: str, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None: ...

    def update(
        self, kind: str, storage_id: str, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None: ...

    def delete(self, storage_id: str) -> None: ...

    def status(self, storage_id: str) -> StorageStatus: ...


def missing_folder(storage_id: str, path: Path) -> BackendError:
    """The answer for a storage whose folder is gone; no retry brings it back."""
    return BackendError(
        f"the folder of storage {storage_id} ({path}) does not exist: it was deleted or its"
        " disk is not mounted. Restore or remount it; cairn does not recreate it, so backups"
        " never land in an empty folder in its place",
        retryable=False,
    )


def folder_usage(path: Path) -> int:
    """Apparent size of every file below ``path`` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


class LocalFolderBackend:
    """The embedded default: a ``local`` storage is a folder under the storage mount root."""

    def __init__(self, mount_root: Path) -> None:
        self.mount_root = mount_root

    def _path(self, storage_id: str) -> Path:
        return self.mount_root / storage_id

    def _only_local(self, kind: str) -> None:
        if kind != "local":
            raise BackendError(
                f"storage type '{kind}' needs Proxmox VE, which is not configured"
                " (set CAIRN_PROXMOX_HOST, CAIRN_PROXMOX_TOKEN_ID and CAIRN_PROXMOX_TOKEN_SECRET)",
                retryable=False,
            )

    def exists(self, storage_id: str) -> bool:
        return self._path(storage_id).is_dir()

    def create(
        self, kind: str, storage_id: str, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        self._only_local(kind)
        self._path(storage_id).mkdir(parents=True, exist_ok=True, mode=0o700)

    def update(
        self, kind: str, storage_id: str, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        self.create(kind, storage_id, config, secrets)

    def delete(self, storage_id: str) -> None:
        """Like PVE, removing the definition leaves data in place: only an empty folder goes."""
        with contextlib.suppress(FileNotFoundError, OSError):
            self._path(storage_id).rmdir()

    def status(self, storage_id: str) -> StorageStatus:
        path = self._path(storage_id)
        if not path.is_dir():
            raise missing_folder(storage_id, path)
        disk = shutil.disk_usage(path)  # df's figures: used = blocks - bfree, avail = bavail
        return StorageStatus(disk.total, disk.used, disk.free, active=True, enabled=True)


class ProxmoxBackend:
    """Storage definitions in PVE; a ``local`` storage becomes a ``dir`` under the node's root.

    The worker reaches every storage at ``mount_root/{id}``; for a ``dir`` storage that is
    the folder PVE defines (the worker runs on the node, or the folder is shared with it).
    """

    def __init__(self, client: ProxmoxClient, dir_root: str, mount_root: Path) -> None:
        self.client = client
        # as PVE will store it, so a root like "/mnt//pve/" never looks like a changed path
        self.dir_root = canonpath(dir_root)
        self.mount_root = mount_root

    def _config(self, kind: str, storage_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
        if kind == "local":
            return {**config, "path": f"{self.dir_root}/{storage_id}"}
        return dict(config)

    def _call(self, action: str, storage_id: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ProxmoxError as exc:
            raise BackendError(
                f"Proxmox VE refused to {action} storage {storage_id}: {exc.message}",
                retryable=exc.retryable,
            ) from None
        except ValueError as exc:
            raise BackendError(
                f"cannot {action} storage {storage_id}: {exc}", retryable=False
            ) from None

    def exists(self, storage_id: str) -> bool:
        return self._call("read", storage_id, self.client.get_storage, storage_id) is not None

    def create(
        self, kind: str, storage_id: str, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        params = self._config(kind, storage_id, config)
        self._call(
            "create", storage_id, self.client.create_storage, kind, storage_id, params, secrets
        )

    def update(
        self, kind: str, storage_id: str, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        params = self._config(kind, storage_id, config)
        self._call(
            "update", storage_id, self.client.update_storage, kind, storage_id, params, secrets
        )

    def delete(self, storage_id: str) -> None:
        self._call("delete", storage_id, self.client.delete_storage, storage_id)

    def status(self, storage_id: str) -> StorageStatus:
        definition = self._call("read", storage_id, self.client.get_storage, storage_id)
        if definition is not None and definition.get("type") == "dir":
            # Before PVE's status call, whose activation would recreate a vanished folder.
            folder = self.mount_root / storage_id
            if not folder.is_dir():
                raise missing_folder(storage_id, folder)
        result: StorageStatus = self._call(
            "read the status of", storage_id, self.client.storage_status, storage_id
        )
        return result


def backend_for(settings: Settings) -> StorageBackend:
    if not settings.proxmox_configured:
        return LocalFolderBackend(settings.storage_mount_root)
    verify: bool | str = settings.proxmox_verify
    if settings.proxmox_verify.lower() in ("true", "1", "yes"):
        verify = True
    elif settings.proxmox_verify.lower() in ("false", "0", "no"):
        verify = False
    assert settings.proxmox_host and settings.proxmox_token_id and settings.proxmox_token_secret
    client = ProxmoxClient(
        ProxmoxConfig(
            host=settings.proxmox_host,
            port=settings.proxmox_port,
            token_id=settings.proxmox_token_id,
            token_secret=settings.proxmox_token_secret.get_secret_value(),
            node=settings.proxmox_node,
            verify=verify,
        )
    )
    return ProxmoxBackend(client, settings.proxmox_dir_root, settings.storage_mount_root)
