"""MariaDB and Redis servers for the engine tests (issue 24).

The machine's own (127.0.0.1:3306, 127.0.0.1:6379) when they answer; otherwise a server of
this test session, started from Debian's binaries (``scripts/system-deps.sh`` installs them)
in a temporary folder and stopped at the end. Tests that must change a server's
configuration (Redis replication) always start their own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port


def answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _wait(port: int, proc: subprocess.Popen[bytes], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start on port {port}")
        time.sleep(0.2)


@contextmanager
def mariadb_port(own: bool = False) -> Iterator[int]:
    """A MariaDB server where root connects over TCP without a password (``own``: one of
    this test session even when the machine has one)."""
    if not own and answers(3306):
        yield 3306
        return
    with tempfile.TemporaryDirectory(prefix="cairn-mariadb-") as folder:
        data, port = Path(folder) / "data", free_port()
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
            ],
            check=True,
            capture_output=True,
        )
        proc = subprocess.Popen(
            [
                shutil.which("mariadbd") or "/usr/sbin/mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                f"--socket={folder}/mysqld.sock",
                f"--port={port}",
                "--bind-address=127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(port, proc, "mariadbd")
            yield port
        finally:
            proc.terminate()
            proc.wait(60)


@contextmanager
def redis_server(*options: str) -> Iterator[int]:
    """A Redis server of this test alone (its own port, folder and configuration)."""
    with tempfile.TemporaryDirectory(prefix="cairn-redis-") as folder:
        port = free_port()
        proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "/usr/bin/redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                folder,
                "--save",
                "",
                "--appendonly",
                "no",
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(port, proc, "redis-server")
            yield port
        finally:
            proc.terminate()
            proc.wait(30)
