"""Redis (issue 24, docs/engines.md): an RDB snapshot over the replication protocol into restic;
a restore that replaces the whole dataset through replication, never half loaded.

- **Backup.** ``redis-cli --rdb -`` asks the server for the same RDB file a replica's full sync
  gets: a fork of the dataset at one instant, not a key-by-key walk. It streams into restic and,
  on the way, into a staging file on the worker, which a scratch ``redis-server`` (Debian's
  binary, no network port) then loads: that proves the RDB loads and gives the key count of
  each logical database *of that snapshot*, the figures a restore is verified against. The
  staging file is removed at once (it is as large as the RDB, far smaller than the dataset in
  memory).
- **Restore.** A scratch ``redis-server`` loads the backup's RDB, its key counts are checked,
  and the application's server is made its replica (``REPLICAOF``): Redis receives the RDB
  into a temporary file and swaps its whole dataset when it has it, so a client sees the old
  dataset or the new one, never a mix. Once in sync, ``REPLICAOF NO ONE`` detaches it and the
  scratch server is stopped. Writes that arrive while the server is a replica are refused with
  ``READONLY`` (nothing is silently lost after the swap; what was written before the restore
  is replaced, as any restore replaces). The scratch server listens on ``scratch_host`` with a
  one-time password, which the application's server is told as ``masterauth`` for the sync and
  then given back its own.
- The application's user needs ``REPLICAOF``, ``CONFIG GET/SET`` and ``INFO`` (the default
  user has them; an ACL user must be granted them) for a restore, and ``SYNC`` for a backup.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from adapters.engines.contract import BackedUp, NamedDump, check_identity
from adapters.engines.stream import EngineError, command_into_restic
from adapters.restic import BackupResult, Progress, Repository, Restic, ResticError

SCHEMES: Final = ("redis", "rediss")
DUMP_FILE: Final = "dump.rdb"
"""The only file of a Redis part's snapshot: the RDB as the server sent it."""
DEFAULT_PORT: Final = 6379
SYNC_SECONDS: Final = 600
_TRANSIENT = re.compile(r"Connection refused|LOADING|timed out|Could not connect|reset by peer")
_KEYSPACE = re.compile(r"^db(\d+):keys=(\d+)", re.M)


@dataclass(frozen=True)
class RedisTarget:
    """A Redis server (the whole dataset: every logical database)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def from_url(cls, url: str, password: str | None = None) -> RedisTarget:
        """``redis://[user[:password]@]host[:port][/db]`` (``rediss://`` for TLS); the logical
        database in the path is ignored: a backup holds all of them."""
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise EngineError(f"not a Redis URL: scheme {parts.scheme!r}", retryable=False)
        if not parts.hostname:
            raise EngineError("a Redis URL names its host: redis://host:6379", retryable=False)
        return cls(
            host=parts.hostname,
            port=parts.port or DEFAULT_PORT,
            username=unquote(parts.username) if parts.username else None,
            password=password if password is not None else unquote(parts.password or "") or None,
            tls=parts.scheme == "rediss",
        )


@dataclass(frozen=True)
class RedisDump(BackupResult):
    """An RDB's snapshot with the keys of each logical database it holds (``db0``: n)."""

    key_counts: dict[str, int]
    server_version: str


def _argv(target: RedisTarget) -> list[str]:
    argv = ["redis-cli", "-h", target.host, "-p", str(target.port)]
    if target.username:
        argv += ["--user", target.username]
    return [*argv, *(["--tls"] if target.tls else [])]


def _env(password: str | None) -> dict[str, str]:
    """The password for redis-cli, never on its command line."""
    env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    return {**env, "REDISCLI_AUTH": password} if password else env


def _clean(text: str, target: RedisTarget) -> str:
    text = text.strip() or "no message"
    return text.replace(target.password, "********") if target.password else text


