"""The worker's start-up check names the program that is missing and the setting to fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from worker.preflight import PreflightError, check_pg_client, check_restic, preflight


def _script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_missing_restic_names_the_setting() -> None:
    with pytest.raises(PreflightError) as caught:
        check_restic("/nonexistent/restic")
    message = str(caught.value)
    assert "/nonexistent/restic" in message and "CAIRN_RESTIC_BIN" in message
    assert "\n" not in message


def test_failing_restic_says_how_it_failed(tmp_path: Path) -> None:
    broken = _script(tmp_path, "restic", "echo 'cannot load libc' >&2; exit 3")
    with pytest.raises(PreflightError, match=r"exit code 3: cannot load libc.*CAIRN_RESTIC_BIN"):
        check_restic(str(broken))


def test_restic_version_line(tmp_path: Path) -> None:
    fake = _script(tmp_path, "restic", "echo 'restic 0.99.1 compiled with go1.22 on linux/amd64'")
    assert check_restic(str(fake)).startswith("restic 0.99.1")


def test_pg_client_from_bin_dir(tmp_path: Path) -> None:
    for name in ("pg_dump", "pg_restore", "psql"):
        _script(tmp_path, name, f"echo '{name} (PostgreSQL) 17.2'")
    assert check_pg_client(tmp_path) == {
        "pg_dump": "pg_dump (PostgreSQL) 17.2",
        "pg_restore": "pg_restore (PostgreSQL) 17.2",
        "psql": "psql (PostgreSQL) 17.2",
    }


def test_pg_client_missing_in_bin_dir_names_the_program_and_setting(tmp_path: Path) -> None:
    _script(tmp_path, "pg_dump", "echo 'pg_dump (PostgreSQL) 17.2'")
    with pytest.raises(PreflightError) as caught:
        check_pg_client(tmp_path)
    message = str(caught.value)
    assert message.startswith("pg_restore not found in") and "CAIRN_PG_BIN_DIR" in message


def test_pg_client_that_fails_is_refused(tmp_path: Path) -> None:
    for name in ("pg_dump", "pg_restore"):
        _script(tmp_path, name, f"echo '{name} (PostgreSQL) 17.2'")
    _script(tmp_path, "psql", "exit 127")
    with pytest.raises(PreflightError, match=r"psql is not runnable .*exit code 127"):
        check_pg_client(tmp_path)


def test_pg_client_missing_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PreflightError, match=r"pg_dump not found on PATH.*CAIRN_PG_BIN_DIR"):
        check_pg_client(None)


@pytest.mark.skipif(
    not (shutil.which("restic") and shutil.which("pg_dump")), reason="needs restic and pg_dump"
)
def test_the_installed_programs_pass() -> None:
    versions = preflight("restic", None)
    assert set(versions) == {"restic", "pg_dump", "pg_restore", "psql"}
    assert versions["restic"].startswith("restic ")
