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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port


def answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def _serving(argv: list[str], port: int, stop_seconds: float = 60) -> Iterator[int]:
    """Runs a server until the block ends; yields its port once it answers."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{Path(argv[0]).name} did not start on port {port}")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(stop_seconds)


@contextmanager
def writing(write: Callable[[int], object]) -> Iterator[None]:
    """Calls ``write(n)`` for n = 0, 1, 2… in a thread until the block ends (a live writer
    while a dump runs)."""
    stop = threading.Event()

    def loop() -> None:
        n = 0
        while not stop.is_set():
            write(n)
            n += 1

    writer = threading.Thread(target=loop)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()


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
        argv = [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd",
            "--no-defaults",
            "--user=root",
            f"--datadir={data}",
            f"--socket={folder}/mysqld.sock",
            f"--port={port}",
            "--bind-address=127.0.0.1",
        ]
        with _serving(argv, port) as serving:
            yield serving


@contextmanager
def redis_server(*options: str, port: int | None = None) -> Iterator[int]:
    """A Redis server of this test alone (its own folder and configuration; its own port
    unless ``port`` names one, e.g. to stand in for a server stopped there)."""
    with tempfile.TemporaryDirectory(prefix="cairn-redis-") as folder:
        port = port or free_port()
        argv = [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", folder),
            *("--save", "", "--appendonly", "no", *options),
        ]
        with _serving(argv, port, stop_seconds=30) as serving:
            yield serving
