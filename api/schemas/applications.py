"""Bodies of applications; the platform settings are a tagged union on ``kind``."""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from api.schemas.common import AbsolutePath, Input, Output, Slug
from api.schemas.offsite_targets import OffsiteLagOut
from core.database_url import split_database_url
from core.engine_url import KNOWN, engine_of, password_free


def _valid_database_url(value: str) -> str:
    split_database_url(value)
    return value


DatabaseUrl = Annotated[
    str, StringConstraints(max_length=2048), AfterValidator(_valid_database_url)
]


def _valid_named_url(value: str) -> str:
    engine_of(value)
    password_free(value)
    return value


NamedDatabaseUrl = Annotated[
    str, StringConstraints(max_length=2048), AfterValidator(_valid_named_url)
]
"""A named database's URL: its engine is its scheme (``core/engine_url.py``); the rest is the
engine's to check, when the application is registered."""


Argument = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[^\x00]+$")]


class LocalHooks(Input):
    """Commands (argv, no shell) the worker runs to stop and start the application's writes."""

    stop: list[Argument] | None = Field(default=None, min_length=1, max_length=32)
    start: list[Argument] | None = Field(default=None, min_length=1, max_length=32)


class LocalPlatformIn(Input):
    kind: Literal["local"]
    database_url: DatabaseUrl | None = Field(
        default=None,
        description="postgresql://user:password@host:port/dbname; the password is stored"
        " encrypted; never cairn's metadata database or a system database",
    )
    volumes: dict[Slug, AbsolutePath] = Field(
        default_factory=dict,
        max_length=64,
        description="volume name -> folder on the worker host, inside an allowed root"
        " (CAIRN_VOLUME_ROOTS); never a system folder, the storage root or cairn's data folder",
    )
    databases: dict[Slug, NamedDatabaseUrl] = Field(
        default_factory=dict,
        max_length=16,
        description=f"name -> URL of a database beside the main one ({KNOWN}); the"
        " password is stored encrypted; the server must answer with these credentials when"
        " registered (docs/engines.md)",
    )
    hooks: LocalHooks | None = None


# --- kubernetes -----------------------------------------------------------------------------

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_LABEL_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"


def _dns_label(value: str) -> str:
    if len(value) > 63 or not re.fullmatch(_DNS_LABEL, value):
        raise ValueError(
            "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending"
            " with a letter or digit, at most 63 characters"
        )
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, value):
        raise ValueError(
            "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting"
            " and ending with a letter or digit, at most 253 characters"
        )
    return value


def _workload(value: str) -> str:
    kind, _, name = value.partition("/")
    if kind not in ("deployment", "statefulset"):
        raise ValueError("must be deployment/<name> or statefulset/<name>")
    _dns_subdomain(name)
    return value


DnsLabel = Annotated[str, StringConstraints(min_length=1), AfterValidator(_dns_label)]
"""A namespace's name."""
DnsSubdomain = Annotated[str, StringConstraints(min_length=1), AfterValidator(_dns_subdomain)]
"""The name of a PVC, Secret, workload or snapshot class."""
WorkloadName = Annotated[str, StringConstraints(max_length=300), AfterValidator(_workload)]
SecretKey = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
]
PgName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[^\x00-\x1f\x7f]+$")
]
KubeContext = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=r"^[^\x00-\x1f\x7f]+$")
]


def _valid_host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if len(value) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, value.lower()):
            raise ValueError("must be a host name or an IP address") from None
    return value


def _label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, prefix)):
        return False
    return len(name) <= 63 and re.fullmatch(_LABEL_NAME, name) is not None


def _label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and re.fullmatch(_LABEL_NAME, value) is not None)


_EXISTS = re.compile(r"\s*(!?)\s*([^\s!=(),]+)\s*")
_EQUALS = re.compile(r"\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*")
_SET = re.compile(r"\s*([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)\s*")


def _valid_selector(selector: str) -> str:
    """The label selector grammar of the API server (``kubectl get -l``): requirements
    joined by commas, each ``key``, ``!key``, ``key=value``, ``key==value``, ``key!=value``,
    ``key in (a,b)`` or ``key notin (a,b)``. Checked here so a typo is a 422 now, not a
    failed backup at night."""
    for requirement in re.split(r",(?![^()]*\))", selector):
        if m := _EXISTS.fullmatch(requirement):
            keys, values = [m[2]], []
        elif m := _EQUALS.fullmatch(requirement):
            keys, values = [m[1]], [m[3]]
        elif m := _SET.fullmatch(requirement):
            keys, values = [m[1]], [v.strip() for v in m[3].split(",")]
            if values == [""]:
                raise ValueError(f"{requirement.strip()!r}: the set of values is empty")
        else:
            raise ValueError(
                f"{requirement.strip()!r} is not key, !key, key=value, key!=value,"
                " key in (a,b) or key notin (a,b)"
            )
        if not all(_label_key(k) for k in keys):
            raise ValueError(f"{keys[0]!r} is not a valid label key")
        if bad := [v for v in values if not _label_value(v)]:
            raise ValueError(f"{bad[0]!r} is not a valid label value")
    return selector


LabelSelector = Annotated[
    str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_valid_selector)
]


