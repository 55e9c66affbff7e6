"""Where an application's data lives, seen from a backup: its database and its volumes.

The backup and restore workflows only talk to this interface. The local platform
(a PostgreSQL URL and folders on the worker host) is the first implementation; a
Kubernetes one (PVCs, CSI VolumeSnapshots, mover Jobs) plugs in beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from adapters.pg_dump import PgTarget


@dataclass(frozen=True)
class VolumeSource:
    name: str
    path: Path  # where the upload reads the volume's files from


@dataclass(frozen=True)
class PointInTime:
    """What the snapshot step produced: where to read each volume, and how consistent it is."""

    consistent: bool
    note: str
    volumes: list[VolumeSource]


class Platform(Protocol):
    kind: str

    def database(self) -> PgTarget | None: ...

    def volume_names(self) -> list[str]: ...

    def snapshot(self, execution_id: str, volumes: list[str]) -> PointInTime: ...

    def release(self, execution_id: str) -> None: ...

    def quiesce(self) -> str: ...

    def resume(self) -> str: ...
