"""What a caller may point cairn at: the rules that keep every request inside its application.

A volume path or a database named in a request is data cairn will read, overwrite or rename.
These pure functions decide whether that is allowed; the API calls them before it stores
anything, and the worker calls them again right before it touches the data, so a registration
made before a rule existed, or a folder swapped for a symlink since, is still refused.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from core.database_url import split_database_url
from core.settings import Settings

# Folders of the operating system and of well-known services: a volume is never one of them,
# inside one, or above one (so ``/`` and ``/var`` are refused too).
SYSTEM_FOLDERS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/snap",
    "/sys",
    "/usr",
    "/var/run",
    "/var/lib/postgresql",
    "/var/lib/pgsql",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/var/lib/rancher",
    "/var/lib/etcd",
)
SYSTEM_DATABASES = frozenset({"postgres", "template0", "template1"})
# cairn's own staging names during a restore or drill (adapters/local_platform.py).
STAGING_PREFIXES = ("cairn_restore_", "cairn_old_", "cairn_drill_")
# Under cairn's data folder, only this area may hold application volumes.
APPS_AREA = "apps"
LOCAL = "local"


class BoundaryError(ValueError):
    """A request that would reach outside its application; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class AdminOnly(BoundaryError):
    """Allowed to a platform administrator only (the API answers 403, not 422)."""


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


FileId = tuple[int, int]


def _file_id(path: Path) -> FileId | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _chain(path: Path) -> set[FileId]:
    """Device and inode of ``path`` and of every folder above it (those that exist).

    A bind mount shows one folder at two paths; its device and inode are the same at both,
    so "inside" is asked of these, not only of the path's text.
    """
    ids = set()
    for folder in (path, *path.parents):
        found = _file_id(folder)
        if found is not None:
            ids.add(found)
    return ids


def _overlap(path: Path, folder: Path) -> str | None:
    """How ``path`` and ``folder`` overlap ("is", "is inside", "contains"), by real path and
    by device and inode; None when they are apart."""
    real, other = _real(path), _real(folder)
    path_id, folder_id = _file_id(real), _file_id(other)
    if real == other or (path_id is not None and path_id == folder_id):
        return "is"
    if real.is_relative_to(other) or (folder_id is not None and folder_id in _chain(real)):
        return "is inside"
    if other.is_relative_to(real) or (path_id is not None and path_id in _chain(other)):
        return "contains"
    return None


def volume_roots(settings: Settings) -> list[Path]:
    """The configured roots; without any, the apps area of cairn's data folder (``cairn dev``)."""
    if settings.volume_roots:
        return list(settings.volume_roots)
    return [settings.data_dir / APPS_AREA] if settings.data_dir else []


def _protected(settings: Settings) -> list[tuple[Path, str]]:
    folders = [(Path(p), "a system folder") for p in SYSTEM_FOLDERS]
    folders.append((Path(settings.storage_mount_root), "the backup storage mount root"))
    return [(_real(path), what) for path, what in folders] + folders


def _check_not_protected(path: Path, settings: Settings, field: str, shown: str) -> None:
    for folder, what in _protected(settings):
        if _inside(path, folder):
            raise BoundaryError(field, f"{shown} is inside {folder}, {what}")
        if folder.is_relative_to(path):
            raise BoundaryError(field, f"{shown} contains {folder}, {what}")
    if settings.data_dir is not None:
        for data in {Path(settings.data_dir), _real(settings.data_dir)}:
            apps = data / APPS_AREA
            if data.is_relative_to(path):
                raise BoundaryError(field, f"{shown} contains {data}, cairn's own data folder")
            if _inside(path, data) and not path.is_relative_to(apps):
                raise BoundaryError(field, f"{shown} is inside {data}, cairn's own data folder")


def _check_apart_by_identity(path: Path, settings: Settings, field: str) -> None:
    """The same rules asked of device and inode: a bind mount of a system folder, the
    storage root or cairn's data folder is that folder, wherever it is mounted."""
    for folder, what in _protected(settings):
        how = _overlap(path, folder)
        if how is not None:
            raise BoundaryError(field, f"{path} {how} {folder}, {what} (same device and inode)")
    if settings.data_dir is not None:
        data = Path(settings.data_dir)
        how = _overlap(path, data)
        apps = _real(data / APPS_AREA)
        in_apps = _real(path).is_relative_to(apps) or _file_id(apps) in _chain(_real(path))
        if how in ("is", "contains") or (how == "is inside" and not in_apps):
            raise BoundaryError(field, f"{path} {how} {data}, cairn's own data folder")


def check_volumes_apart(path: str, others: Iterable[str], field: str = "volume") -> None:
    """No volume may be, lie inside or contain another application's volume (``others``),
    judged by real path and by device and inode: a restore in place renames the whole
    folder. The other path is not shown: it may be another tenant's."""
    for other in others:
        how = _overlap(Path(path), Path(other))
        if how is not None:
            raise BoundaryError(
                field, f"{path} {how} a volume of another application (same folder on disk)"
            )


