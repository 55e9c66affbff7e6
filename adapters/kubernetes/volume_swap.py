"""A volume restored in place: filled beside its content, then swapped in, safe to repeat.

A claim cannot be renamed and the application's workloads name it, so a Kubernetes volume
is restored inside its own claim: the backup is restored into a staging folder at the
claim's root, then the live entries are moved aside and the staged ones moved up (renames
within one file system), then what was moved aside is removed. Two marker files say how far
a run got, so a mover killed at any point and started again finishes the same swap:

- no marker: the staging folder is (re)filled from scratch, then ``staged`` is written;
- ``staged``: the live entries are moved into the old folder, then it becomes ``swapping``;
- ``swapping``: the staged entries are moved up and the leftovers removed.

Until the live entries are moved aside, a failure leaves the volume as it was. A mover that
is not run again (its Job failed, the step was cancelled) is followed by ``settle``, which
needs no repository: it finishes a swap that got past its staging, or drops the staging.
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


def settle(volume: Path, short: str) -> bool:
    """What a mover that will not run again left, made whole without the repository: a swap
    past its staging is finished (True); an unfinished staging is removed, the volume was
    never touched (False). Either way the volume is not left mixed."""
    paths = _Paths(volume, short)
    if paths.staged.exists() or paths.swapping.exists():
        _swap(paths)
        return True
    shutil.rmtree(paths.staging, ignore_errors=True)
    return False


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
