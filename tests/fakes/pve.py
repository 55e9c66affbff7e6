"""An HTTPS fake of the Proxmox VE storage API that proxmoxer talks to unmodified.

It exists so the Proxmox adapter and the storage workflows are tested against the wire
protocol PVE speaks (paths, form-encoded parameters, ``{"data": ...}`` envelopes, API-token
header, statuses and messages) rather than against a mock of proxmoxer.

Behaviour copied from PVE (pve-storage ``API2/Storage/Config.pm``, ``Status.pm``, the
dir/nfs/cephfs plugins, pve-common ``JSONSchema.pm``/``SectionConfig.pm``, pve-http-server):

* Schema errors (unknown parameter, missing ``storage``/``type``, bad format, bad enum,
  booleans other than ``0``/``1``) answer **400** ``Parameter verification failed.`` with
  ``{"data": null, "errors": {param: message}}``; format messages keep PVE's trailing newline.
* Errors of the storage plugins are plain Perl ``die`` in PVE, hence **500** with the
  message as the HTTP reason phrase and in the body's ``message``:
  ``missing value for required option 'export'``, ``unexpected property 'keyring'``,
  ``can't change value of fixed parameter 'server'``, ``illegal path for directory storage:``,
  ``create storage failed: storage ID 'x' already defined``,
  ``storage 'x' does not exist`` (GET), ``update storage failed: storage 'x' does not exist``
  (PUT), ``delete storage failed: storage 'x' does not exist`` (DELETE).
  PVE never answers 404 for an unknown storage.
* ``GET /nodes/{node}/storage/{storage}/status`` of an unknown storage: 400 with
  ``{"storage": "No such storage."}``. A disabled or unreachable storage, or one restricted
  (``nodes``) to other nodes, reports ``active: 0`` and zero sizes, with ``enabled: 0`` when
  disabled or restricted, as ``PVE::Storage::storage_info`` does. The node's storage index
  lists restricted storages the same way (a ``content`` filter leaves them out), and its
  ``enabled`` filter looks only at ``disable``, as ``API2/Storage/Status.pm`` does.
* ``total``/``used``/``avail`` are the figures of the file system the storage's path lives
  on (PVE's ``df``: ``used`` = blocks - bfree, ``avail`` = bavail, i.e.
  ``shutil.disk_usage``), whatever else that file system holds.
* Reading the status activates the storage first, as ``storage_info`` does. For a ``dir``
  storage whose folder has vanished, ``DirPlugin::activate_storage`` recreates it
  (``create-base-path``, else the deprecated ``mkdir``, default 1) and the storage reports
  itself active and empty; with ``create-base-path 0`` activation dies with ``unable to
  activate storage 'x' - directory '/p' does not exist or is unreachable`` and the status
  is ``active: 0``.
* Authentication: ``Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET``; otherwise 401
  with an empty body and the reason ``No ticket`` / ``no such user (...)`` /
  ``no such token ...`` / ``invalid token value!``. (PVE also delays 401 answers by 3 s;
  here that is ``auth_failure_delay``, 0 by default.)
* Unknown path or method: 501 ``Method 'GET /x' not implemented``.
* Storage ids match ``^[a-z][a-z0-9\\-_.]*[a-z0-9]$`` case-insensitively, as PVE's
  ``parse_storage_id`` (which uses ``/i``) does.
* ``nfs``/``cephfs`` get ``path = /mnt/pve/<id>`` on create and ``shared: 1`` when read;
  the ceph ``keyring`` is a sensitive property: not part of the configuration (kept in
  ``fake.secrets``), never returned. ``dir`` and ``nfs`` declare no sensitive properties
  (``'sensitive-properties' => {}``), so a ``keyring`` sent to them is an ``unexpected
  property`` (500), as for any other option the plugin lacks.
* A storage ``path`` is stored in ``File::Spec->canonpath`` form (``/mnt//pve/x/`` becomes
  ``/mnt/pve/x``).
* The version is PVE 9's, matching the schema of ``reference/pve-api``.

Deliberate differences: only the ``dir``, ``nfs`` and ``cephfs`` plugins are modelled (other
valid types answer 501); nothing is mounted, so an ``nfs``/``cephfs`` storage reports the
file system of its path when that folder exists (a test may make it to stand in for the
mounted share) and otherwise a fixed, empty 1 TiB; ``fail_next``/``delay``/``reject_auth``/
``set_active``/``set_usage`` are fault injection that PVE obviously lacks.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import trustme

from tests.fakes.https import TLSHandler, TLSServer

logger = logging.getLogger(__name__)

STORAGE_TYPES = (
    "btrfs",
    "cephfs",
    "cifs",
    "dir",
    "esxi",
    "iscsi",
    "iscsidirect",
    "lvm",
    "lvmthin",
    "nfs",
    "pbs",
    "rbd",
    "zfs",
    "zfspool",
)
SECRET_PARAMS = frozenset({"keyring", "password", "encryption-key", "master-pubkey"})
DEFAULT_SHARED_TOTAL = 1 << 40  # what an nfs/cephfs storage reports until set_usage()

_API_PREFIX = "/api2/json"
_UNKNOWN_PARAM = (
    "property is not defined in schema and the schema does not allow additional properties"
)
_MISSING_PARAM = "property is missing and it is not optional"


# --- parameter schema (names and types exactly as in the PVE API schema) -----------------


@dataclass(frozen=True)
class _Param:
    type: str = "string"  # string | boolean | integer
    enum: tuple[str, ...] = ()
    fmt: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    optional: bool = True


_STR = _Param()
_BOOL = _Param("boolean")
_PATH = _Param(fmt="pve-storage-path")
_STORAGE_ID = _Param(fmt="pve-storage-id", optional=False)
_NODE = _Param(fmt="pve-node", optional=False)

_CONFIG_COMMON: dict[str, _Param] = {
    "blocksize": _STR,
    "bwlimit": _STR,
    "comstar_hg": _STR,
    "comstar_tg": _STR,
    "content": _Param(fmt="pve-storage-content-list"),
    "content-dirs": _Param(fmt="pve-dir-override-list"),
    "create-base-path": _BOOL,
    "create-subdirs": _BOOL,
    "data-pool": _STR,
    "disable": _BOOL,
    "domain": _Param(max_length=256),
    "encryption-key": _STR,
    "fingerprint": _Param(pattern=r"([A-Fa-f0-9]{2}:){31}[A-Fa-f0-9]{2}"),
    "format": _Param(enum=("raw", "qcow2", "subvol", "vmdk")),
    "fs-name": _Param(fmt="pve-configid"),
    "fuse": _BOOL,
    "is_mountpoint": _STR,
    "keyring": _STR,
    "krbd": _BOOL,
    "lio_tpg": _STR,
    "master-pubkey": _STR,
    "max-protected-backups": _Param("integer", minimum=-1),
    "mkdir": _BOOL,
    "monhost": _Param(fmt="pve-storage-portal-dns-list"),
    "mountpoint": _PATH,
    "namespace": _STR,
    "nocow": _BOOL,
    "nodes": _Param(fmt="pve-node-list"),
    "nowritecache": _BOOL,
    "options": _Param(fmt="pve-storage-options"),
    "password": _Param(max_length=256),
    "pool": _STR,
    "port": _Param("integer", minimum=1, maximum=65535),
    "preallocation": _Param(enum=("off", "metadata", "falloc", "full")),
    "prune-backups": _STR,
    "saferemove": _BOOL,
    "saferemove-stepsize": _Param("integer", enum=("1", "2", "4", "8", "16", "32")),
    "saferemove_throughput": _STR,
    "server": _Param(fmt="pve-storage-server"),
    "shared": _BOOL,
    "skip-cert-verification": _BOOL,
    "smbversion": _Param(enum=("default", "2.0", "2.1", "3", "3.0", "3.11")),
    "snapshot-as-volume-chain": _BOOL,
    "sparse": _BOOL,
    "storage": _STORAGE_ID,
    "subdir": _PATH,
    "tagged_only": _BOOL,
    "username": _STR,
    "zfs-base-path": _PATH,
}
CREATE_SCHEMA: dict[str, _Param] = {
    **_CONFIG_COMMON,
    "authsupported": _STR,
    "base": _Param(fmt="pve-volume-id"),
    "datastore": _STR,
    "export": _PATH,
    "iscsiprovider": _STR,
    "path": _PATH,
    "portal": _Param(fmt="pve-storage-portal-dns"),
    "share": _STR,
    "target": _STR,
    "thinpool": _Param(fmt="pve-storage-vgname"),
    "type": _Param(enum=STORAGE_TYPES, optional=False),
    "vgname": _Param(fmt="pve-storage-vgname"),
}
UPDATE_SCHEMA: dict[str, _Param] = {
    **_CONFIG_COMMON,
    "delete": _Param(fmt="pve-configid-list", max_length=4096),
    "digest": _Param(max_length=64),
}
_STORAGE_ONLY = {"storage": _STORAGE_ID}
_INDEX_SCHEMA = {"type": _Param(enum=STORAGE_TYPES)}
_NODE_INDEX_SCHEMA = {
    "node": _NODE,
    "storage": _Param(fmt="pve-storage-id"),
    "content": _Param(fmt="pve-storage-content-list"),
    "enabled": _BOOL,
    "format": _BOOL,
    "target": _Param(fmt="pve-node"),
}
_STATUS_SCHEMA = {"node": _NODE, "storage": _STORAGE_ID}
_CONTENT_SCHEMA = {
    "node": _NODE,
    "storage": _STORAGE_ID,
    "content": _Param(fmt="pve-storage-content"),
    "vmid": _Param("integer", fmt="pve-vmid", minimum=100, maximum=999999999),
}

# --- formats (PVE's registered format checkers) -------------------------------------------

_DNS_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?"
_DNS_NAME = re.compile(rf"(?:{_DNS_LABEL}\.)*{_DNS_LABEL}")
_ALL_CONTENT = frozenset({"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "none"})


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_portal(value: str) -> bool:
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", value)
    if bracketed:
        return _is_ip(bracketed.group(1))
    if _is_ip(value):
        return True
    host, _, port = value.rpartition(":") if ":" in value else (value, "", "")
    if port and not port.isdigit():
        return False
    return _is_ip(host) or bool(_DNS_NAME.fullmatch(host))


def split_list(value: str) -> list[str]:
    """PVE::Tools::split_list: NUL-separated, else commas, semicolons and spaces."""
    if "\0" in value:
        return value.split("\0")
    return re.sub(r"[,;]", " ", value).split()


def _full(pattern: str, flags: int = 0) -> Callable[[str], bool]:
    compiled = re.compile(pattern, flags)
    return lambda value: compiled.fullmatch(value) is not None


# format -> (accepts the value?, message when not); "-list" formats apply it to each item.
_FORMATS: dict[str, tuple[Callable[[str], bool], str]] = {
    "pve-storage-id": (
        _full(r"[a-z][a-z0-9\-_.]*[a-z0-9]", re.IGNORECASE),
        "storage ID '{v}' contains illegal characters",
    ),
    "pve-storage-path": (
        lambda v: re.match(r"/[^;()]+", v) is not None,
        "value does not look like a valid absolute path",
    ),
    "pve-storage-server": (
        lambda v: _is_ip(v) or _DNS_NAME.fullmatch(v) is not None,
        "value does not look like a valid server name or IP address",
    ),
    "pve-storage-portal-dns": (_is_portal, "value does not look like a valid portal address"),
    "pve-node": (_full(_DNS_LABEL), "value does not look like a valid node name"),
    "pve-storage-options": (_full(r"\S+"), "invalid options '{v}'"),
    "pve-configid": (_full(r"[a-z][a-z0-9_-]+", re.IGNORECASE), "invalid configuration ID '{v}'"),
    "pve-storage-content": (
        lambda v: v == "import" or v in _ALL_CONTENT,
        "invalid content type '{v}'",
    ),
    "pve-storage-vgname": (
        _full(r"[a-z0-9][a-z0-9\-_.]*[a-z0-9]", re.IGNORECASE),
        "lvm name '{v}' contains illegal characters",
    ),
    "pve-volume-id": (
        _full(r"[a-z][a-z0-9\-_.]*[a-z0-9]:.+", re.IGNORECASE),
        "unable to parse volume ID '{v}'",
    ),
    "pve-vmid": (_full(r"[1-9][0-9]{2,8}"), "value does not look like a valid VM ID"),
}


def _check_format(fmt: str, value: str) -> str | None:
    base, is_list = (fmt[: -len("-list")], True) if fmt.endswith("-list") else (fmt, False)
    if base not in _FORMATS:
        return None
    accepts, message = _FORMATS[base]
    for item in split_list(value) if is_list else [value]:
        if not accepts(item):
            return f"invalid format - {message.format(v=item)}\n"
    return None


def _check_param(spec: _Param, value: str) -> tuple[str | None, Any]:
    """(error, decoded value) as PVE's JSONSchema check_prop would see it."""
    decoded: Any = value
    if spec.type == "boolean":
        if value not in ("0", "1"):
            return f"type check ('boolean') failed - got '{value}'", None
        decoded = int(value)
    elif spec.type == "integer":
        if not re.fullmatch(r"[+-]?\d+", value):
            return f"type check ('integer') failed - got '{value}'", None
        decoded = int(value)
        if spec.minimum is not None and decoded < spec.minimum:
            return f"value must have a minimum value of {spec.minimum}", None
        if spec.maximum is not None and decoded > spec.maximum:
            return f"value must have a maximum value of {spec.maximum}", None
    if spec.enum and value not in spec.enum:
        enum = ", ".join(spec.enum)
        return f"value '{value}' does not have a value in the enumeration '{enum}'", None
    if spec.max_length is not None and len(value) > spec.max_length:
        return f"value may only be {spec.max_length} characters long", None
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        return "value does not match the regex pattern", None
    if spec.fmt is not None:
        problem = _check_format(spec.fmt, value)
        if problem:
            return problem, None
    return None, decoded


