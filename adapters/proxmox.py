"""Proxmox VE adapter: backup storages defined through the PVE REST API.

Temporal activities call this module, so every failure leaves it as one exception type,
``ProxmoxError``, which says whether a retry can help. PVE reports the configuration
errors of its storage plugins (missing option, fixed option changed, unknown storage,
duplicate id) as plain HTTP 500, not 4xx; those are recognised by their message and are
not retried, because retrying them can never succeed.

Facts about PVE used here (parameter names, which options PUT refuses, messages) come from
the API schema in ``/work/shared/reference/pve-api`` and the pve-storage plugins.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import quote

import requests
from proxmoxer import ProxmoxAPI, ResourceException

from adapters.errors import AdapterError

logger = logging.getLogger(__name__)

T = TypeVar("T")

PVE_TYPES: Final[Mapping[str, str]] = {"local": "dir", "nfs": "nfs", "ceph": "cephfs"}

CONTENT: Final = "backup"

# cairn config keys per kind: (required, optional). Values are str except ceph's monhost.
_CONFIG_KEYS: Final[Mapping[str, tuple[frozenset[str], frozenset[str]]]] = {
    "local": (frozenset({"path"}), frozenset()),
    "nfs": (frozenset({"server", "export"}), frozenset({"options"})),
    "ceph": (frozenset({"monhost", "username", "fs_name"}), frozenset({"subdir"})),
}
_SECRET_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "local": frozenset(),
    "nfs": frozenset(),
    "ceph": frozenset({"keyring"}),
}
# Options PVE only takes at creation ("fixed" in the plugins); PUT refuses them even unchanged.
_FIXED: Final[Mapping[str, frozenset[str]]] = {
    "local": frozenset({"path"}),
    "nfs": frozenset({"server", "export"}),
    "ceph": frozenset(),
}
# Optional PVE options cairn owns: absent from cairn's config means "delete it" on update.
_OPTIONAL_PVE: Final[Mapping[str, tuple[str, ...]]] = {
    "local": (),
    "nfs": ("options",),
    "ceph": ("subdir",),
}
# PVE never returns these in a storage config; they must not be compared or logged.
_PVE_SENSITIVE: Final = frozenset({"keyring", "password", "encryption-key", "master-pubkey"})

# Plain-die messages of PVE's storage API that describe the request, not the moment.
_PERMANENT_500: Final = re.compile(
    r"storage '[^']*' does not exist"
    r"|storage ID '[^']*' already defined"
    r"|missing value for required option"
    r"|unexpected property"
    r"|can't change value of fixed parameter"
    r"|illegal path for directory storage"
    r"|does not support content type"
    r"|unable to delete (?:required|fixed) option"
    r"|no such option '"
    r"|cannot set and delete property"
)
_NOT_FOUND: Final = re.compile(r"storage '[^']*' does not exist")
_ALREADY_DEFINED: Final = re.compile(r"storage ID '[^']*' already defined")


@dataclass(frozen=True)
class ProxmoxConfig:
    """Where the PVE API is and how cairn authenticates (an API token, never a password)."""

    host: str
    port: int
    token_id: str  # "user@realm!tokenname"
    token_secret: str = field(repr=False)
    node: str
    verify: bool | str  # False, True, or the path of a CA bundle
    timeout: float = 10.0


@dataclass(frozen=True)
class StorageStatus:
    """PVE's status of a storage: the figures of the *file system* it lives on.

    PVE runs ``df`` on the storage's path, so ``used_bytes`` counts everything on that file
    system (the node's root disk for a ``dir`` under ``/mnt/pve``, the whole share for NFS or
    CephFS), not what cairn wrote. cairn measures its own bytes itself
    (``repository.store.repository_bytes``) and uses these only to see the file
    system filling up.
    """

    total_bytes: int
    used_bytes: int
    avail_bytes: int
    active: bool
    enabled: bool


def _retryable(status_code: int | None, message: str) -> bool:
    """Network trouble and server-side failures may pass; refused requests will not."""
    if status_code is None:
        return True
    if status_code == 501:  # PVE: no such method/path; the same request fails again
        return False
    if status_code >= 500:
        return not _PERMANENT_500.search(message)
    return False


class ProxmoxError(AdapterError):
    """A PVE call failed; ``status_code`` is None when no HTTP answer came back."""

    def __init__(
        self, status_code: int | None, message: str, errors: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, retryable=_retryable(status_code, message))
        self.status_code = status_code
        self.errors: dict[str, str] = dict(errors or {})

    def __str__(self) -> str:
        if self.status_code is None:
            return self.message
        return f"PVE answered {self.status_code}: {self.message}"

    @property
    def not_found(self) -> bool:
        return self.status_code == 404 or (
            self.status_code == 500 and bool(_NOT_FOUND.search(self.message))
        )


def canonpath(path: str) -> str:
    """Perl's ``File::Spec::Unix->canonpath``, which PVE applies to a storage path it stores.

    Collapses ``//`` and ``/./`` and drops a trailing ``/``; ``..`` stays (it is not resolved).
    cairn sends and compares paths in this form, so a root written as ``/mnt//pve`` does not
    make the stored path look changed.
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


