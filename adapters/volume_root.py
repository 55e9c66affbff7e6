"""A volume's root folder: its owner, group and mode, kept with the backup and given back.

A volume is backed up from inside its folder (``restic backup .``), so the snapshot's tree
starts at the folder's contents and has no node for the folder itself: restic restores
every file with its owner and mode, but the folder it restores into keeps whoever made it
(the worker's staging folder, a new Kubernetes volume's root, root's). An application
that runs without root and writes at its volume's root (mode 0750, its own) then cannot.
So the upload records the root as one more tag of the volume's snapshot, which travels
with it (copies, catalog imports), and a restore sets it again; a snapshot from before
this has no such tag and its restored root is left as it was made.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from repository import names


@dataclass(frozen=True)
class Root:
    uid: int
    gid: int
    mode: int  # the permission bits, setgid and sticky included

    def text(self) -> str:
        return f"{self.uid}:{self.gid}:{self.mode:04o}"

    def tag(self) -> str:
        return names.volume_root_tag(self.text())

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid} {self.mode:04o}"


def of(folder: Path) -> Root:
    info = folder.stat()
    return Root(info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode))


def recorded(tags: list[str]) -> Root | None:
    """The root a volume snapshot's tags recorded (None: a snapshot from before, or not a
    volume's)."""
    text = names.volume_root_in(tags)
    return parse(text) if text is not None else None


def parse(text: str) -> Root:
    """``uid:gid:mode`` (the mode in octal), as ``Root.text`` writes it."""
    uid, gid, mode = text.split(":")
    return Root(int(uid), int(gid), int(mode, 8))


def give_back(folder: Path, root: Root) -> None:
    """Sets the folder's owner, group and mode to the recorded ones. Only root may give a
    folder to another user; any other caller keeps its own and sets the mode."""
    if of(folder) == root:
        return
    if os.geteuid() == 0:
        os.chown(folder, root.uid, root.gid)
    os.chmod(folder, root.mode)  # after chown, which clears setgid
