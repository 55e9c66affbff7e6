"""restic adapter: one repository per application, driven through restic's CLI.

Written against restic 0.14 (the oldest version cairn supports; Debian 12 ships it).
That version has no dedicated exit codes for "no repository" or "locked" (they came in
0.17), so failures are told apart by restic's stderr. Of the commands used here only
``backup`` and ``snapshots`` print JSON in 0.14; the others are run for their exit status.

Every restic process opening a repository first derives the key from the password with
scrypt, which ``restic init`` calibrates to cost about half a second of CPU. cairn's
repository passwords are 256 random bits, so stretching them adds no protection: cairn
writes a new repository itself with cheap scrypt parameters (``adapters/restic_format.py``),
saving the calibration once and that half second in every later command.

The repository password reaches restic only through ``RESTIC_PASSWORD`` in its
environment: never in argv (visible in ``ps``), never in a message or a log line. Inherited
``RESTIC_*`` variables are dropped so a stray ``RESTIC_REPOSITORY`` or
``RESTIC_PASSWORD_COMMAND`` of the worker's environment cannot redirect a command.

Everything here blocks; Temporal activities call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Final, TypeVar

from adapters.errors import AdapterError, without_stack_traces
from adapters.restic_format import create_repository

logger = logging.getLogger(__name__)

# Snapshots record this host name instead of the worker's: any worker may back up any
# application, and restic's automatic parent choice only considers snapshots of one host.
HOST: Final = "cairn"

# restic prints JSON status lines up to 60 times a second; callers heartbeat, once a
# second is plenty.
_PROGRESS_FPS: Final = "1"

# restic 0.14 exit codes; 0.17+ adds 10 (no repository), 11 (locked), 12 (wrong password).
_EXIT_INCOMPLETE: Final = 3

# Failures that recur however often the command runs. Anything else (a lock held by another
# run, I/O errors of the storage, a full disk) may pass, and the retry policy bounds it; a
# storage that refuses writes (read-only, permissions) needs an operator, so it fails at once.
_PERMANENT: Final = re.compile(
    r"wrong password or no key found"
    r"|Is there a repository at the following location"
    r"|config file already exists"
    r"|unknown (?:flag|shorthand flag|command)"
    r"|invalid argument"
    r"|no matching ID found"
    r"|not found in snapshot"
    r"|snapshot is empty"
    r"|repository contains errors"
    r"|requires at least repository format version"
    # the storage refuses writes: retrying cannot help until an operator fixes it
    r"|read-only file system"
    r"|operation not permitted"
    r"|permission denied",
    re.IGNORECASE,
)

# restic's own retry of a storage operation, before the error it retried:
# "Save(<lock/1a2b3c4d5e>) returned error, retrying after 1.2s: <error>"
_RETRY_NOTICE: Final = re.compile(r"^.*? returned error, retrying after [^:]*: ")


@dataclass(frozen=True)
class _Refusal:
    """A storage that does not take writes, as the system and restic say it, and as cairn does."""

    errno: int
    said: str  # strerror, as restic prints it (lower case)
    named: str
    retryable: bool  # a full storage may pass (retention, an operator); the others need one


_REFUSALS: Final = (
    _Refusal(errno.EROFS, "read-only file system", "the storage is read-only", False),
    _Refusal(
        errno.EPERM,
        "operation not permitted",
        "the storage is read-only for the worker"
        " (operation not permitted, as for an immutable folder)",
        False,
    ),
    _Refusal(
        errno.EACCES,
        "permission denied",
        "the storage is read-only for the worker (permission denied)",
        False,
    ),
    _Refusal(errno.ENOSPC, "no space left on device", "the storage is full", True),
    _Refusal(errno.EDQUOT, "disk quota exceeded", "the storage is full (disk quota)", True),
)

T = TypeVar("T")

# restic refuses to run while another (possibly dead) process holds the repository's lock.
_LOCKED: Final = re.compile(r"repository is already locked")


@dataclass(frozen=True)
class Repository:
    path: Path
    password: str = field(repr=False)
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        # An empty RESTIC_PASSWORD makes restic prompt on stdin, which is the dump pipe.
        if not self.password:
            raise ResticError("the repository password is empty", retryable=False)


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: str
    paths: list[str]
    tags: list[str]
    parent: str | None


@dataclass(frozen=True)
class BackupResult:
    snapshot_id: str  # the short id restic's summary gives; every command accepts it
    files_new: int
    files_changed: int
    files_unmodified: int
    data_added: int  # bytes added to the repository, after deduplication and compression
    total_bytes_processed: int


@dataclass(frozen=True)
class Progress:
    """One backup status; totals are 0 while unknown (always for stdin); percent is 0-100."""

    bytes_done: int
    total_bytes: int
    files_done: int
    total_files: int
    percent: float


class ResticError(AdapterError):
    """A restic command failed; ``exit_code`` is restic's, None when it never ran to the end."""

    def __init__(self, message: str, *, retryable: bool, exit_code: int | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.exit_code = exit_code


def _redact(text: str, repo: Repository | None) -> str:
    """Belt and braces: restic never prints the password, but a message must not carry it."""
    if repo is not None and repo.password in text:
        return text.replace(repo.password, "********")
    return text


def _gist(text: str) -> str:
    """restic's first line saying what went wrong: no stack trace, no retry notice (the
    error it retried, when nothing else was said)."""
    lines = [line.strip() for line in without_stack_traces(text).splitlines() if line.strip()]
    said = [line for line in lines if not _RETRY_NOTICE.match(line)]
    retried = [_RETRY_NOTICE.sub("", line) for line in lines if _RETRY_NOTICE.match(line)]
    return (said or retried or ["no message"])[0]


def _refusal_in(text: str, repo: Repository | None) -> _Refusal | None:
    """The refusal restic met writing in the repository (not in a restore's target)."""
    if repo is None:
        return None
    for line in text.lower().splitlines():
        if str(repo.path).lower() in line:
            for refusal in _REFUSALS:
                if refusal.said in line:
                    return refusal
    return None


def _failure(command: str, exit_code: int, text: str, repo: Repository | None) -> ResticError:
    """restic's first meaningful line, with the storage named when it refused; the whole
    text (stack traces, restic's retries) goes to the log."""
    logger.warning("restic %s failed (exit %d):\n%s", command, exit_code, _redact(text, repo))
    refusal = _refusal_in(text, repo)
    named = f"{refusal.named}: " if refusal else ""
    return ResticError(
        _redact(f"restic {command} failed (exit {exit_code}): {named}{_gist(text)}", repo),
        retryable=not _PERMANENT.search(text),
        exit_code=exit_code,
    )


def _refused(path: Path, exc: OSError, doing: str) -> ResticError | None:
    """``exc``, met writing ``path`` in a storage, as the refusal it is (None if it is not)."""
    for refusal in _REFUSALS:
        if exc.errno == refusal.errno:
            return ResticError(
                f"{refusal.named}: cannot {doing} {path} ({exc.strerror})",
                retryable=refusal.retryable,
            )
    return None


def _check_writable(repo: Repository) -> None:
    """Fails at once, saying why, when the storage cannot take the lock restic writes first.

    Every command (a read too) first writes a lock file in ``locks``; restic retries a
    refused write for most of a minute, longer than a step may go without a heartbeat,
    then prints a Go stack trace. A folder that is missing is left for restic to report.
    """
    probe = repo.path / "locks" / f".cairn-write-check-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch(exist_ok=False)
    except OSError as exc:
        refused = _refused(probe.parent, exc, "write in")
        if refused is not None:
            raise refused from None
        return
    probe.unlink(missing_ok=True)


def _int(message: Mapping[str, Any], key: str) -> int:
    value = message.get(key, 0)
    return value if isinstance(value, int) else 0


def _progress(message: Mapping[str, Any]) -> Progress:
    percent = message.get("percent_done", 0)
    return Progress(
        bytes_done=_int(message, "bytes_done"),
        total_bytes=_int(message, "total_bytes"),
        files_done=_int(message, "files_done"),
        total_files=_int(message, "total_files"),
        percent=float(percent) * 100 if isinstance(percent, int | float) else 0.0,
    )


def _result(summary: Mapping[str, Any]) -> BackupResult:
    return BackupResult(
        snapshot_id=str(summary["snapshot_id"]),
        files_new=_int(summary, "files_new"),
        files_changed=_int(summary, "files_changed"),
        files_unmodified=_int(summary, "files_unmodified"),
        data_added=_int(summary, "data_added"),
        total_bytes_processed=_int(summary, "total_bytes_processed"),
    )


def _unreadable(stderr: str) -> str:
    """The files restic reported it could not read, from its JSON error lines."""
    items: list[str] = []
    for line in stderr.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or message.get("message_type") != "error":
            continue
        error = message.get("error")
        reason = ""
        if isinstance(error, dict):
            errno = error.get("Err")
            reason = os.strerror(errno) if isinstance(errno, int) else str(error.get("Op", ""))
        items.append(f"{message.get('item', '?')} ({reason or 'error'})")
    shown = "; ".join(items[:10])
    return shown + (f"; and {len(items) - 10} more" if len(items) > 10 else "")


async def _summary_of(lines: asyncio.StreamReader) -> dict[str, Any] | None:
    """The summary among restic's JSON lines, read to their end (so restic never blocks
    on a full pipe)."""
    summary = None
    async for line in lines:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("message_type") == "summary":
            summary = message
    return summary


def _check_tags(tags: Sequence[str]) -> list[str]:
    # restic splits --tag values on commas, so "a,b" would silently become two tags.
    for tag in tags:
        if not tag or "," in tag:
            raise ResticError(f"invalid restic tag {tag!r}: empty or has a comma", retryable=False)
    return list(tags)


_STREAM_CHUNK: Final = 1 << 20


class Restic:
    """The restic CLI; one instance serves any number of repositories and threads."""

    def __init__(self, binary: str = "restic", cache_dir: Path | None = None) -> None:
        self.binary = binary
        # restic keeps one cache folder per repository id inside it: index and snapshot
        # files stay local, so a command on an NFS/CephFS storage does not reread them
        self.cache_dir = cache_dir

    def _env(self, repo: Repository | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        env["RESTIC_PROGRESS_FPS"] = _PROGRESS_FPS
        if repo is not None:
            env["RESTIC_PASSWORD"] = repo.password
        return env

    def _argv(self, repo: Repository, args: Sequence[str]) -> list[str]:
        """The command line of a command on ``repo``, once its storage takes writes."""
        _check_writable(repo)
        argv = [self.binary, "--repo", str(repo.path)]
        cache_dir = repo.cache_dir or self.cache_dir
        if cache_dir is not None:
            argv += ["--cache-dir", str(cache_dir)]
        return [*argv, *args]

    def _run(self, repo: Repository | None, args: Sequence[str]) -> str:
        """Runs a command whose output is small, returns its stdout.

        A lock left by a killed restic blocks every command on the repository for 30
        minutes; one ``unlock`` (stale locks only, a live run's lock stays) and one more try
        get past it without waiting.
        """
        if repo is None or args[0] == "unlock":
            return self._run_once(repo, args)
        return self._past_stale_lock(repo, lambda: self._run_once(repo, args))

    def _past_stale_lock(self, repo: Repository, command: Callable[[], T]) -> T:
        try:
            return command()
        except ResticError as exc:
            if not _LOCKED.search(exc.message):
                raise
            self._run_once(repo, ["unlock"])
            return command()

    def _run_once(self, repo: Repository | None, args: Sequence[str]) -> str:
        argv = [self.binary, *args] if repo is None else self._argv(repo, args)
        try:
            done = subprocess.run(
                argv,
                env=self._env(repo),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as exc:
            raise ResticError(f"cannot run {self.binary}: {exc}", retryable=False) from None
        if done.returncode != 0:
            # check reports some damage on stdout, after its progress lines: stderr first
            output = f"{done.stderr}\n{done.stdout}" if args[0] == "check" else done.stderr
            raise _failure(args[0], done.returncode, output, repo)
        return done.stdout

    def version(self) -> str:
        output = self._run(None, ["version"])
        match = re.match(r"restic (\S+)", output)
        if match is None:
            raise ResticError(f"unexpected `restic version` output: {output!r}", retryable=False)
        return match.group(1)

    def init(self, repo: Repository) -> bool:
        """Creates the repository (format 2, compressed) unless it exists; True if created.

        Two creators at once on one path (parallel steps of a new application, two
        workers) must not leave two keys with different master keys. So the repository is
        written in a folder of its own beside the target and renamed into place; a
        concurrent creator that lost the rename uses the winner's repository. An existing
        repository is opened once, so a wrong password fails here rather than in the middle
        of the first backup.
        """
        if not (repo.path / "config").exists():
            staging = replace(
                repo,
                path=repo.path.with_name(
                    f".{repo.path.name}.init-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                ),
            )
            try:
                try:
                    create_repository(staging.path, staging.password)
                except OSError as exc:
                    raise _refused(repo.path, exc, "create the repository") or ResticError(
                        f"cannot create the repository {repo.path}: {exc.strerror or exc}",
                        retryable=True,
                    ) from None
                try:
                    staging.path.rename(repo.path)  # over nothing or an empty folder only
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise ResticError(
                            f"cannot move the new repository into {repo.path}: {exc}",
                            retryable=True,
                        ) from None
                else:
                    logger.info("initialised restic repository %s", repo.path)
                    return True
            finally:
                shutil.rmtree(staging.path, ignore_errors=True)
        self._run(repo, ["cat", "config"])
        return False

    def backup_paths(
        self,
        repo: Repository,
        path: Path,
        tags: Sequence[str],
        *,
        parent: str | None = None,
        force: bool = False,
        progress: Callable[[Progress], None] | None = None,
    ) -> BackupResult:
        """Backs up the contents of ``path``: restic runs in it and is given ".".

        The snapshot tree then starts at the folder's contents, so a restore lands them
        directly in its target. restic 0.14 still records the absolute folder in the
        snapshot's ``paths``. ``parent`` makes the backup incremental against that
        snapshot; ``force`` re-reads every file (a "full" backup: restic then compares
        with no parent at all, whatever ``parent`` says). Without either,
        restic picks the latest snapshot of the same path as parent.
        """
        if not path.is_dir():
            raise ResticError(f"backup source {path} is not a directory", retryable=False)
        args = ["--compression", "auto", "backup", "--json", "--host", HOST]
        args += [f"--tag={tag}" for tag in _check_tags(tags)]
        if parent is not None:
            args += ["--parent", parent]
        if force:
            args.append("--force")
        return self._past_stale_lock(
            repo,
            lambda: self._backup(repo, [*args, "."], cwd=path, stdin=None, progress=progress),
        )

    def backup_stdin(
        self,
        repo: Repository,
        stdin: IO[bytes],
        filename: str,
        tags: Sequence[str],
        *,
        progress: Callable[[Progress], None] | None = None,
    ) -> BackupResult:
        """Stores what is read from ``stdin`` (a pipe) as ``/{filename}`` in a new snapshot.

        restic 0.14 refuses empty input ("snapshot is empty") and makes no snapshot.
        """
        args = ["--compression", "auto", "backup", "--json", "--host", HOST, "--stdin"]
        args += ["--stdin-filename", filename, *(f"--tag={tag}" for tag in _check_tags(tags))]
        return self._backup(repo, args, cwd=None, stdin=stdin, progress=progress)

    async def backup_chunks(
        self, repo: Repository, chunks: AsyncIterator[bytes], filename: str, tags: Sequence[str]
    ) -> BackupResult:
        """Stores ``chunks`` (an async reader, such as an HTTP request's body) as
        ``/{filename}`` in a new snapshot, one chunk in memory at a time. An exception from
        ``chunks`` stops restic (SIGTERM: it removes its lock), so no snapshot is made, and
        propagates."""
        args = ["--compression", "auto", "backup", "--json", "--host", HOST, "--stdin"]
        args += ["--stdin-filename", filename, *(f"--tag={tag}" for tag in _check_tags(tags))]
        with tempfile.TemporaryFile() as errors:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self._argv(repo, args),
                    env=self._env(repo),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                )
            except OSError as exc:
                raise ResticError(f"cannot run {self.binary}: {exc}", retryable=False) from None
            assert proc.stdin is not None and proc.stdout is not None
            summary = asyncio.ensure_future(_summary_of(proc.stdout))
            try:
                async for chunk in chunks:
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
                proc.stdin.close()
                exit_code = await proc.wait()
                found = await summary
            except BaseException:
                if proc.returncode is None:
                    proc.terminate()
                    await proc.wait()
                summary.cancel()
                raise
            errors.seek(0, os.SEEK_END)
            errors.seek(max(0, errors.tell() - 64 * 1024))
            stderr = errors.read().decode(errors="replace")
        if exit_code != 0:
            raise _failure("backup", exit_code, stderr, repo)
        if found is None:
            raise ResticError("restic backup printed no summary", retryable=True, exit_code=0)
        return _result(found)

    def _backup(
        self,
        repo: Repository,
        args: Sequence[str],
        *,
        cwd: Path | None,
        stdin: IO[bytes] | None,
        progress: Callable[[Progress], None] | None,
    ) -> BackupResult:
        """Streams restic's JSON lines; stderr goes to a temporary file to stay bounded.

        An exception from ``progress`` (a cancelled activity) kills restic and propagates.
        """
        summary: dict[str, Any] | None = None
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(
                    self._argv(repo, args),
                    env=self._env(repo),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL if stdin is None else stdin,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                )
            except OSError as exc:
                raise ResticError(f"cannot run {self.binary}: {exc}", retryable=False) from None
            with proc:
                assert proc.stdout is not None
                try:
                    for line in proc.stdout:
                        try:
                            message = json.loads(line)
                        except ValueError:
                            continue
                        if not isinstance(message, dict):
                            continue
                        kind = message.get("message_type")
                        if kind == "summary":
                            summary = message
                        elif kind == "status" and progress is not None:
                            progress(_progress(message))
                except BaseException:
                    proc.kill()
                    raise
                exit_code = proc.wait()
            errors.seek(0, os.SEEK_END)
            errors.seek(max(0, errors.tell() - 64 * 1024))
            stderr = errors.read().decode(errors="replace")

        if exit_code == _EXIT_INCOMPLETE and summary is not None:
            # A snapshot tagged with the execution would pass for a finished backup on retry.
            self.forget(repo, [str(summary["snapshot_id"])])
            raise ResticError(
                _redact(
                    f"some source files could not be read, the incomplete snapshot was "
                    f"discarded: {_unreadable(stderr) or _gist(stderr)}",
                    repo,
                ),
                retryable=False,
                exit_code=exit_code,
            )
        if exit_code != 0:
            raise _failure("backup", exit_code, stderr, repo)
        if summary is None:
            raise ResticError("restic backup printed no summary", retryable=True, exit_code=0)
        result = _result(summary)
        logger.info(
            "restic snapshot %s in %s: %d bytes added",
            result.snapshot_id,
            repo.path,
            result.data_added,
        )
        return result

    def snapshots(self, repo: Repository, tags: Sequence[str] = ()) -> list[Snapshot]:
        """Snapshots carrying all of ``tags``, oldest first."""
        args = ["snapshots", "--json"]
        if tags:
            args += ["--tag", ",".join(_check_tags(tags))]  # one --tag with commas means AND
        return self._snapshots(repo, args)

    def snapshot(self, repo: Repository, snapshot_id: str) -> Snapshot:
        """One snapshot, by its id (or a unique prefix of it)."""
        found = self._snapshots(repo, ["snapshots", "--json", snapshot_id])
        if len(found) != 1:
            raise ResticError(f"no snapshot {snapshot_id} in {repo.path}", retryable=False)
        return found[0]

    def _snapshots(self, repo: Repository, args: list[str]) -> list[Snapshot]:
        return [
            Snapshot(
                id=item["id"],
                short_id=item["short_id"],
                time=item["time"],
                paths=list(item.get("paths") or []),
                tags=list(item.get("tags") or []),
                parent=item.get("parent"),
            )
            for item in json.loads(self._run(repo, args))
        ]

    def file_size(self, repo: Repository, snapshot_id: str, filename: str) -> int:
        """The size of one file of a snapshot, from its tree (no data is read)."""
        path = "/" + filename.lstrip("/")
        output = self._run(repo, ["ls", "--json", snapshot_id, path])
        for line in output.splitlines():
            node = json.loads(line)
            if node.get("struct_type") == "node" and node.get("path") == path:
                return int(node.get("size") or 0)
        raise ResticError(f"{path} not found in snapshot {snapshot_id}", retryable=False)

    def forget(self, repo: Repository, snapshot_ids: Sequence[str]) -> None:
        """Drops snapshots (the data stays until ``prune``); unknown ids are ignored."""
        if snapshot_ids:
            self._run(repo, ["forget", *snapshot_ids])
            logger.info("forgot %d restic snapshot(s) in %s", len(snapshot_ids), repo.path)

    def prune(self, repo: Repository) -> None:
        self._run(repo, ["--compression", "auto", "prune"])

    def check(self, repo: Repository, *, read_data: bool = False) -> None:
        """Verifies the repository; ``read_data`` also reads and hashes every pack."""
        self._run(repo, ["check", "--read-data"] if read_data else ["check"])

    def read_through(self, repo: Repository, snapshot_id: str) -> None:
        """Reads every blob of one snapshot, keeping nothing: restic checks each blob it
        loads, so this proves that snapshot restores, at the cost of that snapshot alone
        (``check --read-data`` reads every snapshot the repository keeps)."""
        with open(os.devnull, "wb") as sink:
            self.finish_dump(repo, self.dump(repo, snapshot_id, "/", sink, archive=True))

    def restore(self, repo: Repository, snapshot_id: str, target: Path) -> None:
        self._run(repo, ["restore", snapshot_id, "--target", str(target)])

    def dump(
        self,
        repo: Repository,
        snapshot_id: str,
        filename: str,
        into: IO[bytes] | None = None,
        *,
        archive: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Starts streaming one file of a snapshot to the returned process's stdout.

        The caller reads ``stdout`` to its end (or, with ``into``, restic writes straight
        into that file), then calls ``finish_dump``. stderr is a pipe that restic only
        writes an error message to, so it cannot fill up.
        """
        try:
            return subprocess.Popen(
                self._argv(
                    repo,
                    [
                        "dump",
                        *(["--archive", "tar"] if archive else []),
                        snapshot_id,
                        "/" + filename.lstrip("/"),
                    ],
                ),
                env=self._env(repo),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if into is None else into,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise ResticError(f"cannot run {self.binary}: {exc}", retryable=False) from None

    async def stream(
        self, repo: Repository, snapshot_id: str, path: str, *, tar: bool = False
    ) -> AsyncIterator[bytes]:
        """One file of a snapshot (or, with ``tar``, the folder ``path`` as a tar archive),
        as chunks for an async reader such as an HTTP response: nothing is staged, memory
        stays at one chunk. restic's failure raises ``ResticError`` after the chunks already
        given; a reader that stops early ends restic."""
        args = ["dump", *(["--archive", "tar"] if tar else []), snapshot_id, path]
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(repo, args),
                env=self._env(repo),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise ResticError(f"cannot run {self.binary}: {exc}", retryable=False) from None
        assert proc.stdout is not None and proc.stderr is not None
        try:
            while chunk := await proc.stdout.read(_STREAM_CHUNK):
                yield chunk
            stderr = (await proc.stderr.read()).decode(errors="replace")
            if (exit_code := await proc.wait()) != 0:
                raise _failure("dump", exit_code, stderr, repo)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    def finish_dump(self, repo: Repository, proc: subprocess.Popen[bytes]) -> None:
        """Waits for a ``dump`` process and raises ``ResticError`` if it failed."""
        if proc.stdout is not None:
            proc.stdout.close()  # a reader that stopped early must not leave restic blocked
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        exit_code = proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        if exit_code != 0:
            raise _failure("dump", exit_code, stderr, repo)

    def unlock(self, repo: Repository) -> None:
        """Removes stale locks only: those of processes that are gone or too old."""
        self._run(repo, ["unlock"])