# PVE options holding a path: compared in canonical form.
_PATH_OPTIONS: Final = frozenset({"path", "export", "subdir"})


def _same_value(key: str, current: Any, wanted: Any) -> bool:
    if key in _PATH_OPTIONS and current is not None:
        return canonpath(str(current)) == canonpath(str(wanted))
    return str(current) == str(wanted)


def _pve_type(kind: str) -> str:
    try:
        return PVE_TYPES[kind]
    except KeyError:
        raise ValueError(
            f"unknown storage kind {kind!r}; expected one of {', '.join(PVE_TYPES)}"
        ) from None


def _text(kind: str, config: Mapping[str, Any], key: str) -> str:
    value = config[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{kind} storage setting {key!r} must be a non-empty string")
    return value


def _settings(kind: str, config: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
    """cairn's connection settings under PVE's parameter names, secrets included."""
    _pve_type(kind)
    required, optional = _CONFIG_KEYS[kind]
    missing = sorted(required - config.keys())
    unknown = sorted(config.keys() - required - optional)
    missing_secrets = sorted(_SECRET_KEYS[kind] - secrets.keys())
    unknown_secrets = sorted(secrets.keys() - _SECRET_KEYS[kind])
    problems = [f"missing setting {k!r}" for k in missing]
    problems += [f"unknown setting {k!r}" for k in unknown]
    problems += [f"missing secret {k!r}" for k in missing_secrets]
    problems += [f"unknown secret {k!r}" for k in unknown_secrets]
    if problems:
        raise ValueError(f"{kind} storage: {'; '.join(problems)}")

    present = {k for k in optional if config.get(k) not in (None, "")}
    if kind == "local":
        return {"path": canonpath(_text(kind, config, "path"))}
    if kind == "nfs":
        params = {"server": _text(kind, config, "server"), "export": _text(kind, config, "export")}
        if "options" in present:
            params["options"] = _text(kind, config, "options")
        return params
    monhost = config["monhost"]
    if (
        not isinstance(monhost, list | tuple)
        or not monhost
        or not all(isinstance(m, str) and m and not m.isspace() for m in monhost)
    ):
        raise ValueError("ceph storage setting 'monhost' must be a non-empty list of strings")
    keyring = secrets["keyring"]
    if not keyring:
        raise ValueError("ceph storage secret 'keyring' must not be empty")
    params = {
        # PVE splits list formats on spaces, commas or semicolons; its docs use spaces.
        "monhost": " ".join(m.strip() for m in monhost),
        "username": _text(kind, config, "username"),
        "fs-name": _text(kind, config, "fs_name"),
        # For cephfs PVE stores this as the mount secret file (/etc/pve/priv/ceph/<id>.secret).
        "keyring": keyring,
    }
    if "subdir" in present:
        params["subdir"] = _text(kind, config, "subdir")
    return params


def pve_params(
    kind: str, storage_id: str, config: Mapping[str, Any], secrets: Mapping[str, str]
) -> dict[str, Any]:
    """Parameters of ``POST /storage`` for a cairn storage; raises ValueError on bad input."""
    return {
        "storage": storage_id,
        "type": _pve_type(kind),
        "content": CONTENT,
        **_settings(kind, config, secrets),
    }


def pve_update_params(
    kind: str, config: Mapping[str, Any], secrets: Mapping[str, str]
) -> dict[str, Any]:
    """Parameters of ``PUT /storage/{storage}``: no type/storage, no fixed options.

    An optional setting cairn no longer has is removed through PVE's ``delete`` list, so the
    PVE side converges on cairn's view instead of keeping stale mount options.
    """
    settings = _settings(kind, config, secrets)
    params: dict[str, Any] = {"content": CONTENT}
    params.update({k: v for k, v in settings.items() if k not in _FIXED[kind]})
    dropped = [k for k in _OPTIONAL_PVE[kind] if k not in settings]
    if dropped:
        params["delete"] = ",".join(dropped)
    return params


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# Secrets of the PVE call running in this thread, for scrubbing what proxmoxer logs meanwhile.
_in_flight = threading.local()


class _RedactProxmoxerLogs(logging.Filter):
    """proxmoxer logs request bodies (keyring included) at INFO and answers at DEBUG."""

    _SENSITIVE = re.compile(
        r"""(['"](?:keyring|password|encryption-key|master-pubkey|token_value)['"]\s*:\s*)"""
        r"""(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self._SENSITIVE.sub(r"\1'***'", message)
        scrubbed = _redact(scrubbed, getattr(_in_flight, "secrets", ()))
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        return True


logging.getLogger("proxmoxer.core").addFilter(_RedactProxmoxerLogs())


def _split_token_id(token_id: str) -> tuple[str, str]:
    user, sep, name = token_id.rpartition("!")
    if not sep or "@" not in user or not name:
        raise ValueError("token_id must look like 'user@realm!tokenname'")
    return user, name


def _as_dict(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProxmoxError(None, f"unexpected answer from PVE to {what}: not a JSON object")
    return data


def _as_int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key) or 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ProxmoxError(None, f"unexpected value of {key!r} in PVE storage status") from None


class ProxmoxClient:
    """Storage calls against one PVE node; safe to share between threads (calls serialise)."""

    def __init__(self, config: ProxmoxConfig) -> None:
        user, token_name = _split_token_id(config.token_id)
        self._config = config
        self._lock = threading.Lock()
        self._api: Any = ProxmoxAPI(
            config.host,
            backend="https",
            service="PVE",
            port=config.port,
            user=user,
            token_name=token_name,
            token_value=config.token_secret,
            verify_ssl=config.verify,
            timeout=config.timeout,
        )

    def _call(self, what: str, request: Callable[[], T], secrets: Iterable[str] = ()) -> T:
        """Runs one request; every failure comes out as ProxmoxError with secrets removed."""
        hidden = [self._config.token_secret, *secrets]
        where = f"{self._config.host}:{self._config.port}"
        try:
            with self._lock:
                _in_flight.secrets = hidden
                try:
                    return request()
                finally:
                    _in_flight.secrets = ()
        except ResourceException as exc:
            error = self._from_resource_exception(exc, hidden)
        except requests.exceptions.Timeout as exc:
            error = ProxmoxError(
                None,
                _redact(
                    f"no answer from PVE at {where} to {what} within {self._config.timeout}s"
                    f" ({type(exc).__name__})",
                    hidden,
                ),
            )
        except requests.exceptions.RequestException as exc:
            error = ProxmoxError(
                None,
                _redact(
                    f"cannot reach PVE at {where} to {what}: {type(exc).__name__}: {exc}", hidden
                ),
            )
        logger.debug("PVE call failed: %s: %s", what, error)
        raise error

    @staticmethod
    def _from_resource_exception(exc: Any, hidden: list[str]) -> ProxmoxError:
        status = int(exc.status_code)
        reason = str(exc.content or exc.status_message or "").strip()
        errors: dict[str, str] = {}
        if isinstance(exc.errors, dict):
            errors = {
                str(k): _redact(v.strip(), hidden)
                for k, v in exc.errors.items()
                if isinstance(v, str)
            }
        message = _redact(reason, hidden) or f"HTTP {status}"
        if errors:
            details = "; ".join(f"{k}: {v}" for k, v in sorted(errors.items()))
            message = f"{message} ({details})"
        return ProxmoxError(status, message, errors)

    def _storage(self, storage_id: str) -> Any:
        # Quoted so an odd id reaches PVE verbatim (and is refused there) instead of
        # silently addressing another path.
        return self._api.storage(quote(storage_id, safe=""))

    def version(self) -> str:
        data = _as_dict(self._call("read the version", lambda: self._api.version.get()), "version")
        return str(data.get("version", ""))

    def create_storage(
        self, kind: str, storage_id: str, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        """Defines the storage; a retry after a lost answer finds it there and succeeds.

        When PVE says the id is taken, the existing definition counts as ours only if its
        type and every non-secret parameter match; then the mutable settings (the ceph
        keyring) are written again so the result is the same as a first-time create.
        """
        params = pve_params(kind, storage_id, config, secrets)
        hidden = list(secrets.values())
        logger.info("creating PVE storage %s (%s)", storage_id, params["type"])
        try:
            self._call(
                f"create storage {storage_id}", lambda: self._api.storage.post(**params), hidden
            )
        except ProxmoxError as exc:
            if exc.status_code != 500 or not _ALREADY_DEFINED.search(exc.message):
                raise
            existing = self.get_storage(storage_id)
            if existing is None or not _same_definition(existing, params):
                raise
            logger.info("PVE storage %s already exists with the same settings", storage_id)
            self.update_storage(kind, storage_id, config, secrets)

    def get_storage(self, storage_id: str) -> dict[str, Any] | None:
        """The storage's PVE configuration, or None when PVE does not know the id."""
        try:
            data = self._call(f"read storage {storage_id}", lambda: self._storage(storage_id).get())
        except ProxmoxError as exc:
            if exc.not_found:
                return None
            raise
        return _as_dict(data, f"read storage {storage_id}")

    def update_storage(
        self, kind: str, storage_id: str, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        """Rewrites the mutable settings; refuses (ValueError) a change of a fixed one.

        PVE can only set server/export/path at creation, so a change there needs a new
        storage; saying so beats silently keeping the old location.
        """
        wanted = pve_params(kind, storage_id, config, secrets)
        current = self.get_storage(storage_id)
        if current is not None:
            if current.get("type") != wanted["type"]:
                raise ValueError(
                    f"PVE storage {storage_id!r} is of type {current.get('type')!r},"
                    f" not {wanted['type']!r}"
                )
            changed = sorted(
                k for k in _FIXED[kind] if not _same_value(k, current.get(k), wanted[k])
            )
            if changed:
                raise ValueError(
                    f"{', '.join(changed)} of PVE storage {storage_id!r} cannot change;"
                    " create a new storage instead"
                )
        params = pve_update_params(kind, config, secrets)
        logger.info("updating PVE storage %s (%s)", storage_id, ", ".join(sorted(params)))
        self._call(
            f"update storage {storage_id}",
            lambda: self._storage(storage_id).put(**params),
            list(secrets.values()),
        )

    def delete_storage(self, storage_id: str) -> None:
        """Removes the definition (never the data); an unknown id counts as done."""
        logger.info("deleting PVE storage %s", storage_id)
        try:
            self._call(f"delete storage {storage_id}", lambda: self._storage(storage_id).delete())
        except ProxmoxError as exc:
            if not exc.not_found:
                raise
            logger.info("PVE storage %s was already gone", storage_id)

    def storage_status(self, storage_id: str) -> StorageStatus:
        what = f"read the status of storage {storage_id}"
        node = self._api.nodes(quote(self._config.node, safe=""))
        data = _as_dict(
            self._call(what, lambda: node.storage(quote(storage_id, safe="")).status.get()), what
        )
        return StorageStatus(
            total_bytes=_as_int(data, "total"),
            used_bytes=_as_int(data, "used"),
            avail_bytes=_as_int(data, "avail"),
            active=bool(_as_int(data, "active")),
            enabled=bool(_as_int(data, "enabled")),
        )


def _same_definition(existing: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    for key, value in params.items():
        if key == "storage" or key in _PVE_SENSITIVE:
            continue
        if key == "content":
            if set(str(existing.get(key, "")).split(",")) != set(str(value).split(",")):
                return False
        elif not _same_value(key, existing.get(key), value):
            return False
    return True
