"""Volumes judged by the folder on disk: real path, device and inode (issue 21).

A folder registered inside, above, equal to or as a symlink to another application's
volume is refused, and so is one that is the same folder under a bind mount (the shape a
second mount of one disk takes). Bind mounts need root, as the tests here run.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.boundaries import BoundaryError, check_volume_path, check_volumes_apart
from core.settings import Settings


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for folder in ("apps/shop/uploads", "apps/blog", "storages", "cairn-data/apps"):
        (tmp_path / folder).mkdir(parents=True)
    return tmp_path


@pytest.fixture
def settings(root: Path) -> Settings:
    return Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:5432/cairn",
        volume_roots=[root / "apps", root / "cairn-data/apps", root / "mounts"],
        storage_mount_root=root / "storages",
        data_dir=root / "cairn-data",
    )


Mount = Callable[[Path, Path], None]


@pytest.fixture
def mount(root: Path) -> Iterator[Mount]:
    """``mount(source, target)`` mounts like ``mount --bind``; every mount is undone after."""
    made: list[Path] = []

    def bind(source: Path, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
        made.append(target)

    yield bind
    for target in reversed(made):
        subprocess.run(["umount", str(target)], check=True)


def refused(path: Path, others: list[Path]) -> str:
    with pytest.raises(BoundaryError) as caught:
        check_volumes_apart(str(path), [str(o) for o in others], field="volumes.data")
    assert caught.value.field == "volumes.data"
    return caught.value.message


@pytest.mark.parametrize(
    ("path", "how"),
    [
        ("apps/shop/uploads", "is"),
        ("apps/shop/uploads/2024", "is inside"),
        ("apps/shop", "contains"),
    ],
)
def test_a_volume_may_not_be_inside_above_or_equal_to_another(
    root: Path, path: str, how: str
) -> None:
    message = refused(root / path, [root / "apps/shop/uploads"])
    assert f"{how} a volume of another application" in message
    assert "shop/uploads," not in message  # the other tenant's folder is not shown


def test_a_symlink_is_judged_by_where_it_leads(root: Path) -> None:
    link = root / "apps/blog/files"
    link.symlink_to(root / "apps/shop/uploads")
    assert "is a volume of another application" in refused(link, [root / "apps/shop/uploads"])
    inner = root / "apps/blog/inner"
    inner.symlink_to(root / "apps/shop")
    assert "is a volume" in refused(inner / "uploads", [root / "apps/shop/uploads"])
    assert "contains" in refused(inner, [root / "apps/shop/uploads"])


def test_the_same_folder_under_a_bind_mount_is_refused(root: Path, mount: Mount) -> None:
    mount(root / "apps/shop/uploads", root / "mounts/copy")
    assert "is a volume" in refused(root / "mounts/copy", [root / "apps/shop/uploads"])
    (root / "apps/shop/uploads/deep").mkdir()
    assert "is inside" in refused(root / "mounts/copy/deep", [root / "apps/shop/uploads"])
    mount(root / "apps/shop", root / "mounts/above")
    assert "contains" in refused(root / "mounts/above", [root / "apps/shop/uploads/deep"])


def test_folders_apart_are_accepted(root: Path, mount: Mount) -> None:
    mount(root / "apps/blog", root / "mounts/blog")
    check_volumes_apart(str(root / "mounts/blog"), [str(root / "apps/shop/uploads")])
    check_volumes_apart(str(root / "apps/blog"), [str(root / "apps/shop")])


def test_a_bind_mount_of_the_storage_or_data_folder_is_refused(
    root: Path, settings: Settings, mount: Mount
) -> None:
    mount(root / "storages", root / "mounts/storage")
    with pytest.raises(BoundaryError, match="backup storage mount root"):
        check_volume_path(str(root / "mounts/storage"), settings)
    mount(root / "cairn-data", root / "mounts/data")
    with pytest.raises(BoundaryError, match="cairn's own data folder"):
        check_volume_path(str(root / "mounts/data/secrets"), settings)
    # the data folder's apps area stays a volume root, under a bind mount too
    assert check_volume_path(str(root / "mounts/data/apps/shop"), settings)