# --- storage plugins ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Option:
    optional: bool = True
    fixed: bool = False


_OPT = _Option()


@dataclass(frozen=True)
class _Plugin:
    type: str
    options: Mapping[str, _Option]
    content: frozenset[str]
    default_content: str
    sensitive: frozenset[str]
    shared: bool
    path_default: bool  # nfs/cephfs mount at /mnt/pve/<id> unless told otherwise


_DIR_LIKE = {
    "content-dirs": _OPT,
    "nodes": _OPT,
    "disable": _OPT,
    "prune-backups": _OPT,
    "max-protected-backups": _OPT,
    "content": _OPT,
    "format": _OPT,
    "mkdir": _OPT,
    "create-base-path": _OPT,
    "create-subdirs": _OPT,
    "bwlimit": _OPT,
}
PLUGINS: dict[str, _Plugin] = {
    "dir": _Plugin(
        type="dir",
        options={
            **_DIR_LIKE,
            "path": _Option(optional=False, fixed=True),
            "shared": _OPT,
            "is_mountpoint": _OPT,
            "preallocation": _OPT,
        },
        content=frozenset(_ALL_CONTENT | {"import"}),
        default_content="images,rootdir",
        sensitive=frozenset(),  # DirPlugin: 'sensitive-properties' => {}
        shared=False,
        path_default=False,
    ),
    "nfs": _Plugin(
        type="nfs",
        options={
            **_DIR_LIKE,
            "path": _Option(optional=False, fixed=True),
            "server": _Option(optional=False, fixed=True),
            "export": _Option(optional=False, fixed=True),
            "options": _OPT,
            "preallocation": _OPT,
        },
        content=frozenset({"images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"}),
        default_content="images",
        sensitive=frozenset(),
        shared=True,
        path_default=True,
    ),
    "cephfs": _Plugin(
        type="cephfs",
        options={
            **_DIR_LIKE,
            "path": _Option(optional=False, fixed=True),
            "monhost": _OPT,
            "subdir": _OPT,
            "options": _OPT,
            "username": _OPT,
            "fuse": _OPT,
            "keyring": _OPT,
            "fs-name": _OPT,
        },
        content=frozenset({"vztmpl", "iso", "backup", "snippets", "import"}),
        default_content="backup",
        sensitive=frozenset({"keyring"}),
        shared=True,
        path_default=True,
    ),
}

