"""A repository shared by the movers' group (``adapters/kubernetes/sharing.py``): made the
group's once, left alone when its root says it is, and a file the worker may not change
named in the error. Real files and users (the tests run as root)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from adapters.kubernetes import sharing
from adapters.restic_format import create_repository
from tests.fakes.kube.kubelet import open_for_traversal

GROUP = 2000


def test_a_repository_is_made_the_group_s_then_left_alone(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    create_repository(repo, "pw")
    assert not sharing.is_shared(repo, GROUP)
    sharing.share(repo, GROUP)
    assert sharing.is_shared(repo, GROUP)
    for path in [repo, *repo.rglob("*")]:
        info = path.stat()
        assert info.st_gid == GROUP
        if path.is_dir():
            assert info.st_mode & 0o2070 == 0o2070, path
        else:
            assert info.st_mode & 0o040, path
    # its root says it is shared: not walked again (as fsGroupChangePolicy OnRootMismatch)
    stray = repo / "index" / "stray"
    stray.write_bytes(b"x")
    os.chown(stray, 0, 0)
    stray.chmod(0o600)
    sharing.share(repo, GROUP)
    assert stray.stat().st_gid == 0


def test_a_file_the_worker_may_not_change_is_named(tmp_path: Path) -> None:
    """The worker (10001, in the group) cannot re-group a file of another user."""
    repo = tmp_path / "repo"
    create_repository(repo, "pw")
    open_for_traversal(repo)  # pytest's folders are root's, 0700
    for path in [repo, *repo.rglob("*")]:
        os.chown(path, 10001, 10001)
    foreign = repo / "keys" / next(p.name for p in (repo / "keys").iterdir())
    os.chown(foreign, 1000, 1000)
    script = (
        "import sys; from pathlib import Path; from adapters.kubernetes import sharing;"
        " from adapters.platform import PlatformError\n"
        "try:\n"
        f"    sharing.share(Path({str(repo)!r}), {GROUP})\n"
        "except PlatformError as exc:\n"
        "    print(exc.message, exc.retryable)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        user=10001,
        group=10001,
        extra_groups=[GROUP],
        cwd=Path.cwd(),
        env={"PATH": os.environ["PATH"], "HOME": "/tmp"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        f"the repository {repo} cannot be given to the group {GROUP} (CAIRN_MOVER_FS_GROUP):"
        f" {foreign} belongs to uid 1000, gid 1000"
    )
    assert done.stdout.rstrip().endswith("False")
    assert (repo / "config").stat().st_gid == GROUP  # what it could change, it did
