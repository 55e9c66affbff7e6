"""Recovery to a moment in a scratch PostgreSQL server on the worker, then the database out.

The scratch server runs Debian's server binaries of the archived server's major version
(``/usr/lib/postgresql/<major>/bin``), listens on a Unix socket inside its own folder only,
and is stopped and removed in every outcome by its caller (``remove``). PostgreSQL stops
before the first commit after the target; when the archive holds no later commit it ends
recovery "before the target" and refuses to start, although every commit up to the target
was replayed, so it is started once more without a target, to the end of what was restored.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from adapters import pg_databases
from adapters.pg_archive.window import Plan, stamp
from adapters.pg_dump import DumpError, PgTarget, dump_command, environment, restore_command, tool
from adapters.restic import Repository, Restic, ResticError
from repository import names

SERVER_BINARIES = Path("/usr/lib/postgresql")
_NOT_REACHED = "recovery ended before configured recovery target was reached"
_PORT = 5432  # only names the socket file: the folder is the scratch server's own


def server_bin(major: int) -> Path:
    found = SERVER_BINARIES / str(major) / "bin"
    if not (found / "pg_ctl").is_file():
        raise DumpError(
            f"PostgreSQL {major}'s server binaries are not on the worker ({found}): install "
            f"Debian's postgresql-{major} (scripts/system-deps.sh)",
            retryable=False,
        )
    return found


@dataclass(frozen=True)
class Scratch:
    folder: Path
    major: int
    os_user: str | None  # the server refuses to run as root; it runs as this user then

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def wal(self) -> Path:
        return self.folder / "wal"

    @property
    def socket(self) -> Path:
        return self.folder / "socket"

    def database(self, source: PgTarget) -> PgTarget:
        """The recovered copy of ``source``'s database (same role, trusted on the socket)."""
        return replace(source, host=str(self.socket), port=_PORT, password=None, protect=())


def _run(scratch: Scratch, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        user=scratch.os_user,
        group=pwd.getpwnam(scratch.os_user).pw_gid if scratch.os_user else None,
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
    )


def _extract(restic: Restic, repo: Repository, snapshot_id: str, into: Path) -> None:
    """``restic dump`` of the base backup's tar piped into ``tar``."""
    into.mkdir(parents=True)
    dump = restic.dump(repo, snapshot_id, names.BASE_BACKUP_FILE)
    done = subprocess.run(
        ["tar", "-x", "-f", "-", "-C", str(into)], stdin=dump.stdout, capture_output=True
    )
    try:
        restic.finish_dump(repo, dump)
    except ResticError as exc:
        raise DumpError(
            f"reading the base backup failed: {exc.message}", retryable=exc.retryable
        ) from exc
    if done.returncode != 0:
        raise DumpError(f"unpacking the base backup failed: {done.stderr!r}", retryable=False)


def _configure(scratch: Scratch, plan: Plan, with_target: bool) -> None:
    fetch = (
        f"test -f {scratch.wal}/%f && cp {scratch.wal}/%f %p"
        f" || (test -f {scratch.wal}/%f.partial && cp {scratch.wal}/%f.partial %p)"
    )
    lines = {
        "data_directory": str(scratch.data),
        "hba_file": str(scratch.folder / "pg_hba.conf"),
        "ident_file": str(scratch.folder / "pg_ident.conf"),
        "listen_addresses": "",
        "port": str(_PORT),
        "unix_socket_directories": str(scratch.socket),
        "hot_standby": "off",
        "archive_mode": "off",
        "max_wal_senders": "0",
        "wal_level": "replica",
        "restore_command": fetch,
        "recovery_target_action": "promote",
    }
    if with_target and plan.target is not None:
        lines["recovery_target_time"] = stamp(plan.target).replace("T", " ").replace("Z", "+00")
        lines["recovery_target_inclusive"] = "on"
    text = "".join(f"{key} = '{value}'\n" for key, value in lines.items())
    (scratch.folder / "scratch.conf").write_text(text)
    # ALTER SYSTEM settings of the application's server must not redirect the scratch one.
    (scratch.data / "postgresql.auto.conf").write_text("")
    (scratch.data / "recovery.signal").touch()