_BACKUP_FILE = re.compile(
    r"vzdump-(?:openvz|lxc|qemu)-(\d+)-.+\.(tgz|(?:tar|vma)(?:\.(?:gz|lzo|zst|bz2))?)"
)


class PveError(Exception):
    """An answer other than 200, shaped the way PVE shapes it."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: Mapping[str, str] | None = None,
        *,
        body: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = dict(errors or {})
        self.body = body


def _die(message: str) -> PveError:
    """A plain Perl die in PVE's API code: HTTP 500 carrying the message."""
    return PveError(500, message + "\n")


def canonpath(path: str) -> str:
    """Perl's File::Spec::Unix->canonpath, as PVE applies it to a storage path.

    Written again on purpose rather than imported from adapters/proxmox.py: the fake plays
    PVE, and must not share the code whose behaviour it checks.
    """
    path = re.sub(r"/{2,}", "/", path)
    path = re.sub(r"(?:/\.)+(?:/|\Z)", "/", path)
    if path != "./":
        path = re.sub(r"^(?:\./)+", "", path)
    path = re.sub(r"^/(?:\.\./)+", "/", path)
    path = re.sub(r"^/\.\.$", "/", path)
    if path != "/":
        path = re.sub(r"/\Z", "", path)
    return path


def _redacted(params: Mapping[str, str]) -> dict[str, str]:
    return {k: ("***" if k in SECRET_PARAMS else v) for k, v in params.items()}


