"""Every name cairn writes into a repository or a storage, built and read back here only.

Restic tags, part names and file names are data on disk, not code: a retried upload finds
its snapshot by its tags, retention forgets by the execution tag, restores and drills pick a
part's snapshot from the manifest by its part name, and ``cairn catalog import`` finds the
key files and manifests by their names. A name written once is read for as long as the
backup is kept, so these never change; a new kind of name is added beside them.

Pure (standard library only), so the workflows may name a volume's part as well.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

# Files in the storage and inside snapshots.
KEY_FILE: Final = "cairn-repository.json"
"""Beside a repository's own files: its password sealed under the master key
(``repository/store.py``), what a catalog import starts from."""
MANIFEST_FILE: Final = "manifest.json"
"""The only file of a backup's manifest snapshot."""
DATABASE_FILE: Final = "database.dump"
"""The only file of a backup's database snapshot: ``pg_dump --format=custom`` as streamed."""
CONFIG_FILE: Final = "config.json"
"""The only file of a backup's config snapshot: the configuration objects as JSON."""

# Parts of a backup: one snapshot each, named in the manifest's ``parts`` and in a tag.
DATABASE: Final = "database"
CONFIG: Final = "config"
MANIFEST: Final = "manifest"
_VOLUME: Final = "volume:"
_NAMED_DATABASE: Final = "database:"
"""A named database beside the main PostgreSQL one (MariaDB, Redis: docs/engines.md)."""
# Continuous archiving (docs/pitr.md): shipped WAL and physical base backups, one snapshot each
# per shipment, outside any execution; what each holds is in its archive tags below.
WAL: Final = "wal"
BASE_BACKUP: Final = "base-backup"
BASE_BACKUP_FILE: Final = "base.tar"
"""The only file of a base backup's snapshot: ``pg_basebackup --format=tar`` as streamed."""

# Tag keys: ``<key>=<value>``.
_APPLICATION: Final = "application"
_EXECUTION: Final = "execution"
_PART: Final = "part"
# On a dump an application owner uploaded to restore from (docs/restore-from-upload.md): the
# restore it was uploaded for. Such a snapshot belongs to no execution and has no part tag:
# retention, catalog imports and downloads never take it for a backup's.
_UPLOAD: Final = "upload"
# What an archive snapshot holds: its first and last WAL segment, whether the last one is a
# ``.partial``, and the server time up to which every commit is in it (``until``); a base
# backup's first segment, the server time it is consistent from (``from``), the server's major
# version.
ARCHIVE_KEYS: Final = ("wal-first", "wal-last", "wal-partial", "until", "from", "major")
# On a volume's snapshot: its folder's owner, group and mode, ``uid:gid:mode`` (octal), which
# restic keeps no node for (adapters/volume_root.py).
_VOLUME_ROOT: Final = "volume-root"

Id = uuid.UUID | str


def volume_part(volume: str) -> str:
    """The part holding one volume: ``volume:<name>``."""
    return f"{_VOLUME}{volume}"


def volume_of(part: str) -> str | None:
    """The volume a part holds; None for any other part."""
    return part[len(_VOLUME) :] if part.startswith(_VOLUME) else None


def volumes_in(parts: Iterable[str]) -> list[str]:
    """The volumes among ``parts``, by name."""
    return sorted(v for v in map(volume_of, parts) if v is not None)


def database_part(name: str) -> str:
    """The part holding one named database: ``database:<name>`` (the main one is ``database``)."""
    return f"{_NAMED_DATABASE}{name}"


def database_of(part: str) -> str | None:
    """The named database a part holds; None for any other part, the main database's too."""
    return part[len(_NAMED_DATABASE) :] if part.startswith(_NAMED_DATABASE) else None


def databases_in(parts: Iterable[str]) -> list[str]:
    """The named databases among ``parts``, by name."""
    return sorted(d for d in map(database_of, parts) if d is not None)


def parts_of(manifest: Mapping[str, Any] | None) -> set[str]:
    """The part names a backup's manifest lists."""
    return {p["part"] for p in (manifest or {}).get("parts", [])}


def renamed_manifest(
    manifest: Mapping[str, Any], volumes: Mapping[str, str], databases: Mapping[str, str]
) -> dict[str, Any]:
    """A backup's manifest as a restore into another application reads it: each volume and
    named database of ``volumes`` and ``databases`` (``{source name: target name}``) under the
    target's name, in its parts and its figures; the ones not mapped are left out (they are
    not restored, and a target name may be theirs)."""

    def renamed(part: str) -> str | None:
        if (volume := volume_of(part)) is not None:
            return volume_part(volumes[volume]) if volume in volumes else None
        if (named := database_of(part)) is not None:
            return database_part(databases[named]) if named in databases else None
        return part

    parts = [
        {**part, "part": new}
        for part in manifest.get("parts", [])
        if (new := renamed(part["part"])) is not None
    ]
    figures = {
        key: {
            mapping[name]: value
            for name, value in (manifest.get(key) or {}).items()
            if name in mapping
        }
        for key, mapping in (("volumes", volumes), ("databases", databases))
    }
    return {**manifest, "parts": parts, **figures}


def application_tag(application_id: Id) -> str:
    return f"{_APPLICATION}={application_id}"


def execution_tag(execution_id: Id) -> str:
    """Every snapshot of one backup carries it: retention and cleanup forget by it alone
    (after a catalog import the application may have a new id)."""
    return f"{_EXECUTION}={execution_id}"


def upload_tags(application_id: Id, restore_id: Id) -> list[str]:
    """The tags of an uploaded dump's snapshot: its application and the restore it is for."""
    return [application_tag(application_id), f"{_UPLOAD}={restore_id}"]


def part_tag(part: str) -> str:
    return f"{_PART}={part}"


def snapshot_tags(application_id: Id, execution_id: Id, part: str) -> list[str]:
    """The tags of one part's snapshot."""
    return [application_tag(application_id), execution_tag(execution_id), part_tag(part)]


def archive_tags(application_id: Id, part: str, values: Mapping[str, str]) -> list[str]:
    """The tags of a WAL or base backup snapshot; ``values`` are keyed by ``ARCHIVE_KEYS``."""
    unknown = set(values) - set(ARCHIVE_KEYS)
    if unknown:
        raise ValueError(f"not an archive tag: {sorted(unknown)}")
    return [application_tag(application_id), part_tag(part)] + [
        f"{key}={value}" for key, value in values.items()
    ]


def volume_root_tag(root: str) -> str:
    """The tag of a volume's snapshot recording its folder (``uid:gid:mode``)."""
    return f"{_VOLUME_ROOT}={root}"


def volume_root_in(tags: Iterable[str]) -> str | None:
    """The folder a volume's snapshot recorded (``uid:gid:mode``); None before there was."""
    return read_tags(tags).get(_VOLUME_ROOT)


def read_tags(tags: Iterable[str]) -> dict[str, str]:
    """What a snapshot's tags say, by key (``application``, ``execution``, ``part``, ``upload``,
    ``volume-root`` and the ``ARCHIVE_KEYS``); tags cairn did not write are left out."""
    keys = (_APPLICATION, _EXECUTION, _PART, _UPLOAD, _VOLUME_ROOT, *ARCHIVE_KEYS)
    pairs = (tag.partition("=") for tag in tags)
    return {key: value for key, sep, value in pairs if sep and key in keys}
