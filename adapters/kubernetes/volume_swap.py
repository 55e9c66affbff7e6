"""A volume filled by a restore mover, safe to repeat after the mover was killed.

The restore mover fills the new volume that the application's claim is then re-bound to
(``rebind.py``); the volume is empty, so this costs no extra space. The backup is restored
into a staging folder at the volume's root, then the entries already there are moved aside
and the staged ones moved up (renames within one file system), then what was moved aside is
removed. Two marker files say how far a run got, so a mover killed at any point and started
again (the Job's pod replaced after a disruption, the step retried) finishes the same swap:

- no marker: the staging folder is (re)filled from scratch, then ``staged`` is written;
- ``staged``: the live entries are moved into the old folder, then it becomes ``swapping``;
- ``swapping``: the staged entries are moved up and the leftovers removed.

A mover that is not run again leaves an incomplete volume that is never handed over: the
run's ``release`` deletes it with its staging claim.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path


def swap_in_place(volume: Path, short: str, fill: Callable[[Path], None]) -> None:
    """Replaces ``volume``'s content by what ``fill`` puts into an empty folder."""
    paths = _Paths(volume, short)
    if not paths.staged.exists() and not paths.swapping.exists():
        shutil.rmtree(paths.staging, ignore_errors=True)  # what a killed attempt left
        paths.staging.mkdir()
        try:
            fill(paths.staging)
        except BaseException:
            shutil.rmtree(paths.staging, ignore_errors=True)
            raise
        paths.staged.touch()
    _swap(paths)


class _Paths:
    def __init__(self, volume: Path, short: str) -> None:
        self.volume = volume
        self.staging = volume / f".cairn-restore-{short}"
        self.old = volume / f".cairn-old-{short}"
        self.staged = volume / f".cairn-staged-{short}"
        self.swapping = volume / f".cairn-swapping-{short}"
        self.own = {self.staging.name, self.old.name, self.staged.name, self.swapping.name}


def _swap(paths: _Paths) -> None:
    """From a complete staging (``staged``) or a swap under way (``swapping``) to the end."""
    if paths.staged.exists():
        paths.old.mkdir(exist_ok=True)
        for entry in paths.volume.iterdir():
            if entry.name not in paths.own:
                entry.rename(paths.old / entry.name)
        paths.staged.rename(paths.swapping)
    if paths.staging.exists():
        for entry in paths.staging.iterdir():
            entry.rename(paths.volume / entry.name)
    shutil.rmtree(paths.old, ignore_errors=True)
    shutil.rmtree(paths.staging, ignore_errors=True)
    paths.swapping.unlink(missing_ok=True)