def check_volume_path(path: str, settings: Settings, field: str = "volume") -> Path:
    """The normalised absolute ``path`` if a volume may live there, else ``BoundaryError``.

    The folder and the folder its symlinks lead to must both stay clear of system folders,
    the storage mount root and cairn's data folder, and the real folder must lie strictly
    inside an allowed root (``CAIRN_VOLUME_ROOTS``).
    """
    if not path.startswith("/"):
        raise BoundaryError(field, "must be an absolute path")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise BoundaryError(field, "must not contain control characters")
    if path.startswith("//") or posixpath.normpath(path) != path:
        raise BoundaryError(field, "must be a normalised path (no '..', '.', '//' or trailing '/')")
    literal, real = Path(path), _real(path)
    _check_not_protected(literal, settings, field, path)
    if real != literal:
        _check_not_protected(real, settings, field, f"{path} (a link to {real})")
    _check_apart_by_identity(literal, settings, field)
    roots = volume_roots(settings)
    if not roots:
        raise BoundaryError(
            field,
            "no folder may hold application volumes on this server: the operator sets"
            " CAIRN_VOLUME_ROOTS (folders separated by ':') to where application data lives",
        )
    for root in roots:
        if real.is_relative_to(_real(root)) and real != _real(root):
            return literal
    allowed = ", ".join(str(root) for root in roots)
    where = path if real == literal else f"{path} (a link to {real})"
    raise BoundaryError(field, f"{where} is not inside an allowed volume root ({allowed})")


def _host_key(host: str) -> str:
    """One name per server: every spelling of this machine (loopback, socket) is ``local``."""
    host = host.strip().lower().rstrip(".").strip("[]")
    if (
        not host
        or host.startswith("/")
        or host == "localhost"
        or host == socket.gethostname().lower()
    ):
        return LOCAL
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return LOCAL if address.is_loopback or address.is_unspecified else str(address)


def _server(database: Mapping[str, Any]) -> tuple[str, int]:
    return _host_key(str(database.get("host") or "")), int(database.get("port") or 5432)


def same_server(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two database settings (``host``, ``port``) name the same PostgreSQL server."""
    return _server(a) == _server(b)


def same_database(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return same_server(a, b) and a.get("dbname") == b.get("dbname")


def database_parts(url: str) -> dict[str, Any]:
    """Host, port, user and dbname of a PostgreSQL URL, SQLAlchemy driver suffix allowed."""
    scheme, sep, rest = url.partition("://")
    parts, _ = split_database_url(scheme.split("+", 1)[0] + sep + rest)
    query_port = parse_qs(urlsplit(url).query).get("port")
    if query_port and not urlsplit(url).port:
        parts["port"] = int(query_port[0])
    return parts


def metadata_database(settings: Settings) -> dict[str, Any]:
    """cairn's own database, which no request may name."""
    return database_parts(settings.database_url)


def _check_database(database: Mapping[str, Any], settings: Settings, field: str) -> None:
    dbname = str(database.get("dbname") or "")
    if dbname in SYSTEM_DATABASES:
        raise BoundaryError(field, f"{dbname} is a system database of the server")
    if dbname.startswith(STAGING_PREFIXES):
        raise BoundaryError(field, f"{dbname} is named like cairn's own restore and drill copies")
    if same_database(database, metadata_database(settings)):
        raise BoundaryError(field, f"{dbname} on this server is cairn's own metadata database")


def check_application_database(
    database: Mapping[str, Any], settings: Settings, field: str = "database_url"
) -> None:
    """An application's database (``host``, ``port``, ``dbname``) may not be cairn's or a
    system database: a restore would replace it."""
    _check_database(database, settings, field)


def check_restore_target(
    target: Mapping[str, Any],
    application_database: Mapping[str, Any] | None,
    settings: Settings,
    *,
    by_platform_admin: bool,
    other_applications: Iterable[Mapping[str, Any]] = (),
    field: str = "target",
) -> None:
    """Where a restore may write instead of over the original.

    ``target`` is the stored form: ``{"database_name": …}`` (a database on the application's
    own server) or ``{"database_url": …}`` (any server; platform administrators only, else
    ``AdminOnly``). Never cairn's metadata database, a system database, cairn's staging names,
    the original itself, nor the database of another application (``other_applications``:
    their ``host``/``port``/``dbname`` settings).
    """
    if application_database is None:
        raise BoundaryError(field, "the application has no database to restore")
    if target.get("database_name"):
        field = f"{field}.database_name"
        database = {**application_database, "dbname": str(target["database_name"])}
    elif target.get("database_url"):
        field = f"{field}.database_url"
        if not by_platform_admin:
            raise AdminOnly(
                field,
                "only a platform administrator may restore to another server by URL; name a"
                " database on the application's own server with database_name instead",
            )
        try:
            database, _ = split_database_url(str(target["database_url"]))
        except ValueError as exc:
            raise BoundaryError(field, str(exc)) from None
    else:
        raise BoundaryError(field, "give exactly one of database_name and database_url")
    _check_database(database, settings, field)
    if same_database(database, application_database):
        raise BoundaryError(
            field, "that is the original, the application's own database; omit target"
        )
    for other in other_applications:
        if same_database(database, other):
            raise BoundaryError(field, f"{database['dbname']} belongs to another application")