def command(target: RedisTarget, *args: str) -> str:
    """One command's reply; redis-cli reports a server error on stdout as ``(error) …``,
    or, without a terminal, as the error line itself."""
    done = subprocess.run(
        [*_argv(target), "--no-auth-warning", *args],
        env=_env(target.password),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    reply = done.stdout.strip()
    failed = done.returncode != 0 or re.match(r"(ERR|WRONGPASS|NOAUTH|NOPERM|LOADING)\b", reply)
    if failed:
        message = _clean(done.stderr + reply, target)
        raise EngineError(
            f"redis {args[0]} on {target.host}:{target.port} failed: {message}",
            retryable=bool(_TRANSIENT.search(message)),
        )
    return reply


def key_counts(target: RedisTarget) -> dict[str, int]:
    """Keys per logical database (``INFO keyspace``; empty databases are not listed)."""
    return {
        f"db{n}": int(keys) for n, keys in _KEYSPACE.findall(command(target, "INFO", "keyspace"))
    }


def _server_version(target: RedisTarget) -> str:
    found = re.search(r"^redis_version:(\S+)", command(target, "INFO", "server"), re.M)
    return found[1] if found else "unknown"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def scratch_server(
    folder: Path, *, host: str = "127.0.0.1", password: str | None = None
) -> Iterator[RedisTarget]:
    """A ``redis-server`` that loads ``folder/dump.rdb``, saves nothing and is stopped (and
    its folder left to the caller) in every outcome."""
    port = _free_port()
    argv = [
        shutil.which("redis-server") or "/usr/bin/redis-server",
        "--bind", host, "--port", str(port), "--dir", str(folder),
        "--dbfilename", DUMP_FILE, "--save", "", "--appendonly", "no",
        "--repl-diskless-sync-delay", "0",  # its one replica: no one else to wait for
    ]  # fmt: skip
    if password:
        argv += ["--requirepass", password]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise EngineError(f"cannot run redis-server: {exc}", retryable=False) from None
    scratch = RedisTarget(host, port, password=password)
    try:
        deadline = time.monotonic() + SYNC_SECONDS
        while True:
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise EngineError(
                    f"the scratch redis-server did not start: {proc.stderr.read().decode()[-500:]}",
                    retryable=False,
                )
            try:
                if "loading:0" in command(scratch, "INFO", "persistence"):
                    break
            except EngineError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        yield scratch
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dump_into_restic(
    target: RedisTarget,
    restic: Restic,
    repo: Repository,
    tags: list[str],
    *,
    staging_dir: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> RedisDump:
    """The server's RDB into a new snapshot holding ``/dump.rdb``, with its key counts."""
    version = _server_version(target)
    with tempfile.TemporaryDirectory(prefix="cairn-redis-", dir=staging_dir) as folder:
        with open(Path(folder) / DUMP_FILE, "wb") as staged:
            result = command_into_restic(
                [*_argv(target), "--no-auth-warning", "--rdb", "-"],
                _env(target.password),
                restic,
                repo,
                tags,
                DUMP_FILE,
                watch=staged.write,
                secret=target.password,
                transient=lambda message: bool(_TRANSIENT.search(message)),
                progress=progress,
            )
        try:
            with scratch_server(Path(folder), password=secrets.token_urlsafe(24)) as scratch:
                counts = key_counts(scratch)
        except EngineError:
            restic.forget(repo, [result.snapshot_id])  # an RDB that does not load is no backup
            raise
    stored = {name: getattr(result, name) for name in BackupResult.__dataclass_fields__}
    return RedisDump(**stored, key_counts=counts, server_version=version)


def _stage(restic: Restic, repo: Repository, snapshot_id: str, folder: Path) -> None:
    with open(folder / DUMP_FILE, "wb") as out:
        dump = restic.dump(repo, snapshot_id, DUMP_FILE, into=out)
        try:
            restic.finish_dump(repo, dump)
        except ResticError as exc:
            raise EngineError(
                f"reading the RDB failed: {exc.message}", retryable=exc.retryable
            ) from exc


def _within(found: dict[str, int], backed_up: dict[str, int]) -> None:
    """The RDB loaded now holds what the backup counted, less keys whose time to live ran out
    since (Redis drops them as it loads)."""
    extra = {db: n for db, n in found.items() if n > backed_up.get(db, 0)}
    if extra:
        raise EngineError(
            f"the backup's RDB loads with more keys than it was taken with ({extra} against"
            f" {backed_up})",
            retryable=False,
        )


def _replicate(target: RedisTarget, source: RedisTarget) -> None:
    """Makes ``target`` a replica of ``source`` until it holds source's dataset, then
    detaches it; it never stays a replica, whatever fails."""
    saved = command(target, "CONFIG", "GET", "masterauth").splitlines()
    previous = saved[1] if len(saved) > 1 else ""
    command(target, "CONFIG", "SET", "masterauth", source.password or "")
    try:
        command(target, "REPLICAOF", source.host, str(source.port))
        deadline = time.monotonic() + SYNC_SECONDS
        while True:
            info = command(target, "INFO", "replication")
            if "master_link_status:up" in info and "master_sync_in_progress:0" in info:
                break
            if time.monotonic() > deadline:
                raise EngineError(
                    f"{target.host}:{target.port} did not take the backup's dataset within"
                    f" {SYNC_SECONDS} s",
                    retryable=True,
                )
            time.sleep(0.2)
    finally:
        command(target, "REPLICAOF", "NO", "ONE")
        command(target, "CONFIG", "SET", "masterauth", previous)


def server_identity(target: RedisTarget) -> str:
    """The server's ``run_id``: a backup and a restore take the server's whole dataset, and a
    Redis server has no identity that outlives its process (docs/engines.md says what that
    costs: a restart needs the database confirmed again before a restore writes)."""
    found = re.search(r"^run_id:(\S+)", command(target, "INFO", "server"), re.M)
    if found is None:
        raise EngineError("the server's INFO names no run_id", retryable=False)
    return found[1]


def restore_from_restic(
    target: RedisTarget,
    restic: Restic,
    repo: Repository,
    snapshot_id: str,
    backed_up: RedisDump,
    *,
    identity: str,
    scratch_host: str = "127.0.0.1",
    staging_dir: Path | None = None,
) -> None:
    """Replaces ``target``'s whole dataset with the backup's (see the module's docstring);
    ``scratch_host`` is an address of the worker that the target's server can reach. The
    server must answer ``identity`` (``server_identity``) right before it is made a replica,
    its only write: ``IdentityRefused`` otherwise, nothing written."""
    with tempfile.TemporaryDirectory(prefix="cairn-redis-", dir=staging_dir) as folder:
        _stage(restic, repo, snapshot_id, Path(folder))
        password = secrets.token_urlsafe(24)
        with scratch_server(Path(folder), host=scratch_host, password=password) as scratch:
            loaded = key_counts(scratch)
            _within(loaded, backed_up.key_counts)
            where = f"the Redis server at {target.host}:{target.port}"
            check_identity(server_identity(target), identity, where)
            _replicate(target, scratch)
    restored = key_counts(target)
    if restored != loaded:
        raise EngineError(
            f"{target.host}:{target.port} holds {restored} keys after the restore, the backup"
            f" {loaded}",
            retryable=False,
        )


def drill_from_restic(
    restic: Restic, repo: Repository, snapshot_id: str, *, staging_dir: Path | None = None
) -> dict[str, int]:
    """The backup's RDB loaded by a scratch ``redis-server`` on the worker (loopback only, a
    one-time password), its keys per logical database counted, the server stopped and its
    folder removed in every outcome: a drill never reaches the application's server."""
    with tempfile.TemporaryDirectory(prefix="cairn-redis-", dir=staging_dir) as folder:
        _stage(restic, repo, snapshot_id, Path(folder))
        with scratch_server(Path(folder), password=secrets.token_urlsafe(24)) as scratch:
            return key_counts(scratch)


def _towards(target: RedisTarget) -> str:
    """The worker's address on the route to ``target``'s server: where the server can reach
    the scratch master it replicates from."""
    try:
        with socket.create_connection((target.host, target.port), timeout=10) as sock:
            return str(sock.getsockname()[0])
    except OSError as exc:
        raise EngineError(
            f"cannot reach {target.host}:{target.port}: {exc}", retryable=True
        ) from None


class RedisEngine:
    """This module as an engine of an application's named database (``contract.Engine``)."""

    kind: str = "redis"
    schemes: tuple[str, ...] = SCHEMES

    def check_url(self, url: str) -> None:
        RedisTarget.from_url(url)

    def identity(self, url: str, password: str | None) -> str:
        return server_identity(RedisTarget.from_url(url, password))

    def dump(
        self,
        url: str,
        password: str | None,
        restic: Restic,
        repo: Repository,
        tags: list[str],
        progress: Callable[[Progress], None],
    ) -> NamedDump:
        dump = dump_into_restic(
            RedisTarget.from_url(url, password), restic, repo, tags, progress=progress
        )
        return NamedDump(
            dump.snapshot_id,
            dump.total_bytes_processed,
            dump.data_added,
            dump.key_counts,
            dump.server_version,
            self.kind,
        )

    def restore(
        self,
        url: str,
        password: str | None,
        restic: Restic,
        repo: Repository,
        snapshot_id: str,
        backed_up: BackedUp,
        run_id: str,
        identity: str,
    ) -> str:
        target = RedisTarget.from_url(url, password)
        # the figures a restore reads; not the sizes of the transfer that stored it
        recorded = RedisDump(snapshot_id, 0, 0, 0, 0, 0, backed_up.figures, "")
        restore_from_restic(
            target,
            restic,
            repo,
            snapshot_id,
            recorded,
            identity=identity,
            scratch_host=_towards(target),
        )
        return f"dataset of {target.host}:{target.port} replaced by the backup's (replication)"

    def drill(
        self,
        url: str,
        password: str | None,
        restic: Restic,
        repo: Repository,
        snapshot_id: str,
        backed_up: BackedUp,
        drill_id: str,
        identity: str,
    ) -> dict[str, int]:
        """On the worker alone: the application's server is not asked nor written."""
        return drill_from_restic(restic, repo, snapshot_id)

    def remove_drill(self, url: str, password: str | None, drill_id: str, identity: str) -> None:
        """Nothing: a drill's scratch server ends with its step."""

    def size_bytes(self, url: str, password: str | None) -> int:
        """The dataset's memory (an RDB is usually smaller: an estimate from above)."""
        info = command(RedisTarget.from_url(url, password), "INFO", "memory")
        found = re.search(r"^used_memory_dataset:(\d+)", info, re.M)
        return int(found[1]) if found else 0

    def measure(self, url: str, password: str | None) -> dict[str, int]:
        return key_counts(RedisTarget.from_url(url, password))

    def differences(self, found: dict[str, int], backed_up: dict[str, int]) -> list[str]:
        """More keys than backed up is wrong; fewer may be keys whose time to live ran out."""
        return [
            f"{db}: {n} keys, the backup had {backed_up.get(db, 0)}"
            for db, n in sorted(found.items())
            if n > backed_up.get(db, 0)
        ]