def _own(scratch: Scratch) -> None:
    if scratch.os_user is None:
        return
    entry = pwd.getpwnam(scratch.os_user)
    for root, dirs, files in os.walk(scratch.folder):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.chown(scratch.folder, entry.pw_uid, entry.pw_gid)
    scratch.data.chmod(0o700)


def _start(scratch: Scratch) -> bool:
    """Starts the server and waits until recovery has ended and it takes connections (True)
    or it has stopped (False); ``pg_ctl --wait`` returns while it still recovers."""
    log = scratch.folder / "server.log"
    log.unlink(missing_ok=True)
    _run(
        scratch,
        [
            str(server_bin(scratch.major) / "pg_ctl"),
            "start",
            "--wait",
            "--timeout=86400",
            f"--pgdata={scratch.data}",
            f"--log={log}",
            f"--options=-c config_file={scratch.folder / 'scratch.conf'}",
        ],
    )
    ready = [str(server_bin(scratch.major) / "pg_isready"), f"--host={scratch.socket}"]
    while (scratch.data / "postmaster.pid").exists():
        if _run(scratch, [*ready, f"--port={_PORT}"]).returncode == 0:
            return True
        time.sleep(0.2)
    return False


def recover(scratch: Scratch, restic: Restic, repo: Repository, plan: Plan) -> None:
    """Restores the plan's base backup and WAL into the scratch folder and runs the server
    to the plan's target; the server is running (promoted) when this returns."""
    server_bin(scratch.major)
    scratch.folder.mkdir(parents=True, exist_ok=True)
    scratch.socket.mkdir()
    _extract(restic, repo, plan.base.snapshot_id, scratch.data)
    scratch.wal.mkdir()
    for shipment in plan.shipments:  # by ``until``: a later ``.partial`` replaces an earlier
        try:
            restic.restore(repo, shipment.snapshot_id, scratch.wal)
        except ResticError as exc:
            raise DumpError(f"reading WAL failed: {exc.message}", retryable=exc.retryable) from exc
    (scratch.folder / "pg_hba.conf").write_text("local all all trust\n")
    (scratch.folder / "pg_ident.conf").write_text("")
    _configure(scratch, plan, with_target=True)
    _own(scratch)
    ready = _start(scratch)
    log = (scratch.folder / "server.log").read_text(errors="replace")
    if not ready and _NOT_REACHED in log:
        _configure(scratch, plan, with_target=False)
        _own(scratch)
        ready = _start(scratch)
        log = (scratch.folder / "server.log").read_text(errors="replace")
    if not ready:
        raise DumpError(
            f"the scratch server did not recover: {log.strip()[-1500:]}", retryable=False
        )


def move_out(scratch: Scratch, source: PgTarget, into: PgTarget, bin_dir: Path | None) -> None:
    """``pg_dump`` of the recovered database piped into ``pg_restore`` in a new database
    ``into`` (created on a connection that first refuses any protected name)."""
    pg_databases.create(into, into.dbname)
    copy = scratch.database(source)
    dump = subprocess.Popen(
        dump_command(copy, tool("pg_dump", bin_dir)),
        env=environment(copy),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    restore = subprocess.run(
        restore_command(into, tool("pg_restore", bin_dir)),
        env=environment(into),
        stdin=dump.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert dump.stdout is not None and dump.stderr is not None
    dump.stdout.close()
    dump_errors = dump.stderr.read().decode(errors="replace")
    if dump.wait() != 0:
        raise DumpError(
            f"pg_dump of the recovered copy failed: {dump_errors[-1500:]}", retryable=False
        )
    if restore.returncode != 0:
        raise DumpError(
            f"pg_restore into {into.dbname} failed: {restore.stderr[-1500:]}", retryable=True
        )


def remove(scratch: Scratch) -> None:
    """Stops the scratch server if it runs and removes its folder; safe to repeat."""
    if (scratch.data / "postmaster.pid").exists():
        _run(
            scratch,
            [
                str(server_bin(scratch.major) / "pg_ctl"),
                "stop",
                "--mode=immediate",
                "--wait",
                f"--pgdata={scratch.data}",
            ],
        )
    shutil.rmtree(scratch.folder, ignore_errors=True)
