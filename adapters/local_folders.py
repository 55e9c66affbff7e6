"""Volumes of the local platform: plain folders, restored beside the live one and swapped in.

Nothing is written over a live folder: a restore fills a staging folder next to it and
renames it into place, so a failure at any point leaves the volume as it was.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from adapters import volume_root
from adapters.restic import Repository, Restic


def count_files(path: Path) -> tuple[int, int]:
    """Regular files under ``path`` and their bytes, as the manifest counts a volume."""
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            if os.path.isfile(full) and not os.path.islink(full):
                files += 1
                size += os.path.getsize(full)
    return files, size


def restore_folder(restic: Restic, repo: Repository, snapshot: str, folder: Path) -> None:
    """Restores a volume's snapshot into ``folder``, which gets the owner and mode the
    volume's root had (``volume_root``); what a killed attempt left is redone."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    restic.restore(repo, snapshot, folder)
    root = volume_root.recorded(restic.snapshot(repo, snapshot).tags)
    if root is not None:
        volume_root.give_back(folder, root)


def swap_in_folder(
    restic: Restic, repo: Repository, snapshot: str, live: Path, staging: Path, old: Path
) -> None:
    """Each state on the way keeps a complete copy under ``live`` or ``old``; safe to repeat."""
    if old.exists() and staging.exists() and not live.exists():
        staging.rename(live)  # a crash came between the two renames: finish the swap
        shutil.rmtree(old)
        return
    if old.exists() and live.exists() and not staging.exists():
        shutil.rmtree(old)  # swapped already; only the clean-up was cut short
        return
    restore_folder(restic, repo, snapshot, staging)
    shutil.rmtree(old, ignore_errors=True)
    if live.exists():
        live.rename(old)
    staging.rename(live)
    shutil.rmtree(old, ignore_errors=True)


def remove_folder(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
