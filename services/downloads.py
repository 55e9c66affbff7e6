"""Downloads of a backup's parts (issue 26, docs/downloads.md).

A download is a short-lived link to one part of one backup, streamed from the repository in
the standard format of its kind: the database as ``pg_dump`` custom format, a volume as a tar
archive (gzip, zstd or plain), the configuration objects as YAML. The link is the credential, as a
presigned URL is: whoever holds it may fetch that part until it expires or is revoked. Only
its SHA-256 is stored, so the metadata database never holds a usable link.

Nothing is staged: restic's ``dump`` is read chunk by chunk into the response, so neither the
API's disk nor its memory grows with the part's size.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import yaml
import zstandard
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.restic import Repository, Restic, ResticError
from core.settings import Settings
from core.states import RunStatus
from db import audit
from db.models import Application, BackupDownload, BackupExecution, BackupStorage
from repository import names
from repository.store import open_repository
from services import backups
from services.errors import Conflict, Gone, Invalid, NotFound

MIN_TTL: Final = 60
DEFAULT_TTL: Final = 3600
MAX_TTL: Final = 24 * 3600
COMPRESSIONS: Final = ("none", "gzip", "zstd")
_GZIP_LEVEL: Final = 6
_ZSTD_LEVEL: Final = 3  # zstd's own default: faster than gzip's 6 and smaller
# compression -> (file name suffix, media type)
_PACKED: Final = {"gzip": (".gz", "application/gzip"), "zstd": (".zst", "application/zstd")}


class Unresumable(Exception):
    """A range that this export cannot serve (HTTP 416)."""


@dataclass(frozen=True)
class Export:
    """What a link streams: the file's name and type, its size when known (a database dump's
    size is in its snapshot's tree; an archive's is known only once it is written)."""

    filename: str
    media_type: str
    size: int | None
    chunks: AsyncIterator[bytes]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _invalid(field: str, message: str, code: str) -> Invalid:
    return Invalid([{"loc": (field,), "msg": message, "type": code}])


def parts(metadata: dict[str, Any] | None) -> list[str]:
    """The parts of a backup (its manifest's ``parts``) that can be downloaded: all but the
    manifest itself, which is cairn's bookkeeping."""
    return sorted(names.parts_of(metadata) - {names.MANIFEST})


async def create(
    session: AsyncSession,
    actor: audit.Actor,
    application: Application,
    backup_id: uuid.UUID,
    part: str,
    compression: str | None,
    expires_in: int,
) -> tuple[BackupDownload, str]:
    """A new link to ``part`` of one of the application's succeeded backups, and its secret
    (returned once, never stored). The caller commits."""
    execution = await backups.backup_of(session, application, backup_id)
    if execution.status != RunStatus.SUCCEEDED:
        raise Conflict(
            f"backup {backup_id} is {execution.status}: only a succeeded backup can be downloaded",
            kind="backup-not-downloadable",
            title="Backup cannot be downloaded",
        )
    available = parts(execution.metadata_)
    if part not in available:
        raise _invalid(
            "part",
            f"backup {backup_id} has no part {part!r}; it has: {', '.join(available)}",
            "unknown_part",
        )
    if compression is None:
        compression = "gzip" if names.volume_of(part) is not None else "none"
    if not MIN_TTL <= expires_in <= MAX_TTL:
        raise _invalid(
            "expires_in",
            f"a link lives from {MIN_TTL} to {MAX_TTL} seconds, not {expires_in}",
            "out_of_range",
        )
    token = secrets.token_urlsafe(32)
    link = BackupDownload(
        id=uuid.uuid4(),
        workspace_id=application.workspace_id,
        application_id=application.id,
        backup_execution_id=execution.id,
        part=part,
        compression=compression,
        token_sha256=_digest(token),
        created_by=actor.label,
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
    )
    session.add(link)
    audit.record(
        session,
        actor,
        "download.create",
        "backup_download",
        link.id,
        workspace_id=application.workspace_id,
        details={
            "backup_id": str(execution.id),
            "part": part,
            "compression": compression,
            "expires_at": link.expires_at.isoformat(),
        },
    )
    return link, token


async def of_application(session: AsyncSession, application: Application) -> list[BackupDownload]:
    """The application's links, newest first (expired and revoked ones too: they are history)."""
    rows = await session.scalars(
        select(BackupDownload)
        .where(BackupDownload.application_id == application.id)
        .order_by(BackupDownload.created_at.desc(), BackupDownload.id.desc())
    )
    return list(rows)


async def revoke(
    session: AsyncSession, actor: audit.Actor, application: Application, download_id: uuid.UUID
) -> BackupDownload:
    """Ends a link at once; revoking a revoked link changes and audits nothing."""
    link = await session.scalar(
        select(BackupDownload).where(
            BackupDownload.id == download_id, BackupDownload.application_id == application.id
        )
    )
    if link is None:
        raise NotFound("download", download_id)
    if link.revoked_at is None:
        link.revoked_at = datetime.now(UTC)
        audit.record(
            session,
            actor,
            "download.revoke",
            "backup_download",
            link.id,
            workspace_id=link.workspace_id,
        )
    return link


def refuse_use(session: AsyncSession, actor: audit.Actor, link: BackupDownload | None) -> None:
    """Raises the refusal of a link that cannot be used, audited (the caller commits)."""
    if link is None:
        raise NotFound("download", "for this link")
    now = datetime.now(UTC)
    reason = (
        "revoked" if link.revoked_at is not None else "expired" if link.expires_at <= now else None
    )
    if reason is None:
        return
    audit.record(
        session,
        actor,
        "download.refused",
        "backup_download",
        link.id,
        workspace_id=link.workspace_id,
        details={"reason": reason},
    )
    at = link.revoked_at if link.revoked_at is not None else link.expires_at
    raise Gone(
        f"this download link was {reason} at {at.isoformat()}; ask for a new one",
        "download-gone",
        "Download link no longer valid",
    )


async def audit_refused_request(
    session: AsyncSession, actor: audit.Actor, application_id: uuid.UUID, reason: str
) -> None:
    """Records a refused request for a link, in the application's workspace when the
    application exists (its administrators see who tried), else in none."""
    application = await session.get(Application, application_id)
    audit.record(
        session,
        actor,
        "download.refused",
        "application",
        application_id,
        workspace_id=application.workspace_id if application else None,
        details={"reason": reason},
    )


async def by_token(session: AsyncSession, token: str) -> BackupDownload | None:
    return await session.scalar(
        select(BackupDownload).where(BackupDownload.token_sha256 == _digest(token))
    )


async def record_use(
    session: AsyncSession, actor: audit.Actor, link: BackupDownload, start: int
) -> None:
    """Counts and audits one use (the caller commits before the bytes flow)."""
    await session.execute(
        update(BackupDownload)
        .where(BackupDownload.id == link.id)
        .values(uses=BackupDownload.uses + 1, last_used_at=datetime.now(UTC))
    )
    audit.record(
        session,
        actor,
        "download.use",
        "backup_download",
        link.id,
        workspace_id=link.workspace_id,
        details={"part": link.part, "from_byte": start},
    )


async def open_export(session: AsyncSession, settings: Settings, link: BackupDownload) -> Export:
    """The part behind ``link``, as a stream from the repository."""
    execution = await session.get(BackupExecution, link.backup_execution_id)
    application = await session.get(Application, link.application_id)
    assert execution is not None and application is not None  # cascades with the link
    if execution.status != RunStatus.SUCCEEDED:
        raise Conflict(
            f"backup {execution.id} is {execution.status} now: its data is no longer kept",
            kind="backup-not-downloadable",
            title="Backup cannot be downloaded",
        )
    storage = (
        await session.get(BackupStorage, execution.storage_id) if execution.storage_id else None
    )
    if storage is None:
        raise Conflict(
            "the storage that held this backup was deleted",
            kind="backup-not-downloadable",
            title="Backup cannot be downloaded",
        )
    repo = await open_repository(session, settings, application, storage)
    snapshot = next(
        str(p["snapshot_id"])
        for p in (execution.metadata_ or {}).get("parts", [])
        if p["part"] == link.part
    )
    restic = Restic(settings.restic_bin, cache_dir=settings.restic_cache)
    try:
        return await _export(restic, repo, snapshot, link, _stem(application, execution))
    except ResticError as exc:
        raise Conflict(
            f"the backup cannot be read from its storage: {exc.message}",
            kind="backup-unreadable",
            title="Backup cannot be read",
        ) from None


def from_byte(export: Export, start: int) -> Export:
    """The export from byte ``start``, a resumed download; ``Unresumable`` when it cannot."""
    if start == 0:
        return export
    if export.size is None:
        raise Unresumable(
            f"{export.filename} is made as it is sent, so its size is not known in advance:"
            " download it from its start"
        )
    if start >= export.size:
        raise Unresumable(f"{export.filename} has {export.size} bytes; a range must start before")
    return Export(export.filename, export.media_type, export.size, _skip(export.chunks, start))


def _stem(application: Application, execution: BackupExecution) -> str:
    return f"{application.name}-{execution.started_at:%Y%m%dT%H%M%SZ}"


async def _export(
    restic: Restic, repo: Repository, snapshot: str, link: BackupDownload, stem: str
) -> Export:
    volume = names.volume_of(link.part)
    if link.part == names.DATABASE:
        size = await asyncio.to_thread(restic.file_size, repo, snapshot, names.DATABASE_FILE)
        chunks = restic.stream(repo, snapshot, "/" + names.DATABASE_FILE)
        return _compressed(Export(f"{stem}.dump", "application/octet-stream", size, chunks), link)
    # a volume's folder, or a named database's dump (database.sql, dump.rdb: docs/engines.md)
    if (name := volume or names.database_of(link.part)) is not None:
        tar = restic.stream(repo, snapshot, "/", tar=True)
        return _compressed(Export(f"{stem}-{name}.tar", "application/x-tar", None, tar), link)
    config = _config_yaml(restic.stream(repo, snapshot, "/" + names.CONFIG_FILE))
    return _compressed(Export(f"{stem}-config.yaml", "application/yaml", None, config), link)


class _Packer(Protocol):
    """What zlib's and zstandard's streaming compressors share."""

    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


def _compressed(export: Export, link: BackupDownload) -> Export:
    if link.compression == "none":
        return export
    suffix, media_type = _PACKED[link.compression]
    chunks = _packed(export.chunks, _packer(link.compression))
    return Export(f"{export.filename}{suffix}", media_type, None, chunks)


def _packer(compression: str) -> _Packer:
    """gzip with no name and no time in its header, zstd with a checksum and no dictionary:
    either way the same part gives the same bytes."""
    if compression == "gzip":
        return zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=True).compressobj()


async def _packed(chunks: AsyncIterator[bytes], packer: _Packer) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if out := packer.compress(chunk):
            yield out
    yield packer.flush()


async def _config_yaml(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The configuration objects as one YAML stream, ``kubectl apply -f`` ready (small: the
    whole document is read first)."""
    document: dict[str, Any] = json.loads(b"".join([c async for c in chunks]))
    objects = [*document.get("configmaps", []), *document.get("secrets", [])]
    yield yaml.safe_dump_all(objects, sort_keys=False, allow_unicode=True).encode()


async def _skip(chunks: AsyncIterator[bytes], start: int) -> AsyncIterator[bytes]:
    """The stream from byte ``start``: restic cannot seek, so the bytes before are read and
    dropped (a resume costs reading them again, not sending them)."""
    async for chunk in chunks:
        if start >= len(chunk):
            start -= len(chunk)
            continue
        yield chunk[start:]
        start = 0
