"""What a restore row's ``details`` column holds, typed: the parts restored (database,
volumes, configuration objects), the other database the dump went into (if any), and the
notes the run left, the named databases restored, and the other application of the
workspace whose backup was read (docs/restore-into-another-app.md).

Rows written before this type existed read unchanged: ``from_dict`` takes any of them, and
``to_dict`` writes the same keys they have (``notes`` only once the run left some, ``config``
only when the configuration objects are restored, ``databases`` only when named databases
are, ``source`` only when another application's backup is read, ``upload`` only for an
uploaded dump).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoredTarget:
    """The database restored into instead of the application's own: a name on its server,
    or (platform administrators) another server's URL with its password sealed apart."""

    database_name: str | None = None
    database_url: str | None = None
    password_sealed: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StoredTarget:
        return cls(raw.get("database_name"), raw.get("database_url"), raw.get("password_sealed"))

    def to_dict(self) -> dict[str, str]:
        """The stored shape: only the fields that are set."""
        fields = {
            "database_name": self.database_name,
            "database_url": self.database_url,
            "password_sealed": self.password_sealed,
        }
        return {key: value for key, value in fields.items() if value is not None}

    def shown(self) -> dict[str, str]:
        """What answers and audit events may show: never the sealed password."""
        return {key: value for key, value in self.to_dict().items() if key != "password_sealed"}


@dataclass(frozen=True)
class RestoreSource:
    """Where a restore into another application of the workspace took its data from: that
    application (its name as it was then), its backup, and which of its volumes and named
    databases went into which of the target's (``{source name: target name}``, every part
    restored listed). The parts in ``RestoreDetails`` carry the target's names."""

    application_id: str
    application_name: str
    backup_id: str
    volume_map: dict[str, str] = field(default_factory=dict)
    database_map: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RestoreSource:
        return cls(
            str(raw["application_id"]),
            str(raw.get("application_name") or ""),
            str(raw["backup_id"]),
            dict(raw.get("volume_map") or {}),
            dict(raw.get("database_map") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "application_id": self.application_id,
            "application_name": self.application_name,
            "backup_id": self.backup_id,
            "volume_map": dict(self.volume_map),
            "database_map": dict(self.database_map),
        }


@dataclass(frozen=True)
class RestoreUpload:
    """A dump the application's owner uploaded to restore from: its format, size and SHA-256
    as received, the storage whose repository holds it and its snapshot there; ``row_counts``
    per table as the dump itself holds them, once the worker has read it through (None
    before); ``forgotten`` once retention dropped its snapshot after the restore ended."""

    format: str
    bytes: int
    sha256: str
    storage_id: str
    snapshot_id: str
    row_counts: dict[str, int] | None = None
    forgotten: bool = False

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RestoreUpload:
        counts = raw.get("row_counts")
        return cls(
            str(raw["format"]),
            int(raw["bytes"]),
            str(raw["sha256"]),
            str(raw["storage_id"]),
            str(raw["snapshot_id"]),
            dict(counts) if counts is not None else None,
            bool(raw.get("forgotten", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        stored: dict[str, Any] = {
            "format": self.format,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "storage_id": self.storage_id,
            "snapshot_id": self.snapshot_id,
        }
        if self.row_counts is not None:
            stored["row_counts"] = dict(self.row_counts)
        if self.forgotten:
            stored["forgotten"] = True
        return stored


@dataclass(frozen=True)
class RestoreDetails:
    database: bool = False
    volumes: list[str] = field(default_factory=list)
    target: StoredTarget | None = None
    notes: dict[str, Any] | None = None
    config: bool = False
    # named databases (MariaDB, Redis) brought back beside the main one
    databases: list[str] = field(default_factory=list)
    # another application's backup read into this one; None: the application's own
    source: RestoreSource | None = None
    # a dump the owner uploaded, restored instead of a backup; None: a backup
    upload: RestoreUpload | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> RestoreDetails:
        raw = raw or {}
        target, source, upload = raw.get("target"), raw.get("source"), raw.get("upload")
        return cls(
            database=bool(raw.get("database")),
            volumes=list(raw.get("volumes") or []),
            target=StoredTarget.from_dict(target) if target else None,
            notes=raw.get("notes"),
            config=bool(raw.get("config")),
            databases=list(raw.get("databases") or []),
            source=RestoreSource.from_dict(source) if source else None,
            upload=RestoreUpload.from_dict(upload) if upload else None,
        )

    def to_dict(self) -> dict[str, Any]:
        stored: dict[str, Any] = {
            "database": self.database,
            "volumes": list(self.volumes),
            "target": self.target.to_dict() if self.target else None,
        }
        if self.notes is not None:
            stored["notes"] = self.notes
        if self.config:
            stored["config"] = True
        if self.databases:
            stored["databases"] = list(self.databases)
        if self.source is not None:
            stored["source"] = self.source.to_dict()
        if self.upload is not None:
            stored["upload"] = self.upload.to_dict()
        return stored
