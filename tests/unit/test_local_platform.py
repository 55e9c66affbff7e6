"""The platform contract on the local platform: folders through a real restic repository.

The database half runs against a real PostgreSQL in the integration tests (backups,
restores, drills); here the folder half, the hooks and the refusals, with no server.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.local_platform import LocalPlatform
from adapters.platform import Platform, PlatformError, Scratch, VolumeFigures, open_platform
from adapters.restic import Progress, Repository, Restic
from core.settings import Settings

METADATA = "postgresql+psycopg://postgres@127.0.0.1:5432/cairn"


def no_progress(_p: Progress) -> None:
    """The folder steps report nothing the tests look at."""


@pytest.fixture
def restic() -> Restic:
    return Restic(os.environ.get("CAIRN_RESTIC_BIN", "restic"))


@pytest.fixture
def repo(restic: Restic, tmp_path: Path) -> Repository:
    repository = Repository(tmp_path / "repo", f"pw-{secrets.token_hex(16)}", tmp_path / "cache")
    restic.init(repository)
    return repository


@pytest.fixture
def apps(tmp_path: Path) -> Path:
    root = tmp_path / "apps"
    (root / "shop" / "uploads" / "a").mkdir(parents=True)
    (root / "shop" / "uploads" / "one.txt").write_text("one")
    (root / "shop" / "uploads" / "a" / "two.txt").write_text("two!")
    return root


def local(
    tmp_path: Path,
    restic: Restic,
    apps: Path,
    hooks: dict[str, list[str]] | None = None,
    uploads: Path | None = None,
) -> Platform:
    """A local application with one volume and no database, opened by kind like the worker."""
    cairn = Settings(
        database_url=METADATA,
        volume_roots=[apps],
        storage_mount_root=tmp_path / "storages",
        data_dir=tmp_path / "cairn-data",
    )
    folder = uploads or apps / "shop" / "uploads"
    settings = {"volumes": {"uploads": str(folder)}, "hooks": hooks or {}}
    return open_platform("local", settings, {}, cairn=cairn, restic=restic)


def test_local_is_opened_by_kind_and_an_unknown_kind_is_refused(
    tmp_path: Path, restic: Restic, apps: Path
) -> None:
    opened = local(tmp_path, restic, apps)
    assert isinstance(opened, LocalPlatform)
    # typed as the contract: mypy checks that LocalPlatform implements every method of it
    empty: Platform = LocalPlatform({}, {}, cairn=opened.cairn, restic=restic)
    assert empty.volume_names() == [] and not empty.has_database()
    with pytest.raises(PlatformError, match="unknown platform kind") as caught:
        open_platform("mainframe", {}, {}, cairn=opened.cairn, restic=restic)
    assert caught.value.retryable is False


def test_a_volume_goes_up_and_comes_back_by_a_swap_safe_to_repeat(
    tmp_path: Path, restic: Restic, repo: Repository, apps: Path
) -> None:
    platform = local(tmp_path, restic, apps)
    assert platform.volume_names() == ["uploads"] and not platform.has_database()
    platform.check_targets(False, ["uploads"])
    assert platform.estimate_bytes(False, ["uploads"]) == 7
    point = platform.snapshot("run", ["uploads"])
    assert not point.consistent and point.volumes == {"uploads": str(apps / "shop" / "uploads")}
    upload = platform.upload_volume(
        "run",
        "uploads",
        point.volumes["uploads"],
        repo,
        ["part=volume:uploads"],
        parent=None,
        force=True,
        progress=no_progress,
    )
    assert (upload.files, upload.bytes_processed) == (2, 7)
    assert platform.export_config("run", repo, ["part=config"]) is None

    live = apps / "shop" / "uploads"
    (live / "one.txt").write_text("changed since the backup")
    (live / "three.txt").write_text("new")
    restore_id = str(uuid.uuid4())
    for _ in range(2):  # a retry after a crash finds the swap done and changes nothing
        note = platform.restore_volume(restore_id, "uploads", repo, upload.snapshot_id, no_progress)
        assert note == "volume uploads replaced by the backup's copy"
        assert (live / "one.txt").read_text() == "one" and not (live / "three.txt").exists()
    assert sorted(p.name for p in live.parent.iterdir()) == ["uploads"]  # no staging left
    measured = platform.measure(False, ["uploads"])
    assert measured.row_counts is None
    assert measured.volumes == {"uploads": VolumeFigures(files=2, bytes=7)}


@pytest.mark.skipif(os.geteuid() != 0, reason="gives the volume's folder to another user")
def test_a_restored_volume_s_folder_gets_back_its_owner_and_mode(
    tmp_path: Path, restic: Restic, repo: Repository, apps: Path
) -> None:
    """restic keeps no node for the folder a volume is backed up from: its owner and mode
    travel as a tag of the snapshot and the restored folder gets them back."""
    live = apps / "shop" / "uploads"
    os.chown(live, 1000, 1000)
    live.chmod(0o750)
    platform = local(tmp_path, restic, apps)
    upload = platform.upload_volume(
        "run", "uploads", str(live), repo, [], parent=None, force=False, progress=no_progress
    )
    assert "volume-root=1000:1000:0750" in restic.snapshot(repo, upload.snapshot_id).tags
    os.chown(live, 0, 0)
    live.chmod(0o700)
    platform.restore_volume(str(uuid.uuid4()), "uploads", repo, upload.snapshot_id, no_progress)
    restored = live.stat()
    assert (restored.st_uid, restored.st_gid, restored.st_mode & 0o7777) == (1000, 1000, 0o750)
    assert (live / "one.txt").read_text() == "one"


def test_a_drill_restores_into_its_scratch_folder_and_removes_it(
    tmp_path: Path, restic: Restic, repo: Repository, apps: Path
) -> None:
    platform = local(tmp_path, restic, apps)
    upload = platform.upload_volume(
        "run",
        "uploads",
        str(apps / "shop" / "uploads"),
        repo,
        ["part=volume:uploads"],
        parent=None,
        force=False,
        progress=no_progress,
    )
    drill = str(uuid.uuid4())
    scratch = Path(platform.describe_scratch(drill)["scratch_folder"])
    assert scratch == tmp_path / "cairn-data" / "drills" / drill
    platform.restore_volume(
        drill, "uploads", repo, upload.snapshot_id, no_progress, into=Scratch(drill)
    )
    assert scratch.stat().st_mode & 0o777 == 0o700
    assert platform.measure(False, ["uploads"], into=Scratch(drill)).volumes == {
        "uploads": VolumeFigures(files=2, bytes=7)
    }
    for _ in range(2):  # safe to repeat
        platform.remove_scratch(drill)
    assert not scratch.exists()
    assert (apps / "shop" / "uploads" / "one.txt").read_text() == "one"  # never touched


def test_what_the_local_platform_cannot_do_or_may_not_touch_is_refused(
    tmp_path: Path, restic: Restic, repo: Repository, apps: Path
) -> None:
    platform = local(tmp_path, restic, apps)
    refusals: dict[str, Callable[[], object]] = {
        "no database configured": lambda: platform.dump_database("r", repo, [], no_progress),
        "no volume gone": lambda: platform.check_targets(False, ["gone"]),
        "no configuration objects": lambda: platform.restore_config("r", repo, "abc"),
    }
    for words, call in refusals.items():
        with pytest.raises(PlatformError) as caught:
            call()
        assert all(word in caught.value.message for word in words.split()), caught.value.message
        assert caught.value.retryable is False
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    escaped = local(tmp_path, restic, apps, uploads=outside)
    with pytest.raises(PlatformError, match="volume uploads refused"):
        escaped.check_targets(False, ["uploads"])


def test_hooks_stop_and_start_the_application(tmp_path: Path, restic: Restic, apps: Path) -> None:
    assert "was not stopped" in local(tmp_path, restic, apps).quiesce()
    hooked = local(tmp_path, restic, apps, {"stop": ["true"], "start": ["false"]})
    assert hooked.quiesce() == "ran the stop command true"
    with pytest.raises(PlatformError, match="start command false exited with 1") as caught:
        hooked.resume()
    assert caught.value.retryable is True  # the application must come back: tried again
    failing = local(tmp_path, restic, apps, {"stop": ["/nonexistent/stop"]})
    with pytest.raises(PlatformError) as stop:
        failing.quiesce()
    assert stop.value.retryable is False
