"""A dump an application owner uploaded (docs/restore-from-upload.md), read through before
anything of the application is touched.

A backup's dump is cairn's own and comes with a manifest; an uploaded one comes with
nothing, so what it holds is read from the dump itself: ``restic dump`` piped into
``pg_restore --data-only --file=-``, which must read the archive's table of contents and
every data block to its end (a truncated or damaged archive fails here), and whose COPY
blocks give the rows of each table, the figures the restored database is verified against.
Nothing is written anywhere: the script goes through this process one line at a time.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from adapters.pg_dump import DumpError, tool
from adapters.restic import Repository, Restic, ResticError
from repository import names

CUSTOM_MAGIC: Final = b"PGDMP"
"""The first bytes of every ``pg_dump --format=custom`` archive."""

_COPY = re.compile(rb"^COPY (?P<table>.+?) (?:\(.*\) )?FROM stdin;$")
_IDENTIFIER = re.compile(rb'"((?:[^"]|"")*)"|([^".]+)')
_END_OF_DATA: Final = b"\\."


def _table(qualified: bytes) -> str:
    """``schema.table`` as the row counts name it (``adapters/pg_dump.py``: unquoted)."""
    parts = [
        (quoted.replace(b'""', b'"') if quoted is not None else bare)
        for quoted, bare in (m.groups() for m in _IDENTIFIER.finditer(qualified))
    ]
    return ".".join(part.decode() for part in parts if part is not None)


def copy_rows(script: Iterable[bytes]) -> dict[str, int]:
    """Rows per table of a SQL script's ``COPY … FROM stdin`` blocks (one line a row in
    COPY's text format; a newline inside a value is written ``\\n``). A script cut off
    mid-block is pg_restore's failure to report, not this count's."""
    counts: dict[str, int] = {}
    table: str | None = None
    for raw in script:
        line = raw.rstrip(b"\r\n")
        if table is not None:
            if line == _END_OF_DATA:
                table = None
            else:
                counts[table] += 1
        elif (match := _COPY.match(line)) is not None:
            table = _table(match["table"])
            counts.setdefault(table, 0)
    return counts


def read_custom_dump(
    restic: Restic, repo: Repository, snapshot_id: str, *, bin_dir: Path | None = None
) -> dict[str, int]:
    """The uploaded custom-format archive read to its end by pg_restore; its rows per table.

    A file pg_restore cannot read whole is a ``DumpError`` that no retry helps, naming
    pg_restore's first complaint."""
    pg_restore = tool("pg_restore", bin_dir)
    dump = restic.dump(repo, snapshot_id, names.DATABASE_FILE)
    assert dump.stdout is not None
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                [pg_restore, "--data-only", "--file=-"],
                stdin=dump.stdout,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        except OSError as exc:
            dump.kill()
            raise DumpError(f"cannot run {pg_restore}: {exc}", retryable=False) from None
        dump.stdout.close()  # pg_restore holds its own copy; restic must see it go
        assert proc.stdout is not None
        try:
            with proc:
                counts = copy_rows(proc.stdout)
                exit_code = proc.wait()
        except BaseException:
            proc.kill()
            dump.kill()
            raise
        errors.seek(0)
        stderr = errors.read(4096).decode(errors="replace").strip()
    try:
        restic.finish_dump(repo, dump)
    except ResticError as exc:
        raise DumpError(
            f"reading the uploaded dump from the repository failed: {exc.message}",
            retryable=exc.retryable,
        ) from exc
    if exit_code != 0:
        raise DumpError(
            "the uploaded file is not a whole pg_dump custom-format archive: "
            + (stderr or f"pg_restore exit {exit_code}"),
            retryable=False,
        )
    return counts
