"""A dump an application owner uploaded (docs/restore-from-upload.md): read through before
anything of the application is touched, and a plain-format one restored.

A backup's dump is cairn's own and comes with a manifest; an uploaded one comes with
nothing, so what it holds is read from the dump itself. A custom-format archive: ``restic
dump`` piped into ``pg_restore --data-only --file=-``, which must read the archive's table
of contents and every data block to its end (a truncated or damaged archive fails here). A
plain-format one is its own script. The COPY blocks of the script give the rows of each
table, the figures the restored database is verified against. Nothing is written anywhere:
the script goes through this process one line at a time.

A plain-format dump is SQL for psql, and psql runs backslash commands (``\\!`` a shell
command, ``\\o |…``, ``\\copy … program``) on the worker host. So a line beginning with one
is refused when the dump is read, and the restore runs psql in restricted mode (``\\restrict``
with a random key first: every later backslash command is refused, wherever it is on its
line); the dump's own ``\\restrict``/``\\unrestrict`` lines, which pg_dump writes since the
same fix (CVE-2025-8714), are left out.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Final

from adapters.pg_dump import DumpError, PgTarget, conninfo, environment, tool
from adapters.restic import Repository, Restic, ResticError
from repository import names

CUSTOM_MAGIC: Final = b"PGDMP"
"""The first bytes of every ``pg_dump --format=custom`` archive."""
CUSTOM: Final = "custom"
PLAIN: Final = "plain"
"""The formats an upload is in (``pg_dump --format=``), as the API takes and stores them."""

_COPY = re.compile(rb"^COPY (?P<table>.+?) (?:\(.*\) )?FROM stdin;$")
_IDENTIFIER = re.compile(rb'"((?:[^"]|"")*)"|([^".]+)')
_END_OF_DATA: Final = b"\\."
# the restricted mode pg_dump's plain output enters and leaves (left out: cairn sets its own)
_OWN_RESTRICTION = re.compile(rb"^\\(un)?restrict [A-Za-z0-9]+$")


def _table(qualified: bytes) -> str:
    """``schema.table`` as the row counts name it (``adapters/pg_dump.py``: unquoted)."""
    parts = [
        (quoted.replace(b'""', b'"') if quoted is not None else bare)
        for quoted, bare in (m.groups() for m in _IDENTIFIER.finditer(qualified))
    ]
    return ".".join(part.decode() for part in parts if part is not None)


def copy_rows(script: Iterable[bytes], *, plain: bool = False) -> dict[str, int]:
    """Rows per table of a SQL script's ``COPY … FROM stdin`` blocks (one line a row in
    COPY's text format; a newline inside a value is written ``\\n``). A script cut off
    mid-block is pg_restore's failure to report, not this count's. ``plain``: an uploaded
    script psql will run, where a line beginning with a backslash command is refused."""
    counts: dict[str, int] = {}
    table: str | None = None
    for number, raw in enumerate(script, 1):
        line = raw.rstrip(b"\r\n")
        if table is not None:
            if line == _END_OF_DATA:
                table = None
            else:
                counts[table] += 1
        elif (match := _COPY.match(line)) is not None:
            table = _table(match["table"])
            counts.setdefault(table, 0)
        elif plain and line.lstrip().startswith(b"\\") and not _OWN_RESTRICTION.match(line):
            command = line.lstrip().split()[0].decode(errors="replace")
            raise DumpError(
                f"line {number} of the uploaded dump is the psql command {command}: backslash"
                " commands are not run (only SQL and COPY data)",
                retryable=False,
            )
    if plain and table is not None:
        raise DumpError(f"the uploaded dump ends inside the data of table {table}", retryable=False)
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
        proc = _start(
            [pg_restore, "--data-only", "--file=-"],
            dump,
            stdin=dump.stdout,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
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
    _finish(restic, repo, dump)
    if exit_code != 0:
        raise DumpError(
            "the uploaded file is not a whole pg_dump custom-format archive: "
            + (stderr or f"pg_restore exit {exit_code}"),
            retryable=False,
        )
    return counts


def read_plain_dump(restic: Restic, repo: Repository, snapshot_id: str) -> dict[str, int]:
    """The uploaded plain-format script read to its end (no backslash command, no COPY
    block left open); its rows per table."""
    dump = restic.dump(repo, snapshot_id, names.DATABASE_FILE)
    assert dump.stdout is not None
    try:
        counts = copy_rows(dump.stdout, plain=True)
    except BaseException:
        dump.kill()
        dump.wait()
        raise
    _finish(restic, repo, dump)
    return counts


def restore_plain(
    target: PgTarget,
    restic: Restic,
    repo: Repository,
    snapshot_id: str,
    *,
    bin_dir: Path | None = None,
) -> None:
    """The uploaded plain-format script run by psql into ``target`` (a fresh database), in
    one transaction that stops at the first error, in restricted mode (module docstring)."""
    psql = tool("psql", bin_dir)
    argv = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "--no-password"]
    dump = restic.dump(repo, snapshot_id, names.DATABASE_FILE)
    assert dump.stdout is not None
    with tempfile.TemporaryFile() as errors:
        proc = _start(
            [*argv, f"--dbname={conninfo(target)}"],
            dump,
            env=environment(target),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        assert proc.stdin is not None
        try:
            _feed(dump.stdout, proc.stdin)
            exit_code = proc.wait()
        except BaseException:
            proc.kill()
            dump.kill()
            raise
        errors.seek(0)
        stderr = errors.read(4096).decode(errors="replace").strip()
    if exit_code != 0:
        dump.kill()
        dump.wait()
        raise DumpError(
            f"psql failed (exit {exit_code}): {stderr or 'no message'}", retryable=False
        )
    _finish(restic, repo, dump)


def _feed(script: IO[bytes], psql: IO[bytes]) -> None:
    """``script`` into psql after a restriction with a key nobody else knows."""
    try:
        psql.write(b"\\restrict " + secrets.token_hex(16).encode() + b"\n")
        for line in script:
            if not _OWN_RESTRICTION.match(line.rstrip(b"\r\n")):
                psql.write(line)
        psql.close()
    except BrokenPipeError:
        pass  # psql stopped at an error: its exit code and message say which


def _start(
    argv: list[str],
    dump: subprocess.Popen[bytes],
    *,
    stdin: IO[bytes] | int,
    stdout: int,
    stderr: IO[bytes],
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``argv`` started on the dump; a tool that cannot start ends restic's dump too (nothing
    would read it)."""
    try:
        return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env)
    except OSError as exc:
        dump.kill()
        raise DumpError(f"cannot run {argv[0]}: {exc}", retryable=False) from None


def _finish(restic: Restic, repo: Repository, dump: subprocess.Popen[bytes]) -> None:
    try:
        restic.finish_dump(repo, dump)
    except ResticError as exc:
        raise DumpError(
            f"reading the uploaded dump from the repository failed: {exc.message}",
            retryable=exc.retryable,
        ) from exc
