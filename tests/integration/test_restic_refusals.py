"""A storage that refuses restic's lock fails the command at once, with the storage named.

restic itself retries a refused lock for most of a minute, past a step's heartbeat timeout,
so the adapter checks that the lock folder takes a file before it runs restic.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.restic import Repository, Restic, ResticError

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def immutable(folder: Path) -> Iterator[None]:
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i refused here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_an_immutable_lock_folder_fails_every_command_at_once(tmp_path: Path) -> None:
    restic = Restic(os.environ.get("CAIRN_RESTIC_BIN", "restic"))
    repo = Repository(tmp_path / "repo", f"pw-{secrets.token_hex(16)}", tmp_path / "cache")
    restic.init(repo)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("data")
    with immutable(repo.path / "locks"):
        for command in (
            lambda: restic.snapshots(repo),
            lambda: restic.backup_paths(repo, tmp_path / "src", ["part=volume:a"]),
        ):
            with pytest.raises(ResticError) as caught:
                command()
            assert caught.value.message == (
                "the storage is read-only for the worker (operation not permitted, as for an"
                f" immutable folder): cannot write in {repo.path / 'locks'} (Operation not"
                " permitted)"
            )
            assert not caught.value.retryable
        assert list((repo.path / "locks").iterdir()) == []
    restic.backup_paths(repo, tmp_path / "src", ["part=volume:a"])
    assert len(restic.snapshots(repo)) == 1
    assert list((repo.path / "locks").iterdir()) == []  # no check file left behind
