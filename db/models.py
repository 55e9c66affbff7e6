"""SQLAlchemy models of cairn's tables; the schema itself is owned by ``migrations/``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.states import LIVE, BackupType, CopyStatus, RunStatus, StorageStatus, Trigger


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _updated() -> Mapped[datetime]:
    return mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB}


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _uuid_pk()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    is_platform_admin: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = _created()


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Workspace(Base):
    __tablename__ = "workspaces"
    __table_args__ = (
        CheckConstraint("plan IN ('free', 'pro', 'dedicated')", name="workspaces_plan"),
        CheckConstraint("backup_quota_gb >= 0", name="workspaces_quota_nonneg"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(255), unique=True)
    plan: Mapped[str] = mapped_column(String(50), server_default="free")
    backup_quota_gb: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class WorkspaceMember(Base):
    __tablename__ = "workspace_members"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'member')", name="workspace_members_role"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = _created()


class Application(Base):
    __tablename__ = "applications"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint(
            "platform_kind IN ('local', 'kubernetes')", name="applications_platform_kind"
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(255))
    platform_kind: Mapped[str] = mapped_column(String(50))
    platform_settings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    platform_secrets: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[uuid.UUID] = _uuid_pk()
    occurred_at: Mapped[datetime] = _created()
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    actor: Mapped[str] = mapped_column(String(320))
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str] = mapped_column(String(50))
    target_id: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))


class BackupStorage(Base):
    __tablename__ = "backup_storages"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint("type IN ('nfs', 'ceph', 'local')", name="backup_storages_type"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(50))
    proxmox_storage_id: Mapped[str] = mapped_column(String(255), unique=True)
    capacity_gb: Mapped[int] = mapped_column(Integer)
    used_gb: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    # cairn's own bytes (its repositories); the file system's figures are the filesystem_*
    # columns and available_bytes, read from PVE (migration 0005)
    used_bytes: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    available_bytes: Mapped[int | None] = mapped_column(BigInteger)
    filesystem_total_bytes: Mapped[int | None] = mapped_column(BigInteger)
    filesystem_used_bytes: Mapped[int | None] = mapped_column(BigInteger)
    usage_read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str | None] = mapped_column(String(50), server_default=StorageStatus.PENDING)
    status_message: Mapped[str | None] = mapped_column(Text)
    connection_config: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    connection_secrets: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = _created()
    updated_at: Mapped[datetime | None] = _updated()


class BackupPolicy(Base):
    __tablename__ = "backup_policies"
    __table_args__ = (
        UniqueConstraint("application_id"),
        CheckConstraint(
            "backup_type IN ('full', 'incremental')", name="backup_policies_backup_type"
        ),
        CheckConstraint(
            "archive_window_days BETWEEN 1 AND 35", name="backup_policies_archive_window_days"
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    application_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE")
    )
    storage_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("backup_storages.id"))
    enabled: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    schedule: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    retention_days: Mapped[int | None] = mapped_column(Integer, server_default=text("30"))
    # GFS counts, restic's --keep-* (migration 0007); 0 is off
    keep_last: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    keep_daily: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    keep_weekly: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    keep_monthly: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    keep_yearly: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    backup_type: Mapped[str | None] = mapped_column(String(50), server_default=BackupType.FULL)
    include_volumes: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    include_database: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    # where every successful backup is copied too (migration 0012); None: no offsite copy
    offsite_target_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("offsite_targets.id"))
    # the application's archiver runs while on (migration 0013, docs/pitr.md)
    continuous_archiving: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    archive_window_days: Mapped[int] = mapped_column(Integer, server_default=text("7"))
    created_at: Mapped[datetime | None] = _created()
    updated_at: Mapped[datetime | None] = _updated()


class BackupExecution(Base):
    __tablename__ = "backup_executions"
    __table_args__ = (
        CheckConstraint("trigger IN ('manual', 'schedule')", name="backup_executions_trigger"),
        UniqueConstraint("application_id", "idempotency_key"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    # The history outlives the policy: a deleted policy leaves its backups listed and restorable.
    policy_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("backup_policies.id", ondelete="SET NULL"), index=True
    )
    application_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    storage_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("backup_storages.id", ondelete="SET NULL")
    )
    workflow_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    run_id: Mapped[str | None] = mapped_column(String(255))
    trigger: Mapped[str] = mapped_column(String(20), server_default=Trigger.MANUAL)
    schedule_id: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(50), server_default=RunStatus.RUNNING)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    backup_path: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error_message: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    created_at: Mapped[datetime | None] = _created()
    # retention never prunes a protected backup (migration 0007)
    protected: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    protected_by: Mapped[str | None] = mapped_column(String(320))
    protected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BackupRestore(Base):
    __tablename__ = "backup_restores"
    __table_args__ = (
        CheckConstraint(
            "restore_type IN ('full', 'selective')", name="backup_restores_restore_type"
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    # None: a restore to a moment, from the WAL archive (migration 0016, docs/pitr.md)
    backup_execution_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("backup_executions.id", ondelete="CASCADE")
    )
    application_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE")
    )
    workflow_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    run_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(50), server_default=RunStatus.PENDING)
    restore_type: Mapped[str] = mapped_column(String(50))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = _created()


class RestoreDrillPolicy(Base):
    """A backup policy's drill schedule (in the policy's time zone) and SQL checks (0006), and
    what its drills restore (0020) and read it from (0021)."""

    __tablename__ = "restore_drill_policies"
    __table_args__ = (
        CheckConstraint(
            "target_time IN ('latest', 'random')", name="restore_drill_policies_target_time"
        ),
        CheckConstraint(
            "source = 'offsite' OR source ~"
            " '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'",
            name="restore_drill_policies_source",
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    policy_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("backup_policies.id", ondelete="CASCADE"), unique=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    schedule: Mapped[str] = mapped_column(String(100))
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'"))
    target_time: Mapped[str | None] = mapped_column(String(10))
    """Scheduled drills recover this moment of the WAL archive (``latest``, ``random``)
    instead of restoring the newest backup; None: the backup (0020)."""
    source: Mapped[str | None] = mapped_column(String(36))
    """Scheduled drills read the newest backup with a finished offsite copy (``offsite``: at
    any target; a target's id: there) instead of the primary storage; None: the primary
    (0021). Not a foreign key: ``services/offsite_targets.py::delete`` refuses a named one."""
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class RestoreDrill(Base):
    """One drill: a backup restored into scratch copies, verified, checked, then removed."""

    __tablename__ = "restore_drills"
    __table_args__ = (
        CheckConstraint("trigger IN ('manual', 'schedule')", name="restore_drills_trigger"),
        CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')",
            name="restore_drills_status",
        ),
        UniqueConstraint("application_id", "idempotency_key"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    application_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    # the drill's record outlives the backup it proved
    backup_execution_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("backup_executions.id", ondelete="SET NULL"), index=True
    )
    workflow_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    run_id: Mapped[str | None] = mapped_column(String(255))
    trigger: Mapped[str] = mapped_column(String(20), server_default=Trigger.MANUAL)
    schedule_id: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(50), server_default=RunStatus.PENDING)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recovery_seconds: Mapped[float | None] = mapped_column()
    bytes_restored: Mapped[int | None] = mapped_column(BigInteger)
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    error_message: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created()


class StorageUsageSample(Base):
    """One reading of a storage's usage, kept for the usage chart.

    ``used_bytes`` is cairn's own (its repositories); ``total_bytes``, ``available_bytes`` and
    ``filesystem_used_bytes`` are the file system's, as PVE reports them.
    """

    __tablename__ = "storage_usage_samples"

    id: Mapped[uuid.UUID] = _uuid_pk()
    storage_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("backup_storages.id", ondelete="CASCADE"), index=True
    )
    sampled_at: Mapped[datetime] = _created()
    active: Mapped[bool] = mapped_column(Boolean)
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger)
    available_bytes: Mapped[int] = mapped_column(BigInteger)
    filesystem_used_bytes: Mapped[int] = mapped_column(BigInteger)


class BackupRepository(Base):
    """The restic repository of one application in one storage; its password only sealed."""

    __tablename__ = "backup_repositories"
    __table_args__ = (UniqueConstraint("application_id", "storage_id"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    application_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE")
    )
    storage_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("backup_storages.id", ondelete="CASCADE")
    )
    path: Mapped[str] = mapped_column(Text)
    password_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class UiSession(Base):
    """A web UI sign-in: only the SHA-256 of the cookie's session id is stored (migration 0008).

    It ends at ``expires_at``, at sign-out, or when the API token it was made from is revoked.
    """

    __tablename__ = "ui_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OffsiteTarget(Base):
    """A workspace's offsite location (migration 0012): everyday credentials can only append;
    the maintenance ones, sealed apart, serve the offsite retention alone."""

    __tablename__ = "offsite_targets"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint("kind IN ('rest', 's3')", name="offsite_targets_kind"),
        CheckConstraint("protection_days >= 1", name="offsite_targets_protection"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))
    location: Mapped[dict[str, Any]] = mapped_column(JSONB)
    credentials_sealed: Mapped[str] = mapped_column(Text)
    maintenance_sealed: Mapped[str | None] = mapped_column(Text)
    protection_days: Mapped[int] = mapped_column(Integer, server_default=text("14"))
    upload_limit_kib: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class OffsiteRepository(Base):
    """The sealed password of one application's repository at one offsite target."""

    __tablename__ = "offsite_repositories"

    application_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), primary_key=True
    )
    target_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("offsite_targets.id", ondelete="CASCADE"), primary_key=True
    )
    password_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class BackupCopy(Base):
    """Where a backup was copied besides its primary storage, and how that copy stands."""

    __tablename__ = "backup_copies"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'copied', 'failed', 'expired')", name="backup_copies_status"
        ),
    )

    execution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("backup_executions.id", ondelete="CASCADE"), primary_key=True
    )
    target_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("offsite_targets.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(20), server_default=CopyStatus.PENDING)
    workflow_id: Mapped[str | None] = mapped_column(String(255))
    copied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error_message: Mapped[str | None] = mapped_column(Text)
    snapshot_ids: Mapped[list[str] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class BackupDownload(Base):
    """A short-lived link to one part of one backup (migration 0017, docs/downloads.md); the
    link's secret is never stored, only its SHA-256."""

    __tablename__ = "backup_downloads"
    __table_args__ = (
        CheckConstraint(
            "compression IN ('none', 'gzip', 'zstd')", name="backup_downloads_compression"
        ),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    application_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    backup_execution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("backup_executions.id", ondelete="CASCADE")
    )
    part: Mapped[str] = mapped_column(String(300))
    compression: Mapped[str] = mapped_column(String(20))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    uses: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Keyset pages and running-run checks (migration 0009): a page reads only its own rows.
for _model, _owner, _at, _id in (
    (BackupExecution, "application_id", "created_at", "id"),
    (BackupRestore, "application_id", "created_at", "id"),
    (Application, "workspace_id", "created_at", "id"),
    (BackupStorage, "workspace_id", "created_at", "id"),
    (WorkspaceMember, "workspace_id", "created_at", "user_id"),
    (AuditEvent, "workspace_id", "occurred_at", "id"),
):
    Index(
        f"ix_{_model.__tablename__}_page",
        getattr(_model, _owner),
        getattr(_model, _at).desc(),
        getattr(_model, _id).desc(),
    )
Index("ix_users_page", User.created_at.desc(), User.id.desc())
Index("ix_workspaces_page", Workspace.created_at.desc(), Workspace.id.desc())
Index(
    "ix_backup_executions_running",
    BackupExecution.application_id,
    postgresql_where=BackupExecution.status == RunStatus.RUNNING,
)
Index(
    "ix_backup_restores_running",
    BackupRestore.application_id,
    postgresql_where=BackupRestore.status.in_(LIVE),
)


class NotificationChannel(Base):
    """Where a workspace is told about its runs (migration 0019, docs/alerts.md): a signed
    webhook, a Slack incoming webhook or e-mail; the secret (HMAC key, Slack URL, SMTP
    password) sealed, opened only by the sending step."""

    __tablename__ = "notification_channels"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint("kind IN ('webhook', 'slack', 'email')", name="notification_channels_kind"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))
    target: Mapped[dict[str, Any]] = mapped_column(JSONB)
    secret_sealed: Mapped[str | None] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSONB)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    last_delivery_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_delivery_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
