"""Pruning an application's archive to its recovery window (``archive_window_days``).

What goes is decided from the snapshots' tags alone (``window.unneeded``): base backups
older than the newest one at or before the window's start, and the WAL shipments that hold
only segments before the first segment of the base backups kept. Only snapshot ids named
there are forgotten; a dump's snapshots carry none of the archive's tags and are never
among them. The caller prunes the repository afterwards (restic ``prune``).
"""

from __future__ import annotations

from datetime import datetime

from adapters.pg_archive.window import read_archive, unneeded
from adapters.restic import Repository, Restic

FORGET_BATCH = 200
"""Snapshot ids per ``restic forget``: a window's worth of shipments would overflow argv."""


def forget_outside(
    restic: Restic, repo: Repository, window_start: datetime, *, archiving: bool
) -> list[str]:
    """Forgets what no moment from ``window_start`` on needs; the snapshot ids forgotten."""
    if not (repo.path / "config").exists():
        return []  # nothing was ever written there
    doomed = unneeded(read_archive(restic.snapshots(repo)), window_start, archiving=archiving)
    for at in range(0, len(doomed), FORGET_BATCH):
        restic.forget(repo, doomed[at : at + FORGET_BATCH])
    return doomed