class KubernetesWorkloads(Input):
    """What is scaled to zero while volumes are snapshotted or restored: names, or a selector."""

    names: list[WorkloadName] | None = Field(
        default=None, max_length=64, description="deployment/<name> or statefulset/<name>"
    )
    selector: LabelSelector | None = Field(
        default=None, description="label selector of the Deployments and StatefulSets"
    )

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        if (self.names is None) == (self.selector is None):
            raise ValueError("give either names or selector")
        if self.names is not None and len(set(self.names)) != len(self.names):
            raise ValueError("names must not repeat")
        return self

    def stored(self) -> dict[str, Any]:
        return {"names": self.names} if self.names is not None else {"selector": self.selector}


class SecretKeyRef(Input):
    name: DnsSubdomain
    key: SecretKey


class KubernetesDatabase(Input):
    """A PostgreSQL database reached from inside the cluster; its password stays there."""

    host: Annotated[
        str, StringConstraints(min_length=1, max_length=253), AfterValidator(_valid_host)
    ]
    port: StrictInt = Field(default=5432, ge=1, le=65535)
    dbname: PgName
    user: PgName
    password_secret: SecretKeyRef = Field(
        description="the Secret (in the application's namespace) and key holding the password;"
        " cairn never reads or stores the password itself"
    )


class KubernetesConfig(Input):
    """Which ConfigMaps and Secrets of the namespace a backup includes."""

    include: Literal["all", "none", "selector"] = "all"
    selector: LabelSelector | None = None

    @model_validator(mode="after")
    def _selector_when_asked(self) -> Self:
        if (self.include == "selector") != (self.selector is not None):
            raise ValueError("selector is given exactly when include is 'selector'")
        return self


class KubernetesPlatformIn(Input):
    kind: Literal["kubernetes"]
    namespace: DnsLabel
    context: KubeContext | None = Field(
        default=None, description="kubeconfig context of the cluster; empty: cairn's default"
    )
    workloads: KubernetesWorkloads = Field(
        default_factory=lambda: KubernetesWorkloads(names=[]),
        description="scaled to zero while volumes are snapshotted or restored",
    )
    volumes: dict[Slug, DnsSubdomain] = Field(
        default_factory=dict, max_length=64, description="volume name -> PVC name"
    )
    snapshot_class: DnsSubdomain | None = Field(
        default=None, description="VolumeSnapshotClass; empty: cairn's setting or the default"
    )
    database: KubernetesDatabase | None = None
    config: KubernetesConfig = Field(default_factory=KubernetesConfig)


PLATFORM_KINDS = ("local", "kubernetes")


def _untagged(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Errors of a platform's fields named as before there were two kinds.

    A tagged union puts the tag in each error's location (``platform.local.volumes``); the
    local kind's answers keep ``platform.volumes``, and a wrong or missing kind is named
    ``platform.kind``.
    """
    try:
        return handler(value)
    except ValidationError as exc:
        errors: list[InitErrorDetails] = []
        for err in exc.errors():
            loc = err["loc"]
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = ("kind",)
            elif loc and loc[0] in PLATFORM_KINDS:
                loc = loc[1:]
            errors.append(
                {
                    "type": PydanticCustomError(err["type"], err["msg"]),
                    "loc": loc,
                    "input": err["input"],
                }
            )
        raise ValidationError.from_exception_data(exc.title, errors) from None


PlatformIn = Annotated[
    LocalPlatformIn | KubernetesPlatformIn, Field(discriminator="kind"), WrapValidator(_untagged)
]


class ApplicationCreate(Input):
    name: Slug
    owner_id: uuid.UUID
    platform: PlatformIn


class NamedDatabaseOut(Output):
    engine: str = Field(description="mariadb or redis (from the URL's scheme)")
    url: str = Field(description="without the password")
    password_set: bool


class LocalPlatformOut(Output):
    kind: Literal["local"]
    database_url: str | None = Field(description="without the password")
    database_password_set: bool
    volumes: dict[str, str]
    databases: dict[str, NamedDatabaseOut] = Field(
        default_factory=dict, description="the named databases beside the main one"
    )
    hooks: dict[str, list[str] | None] | None = None


class KubernetesPlatformOut(Output):
    kind: Literal["kubernetes"]
    namespace: str
    context: str | None
    workloads: dict[str, Any] = Field(description="{names: [...]} or {selector: ...}")
    volumes: dict[str, str] = Field(description="volume name -> PVC name")
    snapshot_class: str | None
    database: dict[str, Any] | None = Field(
        description="host, port, dbname, user and the password's Secret key reference"
    )
    config: dict[str, Any]


class ApplicationRow(Output):
    """The application's own columns; its platform part is built from its kind's settings."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime


class ApplicationOut(ApplicationRow):
    platform: Annotated[LocalPlatformOut | KubernetesPlatformOut, Field(discriminator="kind")]
    overdue: bool = Field(
        default=False,
        description="no successful backup since its enabled policy's schedule owed one, past"
        " the grace (docs/alerts.md); false without a policy or while it is paused",
    )
    overdue_since: datetime | None = Field(
        default=None, description="when the missed run's grace ran out"
    )
    drill_overdue: bool = Field(
        default=False, description="the same for the enabled drill policy's restore drills"
    )
    drill_overdue_since: datetime | None = None
    offsite: OffsiteLagOut | None = Field(
        default=None, description="its offsite lag; null when its policy names no offsite target"
    )
