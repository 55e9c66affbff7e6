"""A PostgreSQL server of the test's own (initdb with Debian's server binaries), never the
shared one: ``wal_level=replica``, replication allowed over TCP from this host, commit
timestamps tracked so a test can say exactly which rows a moment holds. Stopped and removed
in every outcome.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from adapters.pg_archive.scratch import server_bin
from adapters.pg_dump import PgTarget
from tests.conftest import free_port

MAJOR = 15
ROLE = "app"
PASSWORD = "app-secret-pw"  # the test server's own role, on 127.0.0.1 only


def _os_user() -> str | None:
    """The server refuses to run as root: it runs as Debian's ``postgres`` user then."""
    return "postgres" if os.getuid() == 0 else None


@dataclass(frozen=True)
class Instance:
    folder: Path
    port: int

    def target(self, dbname: str) -> PgTarget:
        return PgTarget("127.0.0.1", self.port, ROLE, dbname, PASSWORD)

    def connect(self, dbname: str) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=ROLE,
            password=PASSWORD,
            dbname=dbname,
            autocommit=True,
        )

    def pg_ctl(self, *args: str) -> None:
        _run([str(server_bin(MAJOR) / "pg_ctl"), *args, f"--pgdata={self.folder / 'data'}"])


def _run(argv: list[str]) -> None:
    user = _os_user()
    subprocess.run(
        argv,
        check=True,
        capture_output=True,
        user=user,
        group=pwd.getpwnam(user).pw_gid if user else None,
    )


@contextlib.contextmanager
def running(settings: dict[str, str] | None = None) -> Iterator[Instance]:
    folder = Path(tempfile.mkdtemp(prefix="cairn-pitr-app-"))
    instance = Instance(folder, free_port())
    data = folder / "data"
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD)
    user = _os_user()
    if user:
        shutil.chown(folder, user)
        shutil.chown(pwfile, user)
    try:
        _run(
            [
                str(server_bin(MAJOR) / "initdb"),
                f"--pgdata={data}",
                f"--username={ROLE}",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
            ]
        )
        conf = {
            "listen_addresses": "127.0.0.1",
            "port": str(instance.port),
            "unix_socket_directories": str(folder),
            "wal_level": "replica",
            "max_wal_senders": "5",
            "max_replication_slots": "5",
            "max_slot_wal_keep_size": "256MB",
            "track_commit_timestamp": "on",
            "fsync": "off",
            **(settings or {}),
        }
        with (data / "postgresql.conf").open("a") as out:
            out.writelines(f"{key} = '{value}'\n" for key, value in conf.items())
        with (data / "pg_hba.conf").open("a") as out:
            out.write("host replication all 127.0.0.1/32 scram-sha-256\n")
        instance.pg_ctl("start", "--wait", f"--log={folder / 'server.log'}")
        yield instance
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            instance.pg_ctl("stop", "--mode=immediate", "--wait")
        shutil.rmtree(folder, ignore_errors=True)
