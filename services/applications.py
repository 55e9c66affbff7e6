"""Registering an application: what is checked before it is stored (its folders and database
by identity, its namespace in its cluster, its owner and name), then the row, its sealed
password and the audit event together. The API only parses and presents."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes.client import ApiException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.engines.schemes import engine_for, split_url
from adapters.engines.stream import EngineError
from adapters.kubernetes.client import connect
from adapters.platform import PlatformError
from core import boundaries, crypto, secret_contexts
from core.settings import Settings
from db import audit
from db.models import Application, WorkspaceMember
from services import database_identity
from services.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)
# How long registration waits for the cluster to say whether a namespace exists.
NAMESPACE_CHECK_SECONDS = 5
# How long registration waits for a named database's server to answer, and for the server
# of another application's named database when it compares identities.
NAMED_PROBE_SECONDS = 15
OTHERS_PROBE_SECONDS = 3


def namespace_exists(settings: Settings, context: str | None, namespace: str) -> bool | None:
    """Whether the cluster (``context``, else the installation's) has the namespace; None
    when the cluster cannot be asked."""
    try:
        kube = connect(settings.kubeconfig, context or settings.kube_context)
    except PlatformError as exc:
        log.warning("namespace of a new application not checked: %s", exc)
        return None
    try:
        kube.core.read_namespace(namespace, _request_timeout=NAMESPACE_CHECK_SECONDS)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        log.warning("namespace of a new application not checked: %s", exc.reason)
        return None
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # unreachable: not checked
        log.warning("namespace of a new application not checked: %s", exc)
        return None
    finally:
        kube.api.close()  # type: ignore[no-untyped-call]


async def check_namespace(settings: Settings, context: str | None, namespace: str) -> None:
    """An unknown namespace is refused now (Invalid on ``platform.namespace``), when cairn can
    reach the cluster (a kubeconfig, or cairn running in the cluster); otherwise the first
    backup finds out."""
    if settings.kubeconfig is None and "KUBERNETES_SERVICE_HOST" not in os.environ:
        return
    if await asyncio.to_thread(namespace_exists, settings, context, namespace) is False:
        raise Invalid(
            [
                {
                    "loc": ("platform", "namespace"),
                    "msg": f"namespace {namespace} does not exist in the cluster",
                    "type": "unknown_namespace",
                }
            ]
        )


async def volumes_of_others(session: AsyncSession, application_id: uuid.UUID | None) -> list[str]:
    """The volume folders of every other local application, in every workspace."""
    query = select(Application.platform_settings).where(Application.platform_kind == "local")
    if application_id is not None:
        query = query.where(Application.id != application_id)
    rows = await session.scalars(query)
    return [str(path) for row in rows for path in (row.get("volumes") or {}).values()]


async def check_volumes_apart(
    session: AsyncSession, application: Application, names: list[str]
) -> None:
    """A local application's registered volumes ``names`` are still apart from every other
    volume, its own included (``BoundaryError``): asked again right before a restore writes,
    since a folder may have become a link or a mount since registration."""
    if application.platform_kind != "local":
        return
    folders = {k: str(v) for k, v in (application.platform_settings.get("volumes") or {}).items()}
    others = await volumes_of_others(session, application.id)
    for name in names:
        if name in folders:
            siblings = [path for other, path in folders.items() if other != name]
            boundaries.check_volumes_apart(folders[name], [*others, *siblings], f"volumes.{name}")


@dataclass(frozen=True)
class NewApplication:
    """What a platform administrator registers: the settings as stored, the password apart."""

    name: str
    owner_id: uuid.UUID
    kind: str
    settings: dict[str, Any]
    password: str | None = field(default=None, repr=False)
    # the named databases' passwords (``settings["databases"]`` holds their URLs without)
    passwords: dict[str, str] = field(default_factory=dict, repr=False)

    def secrets(self) -> dict[str, Any]:
        """What is sealed into ``platform_secrets``; empty: nothing to seal."""
        secrets: dict[str, Any] = {}
        if self.password is not None:
            secrets["database_password"] = self.password
        if self.passwords:
            secrets["database_passwords"] = self.passwords
        return secrets


async def _check_local(session: AsyncSession, settings: Settings, new: NewApplication) -> None:
    folders: dict[str, str] = new.settings.get("volumes") or {}
    for name, path in folders.items():
        boundaries.check_volume_path(path, settings, field=f"body.platform.volumes.{name}")
    others = await volumes_of_others(session, None)
    for name, path in folders.items():  # apart from every other volume, its own included
        siblings = [p for other, p in folders.items() if other != name]
        boundaries.check_volumes_apart(path, [*others, *siblings], f"body.platform.volumes.{name}")
    database = new.settings.get("database")
    if database:
        field_name = "body.platform.database_url"
        boundaries.check_application_database(database, settings, field=field_name)
        await database_identity.refuse_protected(database, new.password, settings, field_name)
    await check_named_databases(session, settings, new)


def named_settings(urls: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """What is stored of the named databases (engine, password-free URL, whether a password
    is set) and their passwords apart, to be sealed; Invalid on ``platform.databases.<name>``
    for a URL its engine refuses."""
    stored, passwords = {}, {}
    for name, url in urls.items():
        try:
            engine, safe, password = split_url(url)
        except ValueError as exc:
            raise _unusable(name, str(exc)) from None
        stored[name] = {"engine": engine.kind, "url": safe, "password_set": password is not None}
        if password is not None:
            passwords[name] = password
    return stored, passwords


def _unusable(name: str, why: str) -> Invalid:
    return Invalid(
        [
            {
                "loc": ("platform", "databases", name),
                "msg": f"database {name}: {why}",
                "type": "database_unusable",
            }
        ]
    )


async def _identity(url: str, password: str | None, seconds: float) -> str:
    return await asyncio.wait_for(
        asyncio.to_thread(engine_for(url).identity, url, password), seconds
    )


@dataclass(frozen=True)
class OtherNamed:
    """Another application's named database: where it is, its password, the identity
    recorded for it (None: registered before identities were recorded)."""

    url: str
    password: str | None = field(repr=False)
    identity: str | None


async def named_databases_of_others(
    session: AsyncSession, settings: Settings, but: uuid.UUID | None = None
) -> list[OtherNamed]:
    """Every named database of the local applications other than ``but``."""
    rows = await session.scalars(select(Application).where(Application.platform_kind == "local"))
    found = []
    for other in rows:
        databases = other.platform_settings.get("databases") or {}
        if not databases or other.id == but:
            continue
        try:
            secrets = crypto.open_json(
                other.platform_secrets or "",
                master_key=settings.master_key_text,
                context=secret_contexts.application_secrets(other.id),
            )
        except crypto.CryptoError:
            secrets = {}
        passwords = secrets.get("database_passwords") or {}
        found += [
            OtherNamed(d["url"], passwords.get(name), d.get("identity"))
            for name, d in databases.items()
        ]
    return found


async def _checked_identity(
    name: str,
    stored: dict[str, Any],
    password: str | None,
    siblings: dict[str, str],
    others: list[OtherNamed],
) -> str:
    """The identity of named database ``name`` as its server answers now, once it is known
    to be no sibling (identity -> name, this application's) and no other application's
    database (by the identity recorded for it, and by what its server answers now): Invalid
    on ``platform.databases.<name>`` saying why."""
    try:
        identity = await _identity(stored["url"], password, NAMED_PROBE_SECONDS)
    except (EngineError, TimeoutError) as exc:
        why = exc.message if isinstance(exc, EngineError) else "no answer in time"
        raise _unusable(name, why) from None
    if identity in siblings:
        raise _unusable(name, f"the same data as database {siblings[identity]}")
    for other in others:
        if engine_for(other.url).kind != stored["engine"]:
            continue
        theirs = other.identity
        if theirs != identity:
            try:
                theirs = await _identity(other.url, other.password, OTHERS_PROBE_SECONDS)
            except (EngineError, TimeoutError):
                continue
        if theirs == identity:
            raise _unusable(
                name, "another application's database (the same data, by its server's identity)"
            )
    return identity


async def check_named_databases(
    session: AsyncSession, settings: Settings, new: NewApplication
) -> None:
    """Each named database's server answers with its credentials, the database is neither
    missing nor one of the server's own, and it is no other named database (this
    application's or another's), by the server's own identity, which is recorded in its
    settings (``identity``): every write to it later asks the server again and compares
    (``adapters/engines/contract.py::check_identity``). Invalid on
    ``platform.databases.<name>`` saying why. cairn has no MariaDB or Redis of its own to
    refuse. Another application's server that does not answer is told apart by the identity
    recorded for it."""
    databases: dict[str, dict[str, Any]] = new.settings.get("databases") or {}
    if not databases:
        return
    others = await named_databases_of_others(session, settings)
    seen: dict[str, str] = {}
    for name, stored in databases.items():
        identity = await _checked_identity(name, stored, new.passwords.get(name), seen, others)
        seen[identity] = name
        stored["identity"] = identity


async def confirm_named_database(
    session: AsyncSession,
    settings: Settings,
    application: Application,
    name: str,
    actor: audit.Actor,
) -> bool:
    """Records what named database ``name``'s server answers as its identity now, after the
    checks of registration (a platform administrator's word that the server at its address,
    restarted or rebuilt, is still the application's); committed and audited. Whether the
    identity changed. NotFound for a database the application does not have, Conflict
    (``database-unconfirmed``) saying why the server cannot be confirmed."""
    databases = dict(application.platform_settings.get("databases") or {})
    if name not in databases or application.platform_kind != "local":
        raise NotFound("database", name)
    try:
        secrets = crypto.open_json(
            application.platform_secrets or "",
            master_key=settings.master_key_text,
            context=secret_contexts.application_secrets(application.id),
        )
    except crypto.CryptoError:
        secrets = {}
    password = (secrets.get("database_passwords") or {}).get(name)
    siblings = {
        str(d["identity"]): other
        for other, d in databases.items()
        if other != name and d.get("identity")
    }
    others = await named_databases_of_others(session, settings, but=application.id)
    stored = databases[name]
    try:
        identity = await _checked_identity(name, stored, password, siblings, others)
    except Invalid as exc:
        raise Conflict(exc.detail, "database-unconfirmed", "Database not confirmed") from None
    changed = bool(stored.get("identity") != identity)
    databases[name] = {**stored, "identity": identity}
    application.platform_settings = {**application.platform_settings, "databases": databases}
    audit.record(
        session,
        actor,
        "application.database_confirmed",
        "application",
        application.id,
        workspace_id=application.workspace_id,
        details={"database": name, "identity_changed": changed},
    )
    await session.commit()
    return changed


async def _check_kubernetes(settings: Settings, new: NewApplication) -> None:
    database = new.settings.get("database")
    if database:  # the same rule the mover applies before it writes to it
        boundaries.check_application_database(database, settings, field="body.platform.database")
    await check_namespace(settings, new.settings.get("context"), new.settings["namespace"])


async def register(
    session: AsyncSession,
    settings: Settings,
    workspace_id: uuid.UUID,
    new: NewApplication,
    actor: audit.Actor,
) -> Application:
    """Checks, stores and audits a new application; committed. Refusals: core.boundaries'
    BoundaryError, services.errors' Invalid and Conflict, core.crypto's CryptoError."""
    if new.kind == "local":
        await _check_local(session, settings, new)
    else:
        await _check_kubernetes(settings, new)
    if await session.get(WorkspaceMember, (workspace_id, new.owner_id)) is None:
        raise Invalid(
            [
                {
                    "loc": ("owner_id",),
                    "msg": f"user {new.owner_id} is not a member of this workspace; add it first",
                    "type": "not_a_member",
                }
            ]
        )
    if await session.scalar(
        select(Application.id).where(
            Application.workspace_id == workspace_id, Application.name == new.name
        )
    ):
        raise Conflict(f"an application named {new.name} already exists in this workspace")
    application = Application(
        workspace_id=workspace_id,
        owner_id=new.owner_id,
        name=new.name,
        platform_kind=new.kind,
        platform_settings=new.settings,
    )
    session.add(application)
    await session.flush()
    if secrets := new.secrets():
        application.platform_secrets = crypto.seal_json(
            secrets,
            master_key=settings.master_key_text,
            context=secret_contexts.application_secrets(application.id),
        )
    audit.record(
        session,
        actor,
        "application.create",
        "application",
        application.id,
        workspace_id=workspace_id,
        details={"name": new.name, "owner_id": str(new.owner_id), "kind": new.kind},
    )
    await session.commit()
    await session.refresh(application)
    return application
