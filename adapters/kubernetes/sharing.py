"""A repository shared by a group: movers of different users (each application's own, see
``platform._volume_identity``) and the worker all use it.

restic takes a group-readable ``config`` as the sign of a group repository: it then
creates folders 0770 and files 0440 (restic 0.14+, "group accessible repositories"). With
every folder setgid and of the group (``CAIRN_MOVER_FS_GROUP``), what any member creates is
the group's too. So once a repository is shared, it stays shared; ``share`` makes it so,
checking its root first (as the kubelet's ``fsGroupChangePolicy: OnRootMismatch`` does) so
that a shared repository is not walked again.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from adapters.platform import PlatformError

_FOLDER_BITS = stat.S_ISGID | stat.S_IRWXG
_FILE_BITS = stat.S_IRGRP


def is_shared(path: Path, group: int) -> bool:
    """The repository's root is the group's, setgid and group-writable, its config
    group-readable."""
    root, config = path.stat(), (path / "config").stat()
    return (
        root.st_gid == group
        and root.st_mode & _FOLDER_BITS == _FOLDER_BITS
        and config.st_gid == group
        and bool(config.st_mode & _FILE_BITS)
    )


def share(path: Path, group: int) -> None:
    """Every folder of the repository at ``path`` the group's, setgid, group-writable;
    every file the group's and group-readable. A file the worker cannot change (another
    user's, not yet the group's) is an error that names it."""
    if not (path / "config").exists() or is_shared(path, group):
        return
    for folder, _subfolders, files in os.walk(path):
        for name, bits in ((".", _FOLDER_BITS), *((f, _FILE_BITS) for f in files)):
            target = os.path.join(folder, name)
            info = os.lstat(target)
            if stat.S_ISLNK(info.st_mode):
                continue
            if info.st_gid == group and info.st_mode & bits == bits:
                continue
            try:
                os.chown(target, -1, group)
                os.chmod(target, stat.S_IMODE(info.st_mode) | bits)
            except PermissionError:
                raise PlatformError(
                    f"the repository {path} cannot be given to the group {group}"
                    f" (CAIRN_MOVER_FS_GROUP): {os.path.normpath(target)} belongs to uid"
                    f" {info.st_uid}, gid {info.st_gid}, and the worker may not change it"
                    " (it must run as a member of that group; a file of another user must be"
                    " given to the group once by its owner or root)",
                    retryable=False,
                ) from None
