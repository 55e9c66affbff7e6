"""A restore of an application's database from a dump its owner uploads
(docs/restore-from-upload.md): the migration path onto the platform.

The file is streamed into the application's restic repository (nothing staged on the API's
disk, one chunk in memory) as a snapshot tagged with the restore it is for
(``repository/names.py::upload_tags``); the restore's row records it in ``details.upload``
and the ordinary ``RestoreWorkflow`` runs: its ``verify backup`` step reads the whole dump
(through pg_restore, or a plain script line by line) before the application is stopped,
then the dump is restored beside the live database and swapped in, and the result is
verified against the rows the dump holds.
What can be told from the first bytes (empty, not a custom-format archive, not text for a
plain-format dump) is refused here, before anything is stored.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from adapters.restic import Repository, Restic, ResticError
from adapters.uploaded_dump import CUSTOM, CUSTOM_MAGIC, PLAIN
from core.restore_details import RestoreDetails, RestoreUpload
from core.settings import Settings
from db import audit
from db.models import Application, BackupRestore
from repository import names
from repository.store import current_repository, read_password
from services.errors import Conflict, Invalid, Unsupported
from services.restores import (
    check_confirmed,
    check_own_database,
    check_registration,
    start_restore,
)
from services.runs import claim_application
from workflows.restore import RestoreWorkflow

log = logging.getLogger(__name__)

# bytes read before the format is judged: a tar archive's "ustar" is at byte 257
_HEAD = 512


def _refused(message: str, code: str) -> Invalid:
    """The uploaded file itself is refused (field ``body``)."""
    return Invalid([{"loc": (), "msg": message, "type": code}])


def _looks_like(head: bytes) -> str:
    """What a file that is not a custom-format archive seems to be, for the refusal."""
    if head[257:262] == b"ustar":
        return "a tar archive (pg_dump --format=tar is not accepted)"
    if head[:2] == b"\x1f\x8b":
        return "a gzip file (upload the archive pg_dump wrote, not compressed again)"
    if head[:4] == b"PK\x03\x04":
        return "a zip file"
    try:
        head.decode()
    except UnicodeDecodeError:
        return "binary data of no known kind"
    return "text (a plain-format SQL dump?)"


def check_head(head: bytes, dump_format: str) -> None:
    """The file's first bytes are those of the format it is said to be (Invalid)."""
    if not head:
        raise _refused("the uploaded file is empty", "empty_upload")
    if dump_format == CUSTOM and not head.startswith(CUSTOM_MAGIC):
        raise _refused(
            f"not a pg_dump custom-format archive (it does not begin with PGDMP; it looks"
            f" like {_looks_like(head)})",
            "not_a_custom_dump",
        )
    if dump_format == PLAIN and not _text(head):
        looks = (
            "a pg_dump custom-format archive: send it with format=custom"
            if head.startswith(CUSTOM_MAGIC)
            else _looks_like(head)
        )
        raise _refused(
            f"not a plain-format SQL dump (not UTF-8 text; it looks like {looks})",
            "not_a_plain_dump",
        )


def _text(head: bytes) -> bool:
    """UTF-8 without NUL bytes (a character cut at the end of ``head`` is fine)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


@dataclass
class _Received:
    """What went through: size and SHA-256, counted as the chunks pass."""

    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


async def _checked(
    chunks: AsyncIterator[bytes], dump_format: str, received: _Received
) -> AsyncIterator[bytes]:
    """``chunks`` once their first bytes passed ``check_head``, counted into ``received``."""
    head = b""
    async for chunk in chunks:
        head += chunk
        if len(head) >= _HEAD:
            break
    check_head(head, dump_format)
    received.size += len(head)
    received.digest.update(head)
    yield head
    async for chunk in chunks:
        received.size += len(chunk)
        received.digest.update(chunk)
        yield chunk


async def _repository(
    session: AsyncSession, settings: Settings, application: Application
) -> tuple[uuid.UUID, Repository]:
    """Where the dump goes: the application's repository in its policy's storage (Conflict
    before its first backup made one)."""
    row = await current_repository(session, application.id)
    if row is None:
        raise Conflict(
            "the application has no backup repository yet: give it a backup policy and make"
            " a first backup, then upload",
            kind="no-repository",
            title="No backup repository",
        )
    return row.storage_id, Repository(path=Path(row.path), password=read_password(settings, row))


def check_request(application: Application, confirm: str | None, settings: Settings) -> None:
    """What is refused before a byte is read: the application's kind and database, the
    typed confirmation."""
    if application.platform_kind != "local":
        raise Unsupported(
            f"a restore from an uploaded dump is not built for {application.platform_kind}"
            " applications",
            "platform-not-supported",
            "Platform not supported",
            {"application": "local applications only"},
        )
    if not application.platform_settings.get("database"):
        raise _refused("the application has no database to restore into", "no_database")
    check_confirmed(application, confirm, "the uploaded dump replaces the application's database")
    check_registration(application, True, [], settings)


async def request(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    application: Application,
    chunks: AsyncIterator[bytes],
    actor: audit.Actor,
    *,
    dump_format: str,
    confirm: str | None,
) -> BackupRestore:
    """Checks the request, streams the dump into the application's repository and starts
    its restore; committed. A refusal after the dump was stored forgets its snapshot.

    Refusals: services.errors' Invalid, Unsupported and Conflict, services.runs' as for any
    restore, and whatever ``chunks`` raises (a body over the size limit)."""
    check_request(application, confirm, settings)
    await check_own_database(application, settings)
    storage_id, repo = await _repository(session, settings, application)
    await claim_application(session, temporal, application.id)  # refused before the upload
    await session.commit()  # the lock is not held while the file arrives
    restore_id = uuid.uuid4()
    received = _Received()
    restic = Restic(settings.restic_bin, cache_dir=settings.restic_cache)
    try:
        stored = await restic.backup_chunks(
            repo,
            _checked(chunks, dump_format, received),
            names.DATABASE_FILE,
            names.upload_tags(application.id, restore_id),
        )
    except ResticError as exc:
        raise Conflict(
            f"the dump could not be stored in the application's repository: {exc.message}",
            kind="upload-not-stored",
            title="Upload not stored",
        ) from None
    upload = RestoreUpload(
        dump_format, received.size, received.digest.hexdigest(), str(storage_id), stored.snapshot_id
    )
    try:
        return await _start(session, temporal, application, actor, restore_id, upload)
    except BaseException:
        await session.rollback()
        try:
            await asyncio.to_thread(restic.forget, repo, [stored.snapshot_id])
        except ResticError as exc:
            log.warning("uploaded snapshot %s left in %s: %s", stored.snapshot_id, repo.path, exc)
        raise


async def _start(
    session: AsyncSession,
    temporal: Client,
    application: Application,
    actor: audit.Actor,
    restore_id: uuid.UUID,
    upload: RestoreUpload,
) -> BackupRestore:
    """The upload's audit event and the restore's row and workflow, under the run lock."""
    await claim_application(session, temporal, application.id)
    received = {"format": upload.format, "bytes": upload.bytes, "sha256": upload.sha256}
    audit.record(
        session,
        actor,
        "restore.upload_received",
        "backup_restore",
        restore_id,
        workspace_id=application.workspace_id,
        details={**received, "snapshot_id": upload.snapshot_id},
    )
    return await start_restore(
        session,
        temporal,
        RestoreWorkflow.run,
        application,
        actor,
        restore_id=restore_id,
        execution_id=None,
        restore_type="full",
        details=RestoreDetails(database=True, upload=upload).to_dict(),
        audited={"upload": received, "database": True, "volumes": []},
    )
