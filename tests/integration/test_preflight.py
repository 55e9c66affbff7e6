"""``cairn worker`` refuses to start, in one clear line, when a required program is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration


def _worker(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Runs ``cairn worker`` with Temporal pointed at a closed port: preflight comes first."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "worker"],
        env={
            **os.environ,
            "CAIRN_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "CAIRN_STORAGE_MOUNT_ROOT": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_worker_without_restic_refuses_to_start(tmp_path: Path) -> None:
    done = _worker({"CAIRN_RESTIC_BIN": "/nonexistent"}, tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("cairn worker cannot start: restic is not runnable as '/nonexistent'")
    assert "CAIRN_RESTIC_BIN" in last
    assert "Traceback" not in done.stderr


def test_worker_without_pg_client_refuses_to_start(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = _worker({"CAIRN_PG_BIN_DIR": str(empty)}, tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cairn worker cannot start: pg_dump not found in {empty}")
    assert "CAIRN_PG_BIN_DIR" in last
    assert "Traceback" not in done.stderr
