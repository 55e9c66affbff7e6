"""A volume restored in place: filled beside its content, then swapped in, safe to repeat.

A claim cannot be renamed and the application's workloads name it, so a Kubernetes volume
is restored inside its own claim: the backup is restored into a staging folder at the
claim's root, then the live entries are moved aside and the staged ones moved up (renames
within one file system), then what was moved aside is removed. Two marker files say how far
a run got, so a mover killed at any point and started again finishes the same swap:

- no marker: the staging folder is (re)filled from scratch, then ``staged`` is written;
- ``staged``: the live entries are moved into the old folder, then it becomes ``swapping``;
- ``swapping``: the staged entries are moved up and the leftovers removed.

Until the live entries are moved aside, a failure leaves the volume as it was.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path


def swap_in_place(volume: Path, short: str, fill: Callable[[Path], None]) -> None:
    """Replaces ``volume``'s content by what ``fill`` puts into an empty folder."""
    staging = volume / f".cairn-restore-{short}"
    old = volume / f".cairn-old-{short}"
    staged = volume / f".cairn-staged-{short}"
    swapping = volume / f".cairn-swapping-{short}"
    own = {staging.name, old.name, staged.name, swapping.name}
    if not staged.exists() and not swapping.exists():
        shutil.rmtree(staging, ignore_errors=True)  # what a killed attempt left
        staging.mkdir()
        try:
            fill(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staged.touch()
    if staged.exists():
        old.mkdir(exist_ok=True)
        for entry in volume.iterdir():
            if entry.name not in own:
                entry.rename(old / entry.name)
        staged.rename(swapping)
    if staging.exists():
        for entry in staging.iterdir():
            entry.rename(volume / entry.name)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    swapping.unlink(missing_ok=True)