# --- the fake -----------------------------------------------------------------------------


@dataclass
class _Faults:
    fail_count: int = 0
    fail_status: int = 500
    fail_message: str | None = None
    delay: float = 0.0
    reject_auth: bool = False
    inactive: set[str] = field(default_factory=set)
    usage: dict[str, tuple[int, int]] = field(default_factory=dict)


_DEFAULT_FAILURE_MESSAGES = {
    500: "cfs-lock 'file-storage_cfg' error: got lock request timeout",
    502: "Bad Gateway",
    503: "Service Unavailable",
    595: "Errors during connection establishment, proxy handshake",
    596: "Errors during TLS negotiation, request sending and header processing",
}


class FakePVE:
    """One PVE node (``node``) answering the storage API over HTTPS on ``host:port``.

    Use as a context manager or with ``start()``/``stop()``. Point clients at ``host``,
    ``port`` with ``verify=ca_path`` and the token ``token_id`` / ``token_secret``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        node: str = "pve1",
        token_id: str = "cairn@pve!cairn",
        token_secret: str | None = None,
        ca_dir: str | os.PathLike[str] | None = None,
        auth_failure_delay: float = 0.0,
        pve_version: str = "9.1.1",
    ) -> None:
        self.host = host
        self.port = port
        self.node = node
        self.token_id = token_id
        self.token_secret = token_secret or str(uuid.uuid4())
        self.auth_failure_delay = auth_failure_delay
        self.pve_version = pve_version
        self.ca_path = ""
        # storage.cfg as PVE writes it: id -> options (type included, sensitive ones not)
        self.storages: dict[str, dict[str, Any]] = {}
        # sensitive properties PVE keeps outside storage.cfg (e.g. /etc/pve/priv/ceph/<id>.secret)
        self.secrets: dict[str, dict[str, str]] = {}
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self._ca_dir = Path(ca_dir) if ca_dir is not None else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._lock = threading.RLock()
        self._faults = _Faults()
        self._stopping = threading.Event()
        self._server: TLSServer[FakePVE] | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> FakePVE:
        if self._server is not None:
            return self
        if self._ca_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fake-pve-")
            ca_dir = Path(self._tmp.name)
        else:
            ca_dir = self._ca_dir
            ca_dir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        names = ["localhost", "127.0.0.1", "::1"]
        if self.host not in names and self.host not in ("0.0.0.0", "::"):
            names.append(self.host)
        server_cert = ca.issue_cert(*names)
        ca_file = ca_dir / "fake-pve-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        self.ca_path = str(ca_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_cert.configure_cert(context)

        self._stopping.clear()
        self._server = TLSServer((self.host, self.port), self, context, _Handler, "fake PVE")
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-pve-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> FakePVE:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}{_API_PREFIX}"

    # fault injection and inspection

    def fail_next(self, n: int = 1, status: int = 500, message: str | None = None) -> None:
        """The next ``n`` requests answer ``status`` (a PVE-like message by default)."""
        with self._lock:
            self._faults.fail_count = n
            self._faults.fail_status = status
            self._faults.fail_message = message

    def delay(self, seconds: float) -> None:
        """Every request waits ``seconds`` before it is handled (0 turns it off)."""
        with self._lock:
            self._faults.delay = max(0.0, seconds)

    def reject_auth(self, flag: bool = True) -> None:
        """While set, every request gets 401 ``invalid token value!``."""
        with self._lock:
            self._faults.reject_auth = flag

    def set_active(self, storage_id: str, flag: bool) -> None:
        """Inactive storages report ``active: 0`` and zero sizes, like an unreachable NFS."""
        with self._lock:
            if flag:
                self._faults.inactive.discard(storage_id)
            else:
                self._faults.inactive.add(storage_id)

    def set_usage(self, storage_id: str, total: int, used: int) -> None:
        """Sizes a storage reports (``avail = total - used``) instead of its file system's."""
        with self._lock:
            self._faults.usage[storage_id] = (int(total), int(used))

    def reset_usage(self, storage_id: str) -> None:
        """Undoes ``set_usage``: the storage reports its file system's figures again."""
        with self._lock:
            self._faults.usage.pop(storage_id, None)

    def reset(self) -> None:
        """Back to an empty node: no storages, no recorded calls, no faults."""
        with self._lock:
            self.storages.clear()
            self.secrets.clear()
            self.calls.clear()
            self._faults = _Faults()

    def calls_to(self, method: str, path: str) -> list[dict[str, str]]:
        """Parameters of the recorded calls of ``method`` on ``path`` (below /api2/json)."""
        full = _API_PREFIX + path
        with self._lock:
            return [p for m, pth, p in self.calls if m == method and pth == full]

    # request handling (called from the server threads)

    def handle(
        self, method: str, path: str, params: dict[str, str], authorization: str | None
    ) -> Any:
        with self._lock:
            self.calls.append((method, path, _redacted(params)))
            delay = self._faults.delay
        if delay:
            self._stopping.wait(delay)
        with self._lock:
            if self._faults.fail_count > 0:
                self._faults.fail_count -= 1
                status = self._faults.fail_status
                message = self._faults.fail_message or _DEFAULT_FAILURE_MESSAGES.get(
                    status, f"injected failure {status}"
                )
                raise PveError(status, message + "\n")
        self._authenticate(authorization)
        return self._route(method, path, params)

    def _authenticate(self, authorization: str | None) -> None:
        try:
            with self._lock:
                if self._faults.reject_auth:
                    raise PveError(401, "invalid token value!", body=False)
            match = re.search(r"(?:^|\s)PVEAPIToken[=\s](\S+)", authorization or "")
            if not match:
                raise PveError(401, "No ticket", body=False)
            token_id, sep, secret = match.group(1).rpartition("=")
            if not sep:
                raise PveError(401, "no tokenid specified", body=False)
            user, bang, token = token_id.rpartition("!")
            if not bang or not user:
                raise PveError(401, f"'{token_id}' is not an API token ID", body=False)
            expected_user, _, expected_token = self.token_id.rpartition("!")
            if user != expected_user:
                raise PveError(401, f"no such user ('{user}')", body=False)
            if token != expected_token:
                raise PveError(401, f"no such token '{token}' for user '{user}'", body=False)
            if not hmac.compare_digest(secret.encode(), self.token_secret.encode()):
                raise PveError(401, "invalid token value!", body=False)
        except PveError:
            if self.auth_failure_delay:
                self._stopping.wait(self.auth_failure_delay)
            raise

    def _route(self, method: str, path: str, params: dict[str, str]) -> Any:
        if path != _API_PREFIX and not path.startswith(_API_PREFIX + "/"):
            raise PveError(501, "no such uri")
        rel = path[len(_API_PREFIX) :] or "/"
        parts = [p for p in rel.split("/") if p]
        if parts == ["version"] and method == "GET":
            return self._version(params)
        if parts == ["storage"] and method == "GET":
            return self._index(params)
        if parts == ["storage"] and method == "POST":
            return self._create(params)
        if len(parts) == 2 and parts[0] == "storage":
            params = {**params, "storage": parts[1]}
            if method == "GET":
                return self._read(params)
            if method == "PUT":
                return self._update(params)
            if method == "DELETE":
                return self._delete(params)
        if len(parts) >= 3 and parts[0] == "nodes" and parts[2] == "storage" and method == "GET":
            params = {**params, "node": parts[1]}
            if len(parts) == 3:
                return self._node_index(params)
            if len(parts) == 5 and parts[4] == "status":
                return self._status({**params, "storage": parts[3]})
            if len(parts) == 5 and parts[4] == "content":
                return self._content({**params, "storage": parts[3]})
        raise PveError(501, f"Method '{method} {rel}' not implemented")

    # schema and plugin checks

    @staticmethod
    def _validate(schema: Mapping[str, _Param], params: Mapping[str, str]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}
        for name, value in params.items():
            spec = schema.get(name)
            if spec is None:
                errors[name] = _UNKNOWN_PARAM
                continue
            problem, decoded = _check_param(spec, value)
            if problem:
                errors[name] = problem
            else:
                values[name] = decoded
        for name, spec in schema.items():
            if not spec.optional and name not in params:
                errors[name] = _MISSING_PARAM
        if errors:
            raise PveError(400, "Parameter verification failed.\n", errors)
        return values

    def _check_config(
        self, plugin: _Plugin, storage_id: str, params: dict[str, Any], create: bool
    ) -> dict[str, Any]:
        """SectionConfig::check_config plus the plugins' additions."""
        if create and plugin.path_default and not params.get("path"):
            params["path"] = f"/mnt/pve/{storage_id}"
        settings: dict[str, Any] = {}
        for name in sorted(params):
            option = plugin.options.get(name)
            if not create and option is not None and option.fixed:
                raise _die(f"can't change value of fixed parameter '{name}'")
            if option is None:
                raise _die(f"unexpected property '{name}'")
            settings[name] = self._decode(plugin, name, params[name])
        if create:
            for name, option in sorted(plugin.options.items()):
                if not option.optional and name not in params:
                    raise _die(f"missing value for required option '{name}'")
            if plugin.type == "dir" and not re.fullmatch(r"/[-/a-zA-Z0-9_.@]+", settings["path"]):
                raise _die(f"illegal path for directory storage: {settings['path']}")
        return settings

    @staticmethod
    def _decode(plugin: _Plugin, name: str, value: Any) -> Any:
        if name == "content":
            wanted = split_list(str(value))
            kept = sorted({c for c in wanted if c in plugin.content})
            for dropped in sorted(set(wanted) - set(kept)):
                logger.debug("storage does not support content type '%s'", dropped)
            if "none" in kept and len(kept) > 1:
                raise _die("unable to combine 'none' with other content types")
            if not kept and "none" not in plugin.content:
                raise _die("storage does not support content type 'none'")
            return ",".join(kept) or "none"
        if name == "nodes":
            return ",".join(sorted(set(split_list(str(value)))))
        if name == "path":
            return canonpath(str(value))
        return value

    def _config(self, storage_id: str) -> dict[str, Any]:
        config = self.storages.get(storage_id)
        if config is None:
            raise _die(f"storage '{storage_id}' does not exist")
        return config

    def _digest(self) -> str:
        return hashlib.sha1(json.dumps(self.storages, sort_keys=True).encode()).hexdigest()

    def _api_config(self, storage_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """A storage as PVE returns it: parsed config with defaults, id and digest."""
        plugin = PLUGINS[config["type"]]
        result = dict(config)
        result.setdefault("content", plugin.default_content)
        if plugin.shared:
            result["shared"] = 1
        result["storage"] = storage_id
        result["digest"] = self._digest()
        return result

    def _on_node(self, config: Mapping[str, Any]) -> bool:
        nodes = config.get("nodes")
        return not nodes or self.node in str(nodes).split(",")

    def _activate(self, config: Mapping[str, Any], storage_id: str) -> None:
        """What PVE does to a dir storage on create: the folder and content subfolders."""
        if config["type"] != "dir":
            return
        path = str(config["path"])
        mkdir_default = config.get("mkdir", 1)
        if config.get("create-base-path", mkdir_default):
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as exc:
                raise _die(f"mkdir {path}: {exc.strerror}") from None
        if not os.path.isdir(path):
            raise _die(
                f"unable to activate storage '{storage_id}' - directory '{path}'"
                " does not exist or is unreachable"
            )
        if "content" in config and config.get("create-subdirs", mkdir_default):
            subdirs = {
                "images": "images",
                "rootdir": "private",
                "iso": "template/iso",
                "vztmpl": "template/cache",
                "backup": "dump",
                "snippets": "snippets",
                "import": "import",
            }
            for content in str(config["content"]).split(","):
                if content in subdirs:
                    os.makedirs(os.path.join(path, subdirs[content]), exist_ok=True)

    def _info(self, storage_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """PVE::Storage::storage_info for one storage."""
        plugin = PLUGINS[config["type"]]
        enabled = not config.get("disable") and self._on_node(config)
        info: dict[str, Any] = {
            "type": config["type"],
            "content": config.get("content", plugin.default_content),
            "shared": 1 if plugin.shared or config.get("shared") else 0,
            "active": 0,
            "enabled": 1 if enabled else 0,
            "total": 0,
            "used": 0,
            "avail": 0,
        }
        if not enabled or storage_id in self._faults.inactive:
            return info
        if storage_id in self._faults.usage:
            total, used = self._faults.usage[storage_id]
            info.update(active=1, total=total, used=used, avail=max(total - used, 0))
            return info
        path = str(config["path"])
        if config["type"] == "dir":
            try:
                self._activate(config, storage_id)
            except PveError:
                return info
        elif not os.path.isdir(path):  # nothing mounted: a fixed, empty share
            info.update(active=1, total=DEFAULT_SHARED_TOTAL, used=0, avail=DEFAULT_SHARED_TOTAL)
            return info
        try:
            disk = shutil.disk_usage(path)  # PVE::Tools::df
        except OSError:
            return info
        info.update(active=1, total=disk.total, used=disk.used, avail=disk.free)
        return info

    def _check_node(self, node: str) -> None:
        if node != self.node:
            raise _die(
                f"hostname lookup '{node}' failed - failed to get address info for: {node}:"
                " Name or service not known"
            )

    # endpoints

    def _version(self, params: Mapping[str, str]) -> dict[str, Any]:
        self._validate({}, params)
        release = ".".join(self.pve_version.split(".")[:2])
        return {"version": self.pve_version, "release": release, "repoid": "c05e1dbf9f4d2b2d"}

    def _index(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        values = self._validate(_INDEX_SCHEMA, params)
        with self._lock:
            return [
                self._api_config(sid, cfg)
                for sid, cfg in sorted(self.storages.items())
                if "type" not in values or cfg["type"] == values["type"]
            ]

    def _read(self, params: Mapping[str, str]) -> dict[str, Any]:
        values = self._validate(_STORAGE_ONLY, params)
        with self._lock:
            storage_id = values["storage"]
            return self._api_config(storage_id, self._config(storage_id))

    def _create(self, params: Mapping[str, str]) -> dict[str, Any]:
        values = self._validate(CREATE_SCHEMA, params)
        storage_type = values.pop("type")
        storage_id = values.pop("storage")
        plugin = PLUGINS.get(storage_type)
        if plugin is None:
            raise PveError(501, f"fake PVE: storage type '{storage_type}' is not modelled")
        if not values.get("nodes"):
            values.pop("nodes", None)
        sensitive = {k: str(values.pop(k)) for k in sorted(plugin.sensitive) if k in values}
        settings = self._check_config(plugin, storage_id, values, create=True)
        config = {"type": storage_type, **settings}
        with self._lock:
            if storage_id in self.storages:
                raise _die(f"create storage failed: storage ID '{storage_id}' already defined")
            enabled = not config.get("disable") and self._on_node(config)
            if enabled:
                try:
                    self._activate(config, storage_id)
                except PveError as exc:
                    raise _die(f"create storage failed: {exc.message.rstrip()}") from None
            self.storages[storage_id] = config
            if plugin.type == "cephfs" and "keyring" in sensitive:
                self.secrets[storage_id] = {"keyring": sensitive["keyring"]}
        return {"storage": storage_id, "type": storage_type}

    def _update(self, params: Mapping[str, str]) -> dict[str, Any]:
        values = self._validate(UPDATE_SCHEMA, params)
        storage_id = values.pop("storage")
        digest = values.pop("digest", None)
        delete = split_list(values.pop("delete", ""))
        with self._lock:
            try:
                current = self._config(storage_id)
                if digest is not None and digest != self._digest():
                    raise _die(
                        "detected modified configuration - file changed by other user? Try again."
                    )
                plugin = PLUGINS[current["type"]]
                sensitive = {k: str(values.pop(k)) for k in sorted(plugin.sensitive) if k in values}
                settings = self._check_config(plugin, storage_id, values, create=False)
                for name in delete:
                    option = plugin.options.get(name)
                    if option is None:
                        raise _die(f"no such option '{name}'")
                    if not option.optional:
                        raise _die(f"unable to delete required option '{name}'")
                    if option.fixed:
                        raise _die(f"unable to delete fixed option '{name}'")
                    if name in settings:
                        raise _die(f"cannot set and delete property '{name}' at the same time!")
            except PveError as exc:
                raise _die(f"update storage failed: {exc.message.rstrip()}") from None
            if plugin.type == "cephfs":
                if "keyring" in sensitive:
                    self.secrets[storage_id] = {"keyring": sensitive["keyring"]}
                elif "keyring" in delete:
                    self.secrets.pop(storage_id, None)
            for name in delete:
                current.pop(name, None)
            current.update(settings)
            return {"storage": storage_id, "type": current["type"]}

    def _delete(self, params: Mapping[str, str]) -> None:
        values = self._validate(_STORAGE_ONLY, params)
        storage_id = values["storage"]
        with self._lock:
            if storage_id not in self.storages:
                raise _die(f"delete storage failed: storage '{storage_id}' does not exist")
            del self.storages[storage_id]
            self.secrets.pop(storage_id, None)
            self._faults.inactive.discard(storage_id)
            self._faults.usage.pop(storage_id, None)
        return None

    def _node_index(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        values = self._validate(_NODE_INDEX_SCHEMA, params)
        self._check_node(values["node"])
        wanted_content = set(split_list(values.get("content", "")))

        def listed(config: Mapping[str, Any]) -> bool:
            if not wanted_content:
                return True
            default = PLUGINS[config["type"]].default_content
            content = set(str(config.get("content", default)).split(","))
            enabled = not config.get("disable") and self._on_node(config)
            return enabled and bool(wanted_content & content)

        with self._lock:
            infos = {
                sid: self._info(sid, cfg)
                for sid, cfg in sorted(self.storages.items())
                if listed(cfg)
            }
        only = values.get("storage")
        if only is not None and only not in infos:
            raise PveError(400, "Parameter verification failed.\n", {"storage": "No such storage."})
        target = values.get("target")
        result = []
        for sid, info in infos.items():
            if only is not None and sid != only:
                continue
            if values.get("enabled") and self.storages.get(sid, {}).get("disable"):
                continue
            if target and target != self.node:
                nodes = str(self.storages.get(sid, {}).get("nodes") or "")
                on_both = not nodes or {self.node, target} <= set(nodes.split(","))
                if not (info["shared"] and on_both):
                    continue
            entry = {"storage": sid, **info}
            if info["total"]:
                entry["used_fraction"] = info["used"] / info["total"]
            result.append(entry)
        return result

    def _status(self, params: Mapping[str, str]) -> dict[str, Any]:
        values = self._validate(_STATUS_SCHEMA, params)
        self._check_node(values["node"])
        storage_id = values["storage"]
        with self._lock:
            config = self.storages.get(storage_id)
            if config is None:
                raise PveError(
                    400, "Parameter verification failed.\n", {"storage": "No such storage."}
                )
            return self._info(storage_id, config)

    def _content(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        values = self._validate(_CONTENT_SCHEMA, params)
        self._check_node(values["node"])
        storage_id = values["storage"]
        with self._lock:
            config = dict(self._config(storage_id))
            if config.get("disable"):
                raise _die(f"storage '{storage_id}' is disabled")
            inactive = storage_id in self._faults.inactive
        if inactive:
            raise _die(
                f"unable to activate storage '{storage_id}' - directory '{config['path']}'"
                " does not exist or is unreachable"
            )
        if config["type"] != "dir" or values.get("content", "backup") != "backup":
            return []
        if "backup" not in str(config.get("content", PLUGINS["dir"].default_content)).split(","):
            return []
        dump = Path(str(config["path"])) / "dump"
        result: list[dict[str, Any]] = []
        for entry in sorted(dump.iterdir()) if dump.is_dir() else []:
            match = _BACKUP_FILE.fullmatch(entry.name)
            if not match or not entry.is_file():
                continue
            vmid = int(match.group(1))
            if "vmid" in values and values["vmid"] != vmid:
                continue
            stat = entry.stat()
            result.append(
                {
                    "volid": f"{storage_id}:backup/{entry.name}",
                    "content": "backup",
                    "format": match.group(2),
                    "size": stat.st_size,
                    "ctime": int(stat.st_mtime),
                    "vmid": vmid,
                }
            )
        return result


# --- HTTP plumbing ------------------------------------------------------------------------


class _Handler(TLSHandler):
    timeout = 60
    server: TLSServer[FakePVE]

    def version_string(self) -> str:
        return "pve-api-daemon/3.0"

    def _not_available(self) -> None:
        self._error(PveError(501, f"method '{self.command}' not available", body=False))

    do_HEAD = do_PATCH = do_OPTIONS = do_TRACE = _not_available

    def _params(self, method: str) -> dict[str, str]:
        """PVE's extract_params: body for POST/PUT (form or JSON), then the query on top."""
        params: dict[str, str] = {}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if method in ("POST", "PUT") and raw:
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if content_type == "application/json":
                decoded = json.loads(raw.decode("utf-8"))
                for key, value in dict(decoded).items():
                    if isinstance(value, bool):
                        value = int(value)
                    params[str(key)] = str(value)
            else:
                params.update(_decode_urlencoded(raw.decode("utf-8")))
        params.update(_decode_urlencoded(urlsplit(self.path).query))
        return params

    def _serve(self, method: str) -> None:
        path = unquote(urlsplit(self.path).path)
        try:
            params = self._params(method)
            data = self.server.fake.handle(method, path, params, self.headers.get("Authorization"))
        except PveError as exc:
            self._error(exc)
            return
        except (ValueError, UnicodeDecodeError) as exc:
            self._error(PveError(400, f"unable to parse request - {exc}\n"))
            return
        self._send(200, "OK", json.dumps({"data": data}).encode(), close=False)

    def _error(self, exc: PveError) -> None:
        first_line = exc.message.split("\n", 1)[0]
        reason = first_line.encode("latin-1", "replace").decode("latin-1")
        body = b""
        if exc.body:
            payload: dict[str, Any] = {"data": None, "message": exc.message}
            if exc.errors:
                payload["errors"] = exc.errors
            body = json.dumps(payload).encode()
        # PVE closes the connection after every error answer.
        self._send(exc.status, reason, body, close=True)

    def _send(self, status: int, reason: str, body: bytes, *, close: bool) -> None:
        self.send_response(status, reason)
        now = formatdate(usegmt=True)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=0")
        self.send_header("Pragma", "no-cache")
        self.send_header("Expires", now)
        self.send_header("Connection", "close" if close else "Keep-Alive")
        self.end_headers()
        self.wfile.write(body)
        if close:
            self.close_connection = True


def _decode_urlencoded(text: str) -> dict[str, str]:
    """Repeated keys are joined with NUL, as PVE's decode_urlencoded does."""
    params: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        params[key] = f"{params[key]}\0{value}" if key in params else value
    return params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake Proxmox VE storage API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8006)
    parser.add_argument("--node", default="pve1")
    parser.add_argument("--token-id", default="cairn@pve!cairn")
    parser.add_argument("--token-secret", default=None)
    parser.add_argument("--ca-dir", default=None, help="where to write the CA (default: temp)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    fake = FakePVE(
        args.host,
        args.port,
        node=args.node,
        token_id=args.token_id,
        token_secret=args.token_secret,
        ca_dir=args.ca_dir,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # clean up the CA folder on kill
    with fake:
        print(f"fake PVE listening on {fake.url}", flush=True)
        print(f"node:         {fake.node}")
        print(f"token id:     {fake.token_id}")
        print(f"token secret: {fake.token_secret}")
        print(f"CA bundle:    {fake.ca_path}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
