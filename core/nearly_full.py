"""When a storage or a workspace's quota is nearly full: the one rule, pure.

Told to a workspace's notification channels (``storage.nearly_full``, services/storage_notices.py)
and alerted by the Prometheus rules ``CairnStorageNearlyFull``,
``CairnStorageFilesystemNearlyFull`` and ``CairnWorkspaceQuotaNearlyFull``, whose thresholds
are these (tests/unit/test_nearly_full.py reads the rules file and fails when they differ).
Past them, backups are soon refused: the quota check refuses one that would not fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

STORAGE_USED = 0.9  # cairn's repositories over 90 % of the storage's capacity
FILESYSTEM_FREE = 0.05  # under 5 % of the file system under a storage free
QUOTA_USED = 0.9  # a workspace's storages over 90 % of its backup quota

Check = Literal["storage", "filesystem", "quota"]


@dataclass(frozen=True)
class Fullness:
    """What a check measured: ``used`` of ``limit`` bytes (for the file system: used, size)."""

    check: Check
    used: int
    limit: int

    @property
    def share(self) -> float:
        return self.used / self.limit


def storage(used_bytes: int, capacity_bytes: int) -> Fullness | None:
    """The storage's repositories past their share of its capacity; None otherwise."""
    if capacity_bytes > 0 and used_bytes / capacity_bytes > STORAGE_USED:
        return Fullness("storage", used_bytes, capacity_bytes)
    return None


def filesystem(available_bytes: int | None, size_bytes: int | None) -> Fullness | None:
    """The file system under a storage (shared with other data) nearly out of space."""
    if available_bytes is None or not size_bytes:
        return None
    if available_bytes / size_bytes < FILESYSTEM_FREE:
        return Fullness("filesystem", size_bytes - available_bytes, size_bytes)
    return None


def quota(used_bytes: int, quota_bytes: int) -> Fullness | None:
    """A workspace's storages past their share of its backup quota."""
    if quota_bytes > 0 and used_bytes / quota_bytes > QUOTA_USED:
        return Fullness("quota", used_bytes, quota_bytes)
    return None
