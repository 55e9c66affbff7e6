"""The one place cairn reads its configuration from (``CAIRN_*`` environment variables)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAIRN_", extra="ignore")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/cairn"
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    master_key: SecretStr | None = Field(
        default=None, description="base64 of 32 random bytes; wraps every stored secret"
    )
    storage_mount_root: Path = Path("/var/lib/cairn/storages")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_processes: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="uvicorn worker processes of `cairn api`; default one per core (a read"
        " spends its time in Python, which one process runs on one core at a time)",
    )
    worker_data_concurrency: int = Field(
        default_factory=lambda: min(16, 2 * (os.cpu_count() or 1)),
        ge=1,
        description="data steps one worker runs at once; default two per core (at most 16):"
        " a small run's step mostly waits for its restic or pg_dump child",
    )
    worker_shutdown_grace_seconds: float = 30.0
    restore_jobs: int = Field(
        default=1,
        ge=1,
        description="pg_restore jobs for a dump of 64 MiB or more; 1 streams `restic dump`"
        " into one transaction (measured as fast as plain pg_restore from a file); more"
        " stages the dump on local disk first, which pays off only with idle cores and many"
        " large tables and indexes (docs/performance.md)",
    )

    upload_max_bytes: int = Field(
        default=10 * 1024**3,
        ge=1,
        description="the largest dump an application owner may upload to restore from;"
        " a larger one is refused with 413 (docs/restore-from-upload.md)",
    )

    proxmox_host: str | None = None
    proxmox_port: int = 8006
    proxmox_token_id: str | None = None
    proxmox_token_secret: SecretStr | None = None
    proxmox_node: str = "pve"
    proxmox_verify: str = "true"
    proxmox_dir_root: str = "/mnt/pve"
    restic_bin: str = "restic"
    restic_cache_dir: Path | None = Field(
        default=None,
        description="restic's local cache of repository indexes (one folder per repository);"
        " empty: {data_dir}/restic-cache when data_dir is set, else restic's own (~/.cache)",
    )
    pg_bin_dir: Path | None = None
    failure_webhook_url: str | None = None
    public_url: str | None = Field(
        default=None,
        description="where people reach cairn's web UI (e.g. https://backups.example.com);"
        " links in notifications to a channel (docs/alerts.md); empty: no UI link",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        description="port of the worker's Prometheus endpoint (needs CAIRN_METRICS_TOKEN);"
        " empty: not served",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1",
        description="address the worker's metrics listen on; 0.0.0.0 for a scraper on another host",
    )
    usage_refresh_minutes: int = 5
    policy_min_interval_minutes: int = 15
    schedule_catchup_minutes: int = 60
    reconcile_minutes: int = 10
    run_reconcile_minutes: int = 3
    # a scheduled backup or drill is overdue when its run has not succeeded within its fire
    # time plus this grace: the fraction of the time until the next fire, clamped between the
    # minimum and the maximum (core/overdue.py, docs/alerts.md)
    overdue_grace_min_minutes: float = Field(default=60, ge=0)
    overdue_grace_fraction: float = Field(default=0.25, ge=0)
    overdue_grace_max_hours: float = Field(default=24, ge=0)
    # how often the failure webhook is told who became overdue or recovered
    overdue_notice_minutes: int = Field(default=5, ge=1)
    volume_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="folders application volumes may live in (':' or ',' separated); empty:"
        " {data_dir}/apps when data_dir is set, otherwise no volume is accepted",
    )
    data_dir: Path | None = Field(
        default=None, description="cairn's own data folder (cairn dev); never an app volume"
    )
    metadata_identity: str | None = Field(
        default=None,
        description="'<system identifier>:<database oid>' of cairn's metadata database, for"
        " processes that cannot reach it (mover Jobs); empty: asked of CAIRN_DATABASE_URL",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a Prometheus scraper sends to the API's /metrics and to"
        " the worker's metrics endpoint",
    )
    ui_session_hours: float = Field(
        default=8, gt=0, description="a web UI sign-in lasts this long, then asks for the token"
    )

    # Kubernetes applications (adapters/kubernetes/): how the worker reaches the cluster and
    # what the mover Jobs it starts there look like.
    kubeconfig: Path | None = Field(
        default=None,
        description="kubeconfig file of the cluster; empty: the in-cluster service account",
    )
    kube_context: str | None = Field(
        default=None, description="context of the kubeconfig to use; empty: its current one"
    )
    mover_image: str = Field(
        default="cairn:local",
        description="image of the mover Jobs; cairn's own image works (restic, PostgreSQL"
        " client and 'cairn mover')",
    )
    kube_snapshot_class: str | None = Field(
        default=None,
        description="VolumeSnapshotClass of the snapshots when the application names none;"
        " empty: the cluster's default class",
    )
    kube_namespace: str = Field(
        default="cairn",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="cairn's own namespace in the cluster: volume uploads run there (snapshot"
        " clones, temporary claims, their movers and run Secrets)",
    )
    kube_snapshot_timeout_seconds: float = Field(
        default=600, gt=0, description="how long a VolumeSnapshot may take to become ready"
    )
    kube_mover_timeout_seconds: float = Field(
        default=300,
        gt=0,
        description="how long a mover Job's pod may wait to start (image pull, volume mount)",
    )
    mover_run_as_user: int | None = Field(
        default=None,
        ge=0,
        description="user id mover pods run as (0 to read and restore files of any owner,"
        " with their ownership, which the restricted Pod Security profile refuses); empty: the"
        " image's own user, which must not be root",
    )
    mover_fs_group: int | None = Field(
        default=None,
        ge=0,
        description="group id of mover pods' volumes (fsGroup): the group of the repository's"
        " files when the backup storage is a claim; empty: none",
    )
    kube_mover_cpu_request: str = Field(
        default="250m",
        pattern=r"^[0-9]+(\.[0-9]+)?m?$",
        description="CPU a mover pod requests (a Kubernetes quantity)",
    )
    kube_mover_memory_request: str = Field(
        default="256Mi",
        pattern=r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?)?$",
        description="memory a mover pod requests (a Kubernetes quantity)",
    )
    kube_storage_volume: Annotated[dict[str, Any] | None, NoDecode] = Field(
        default=None,
        description="JSON of a pod volume source (nfs, persistentVolumeClaim) that"
        " holds what the worker sees at CAIRN_STORAGE_MOUNT_ROOT: mover Jobs reach the"
        " repositories through it",
    )

    @field_validator("volume_roots", mode="before")
    @classmethod
    def _split_volume_roots(cls, value: Any) -> Any:
        """``/srv/apps:/data/apps`` (or commas) from the environment; lists pass through."""
        if isinstance(value, str):
            return [part.strip() for part in value.replace(",", ":").split(":") if part.strip()]
        return value

    @field_validator("kube_storage_volume", mode="before")
    @classmethod
    def _parse_storage_volume(cls, value: Any) -> Any:
        """The environment gives JSON text; a dict passes through."""
        if isinstance(value, str):
            return json.loads(value) if value.strip() else None
        return value

    @property
    def master_key_text(self) -> str | None:
        return self.master_key.get_secret_value() if self.master_key else None

    @property
    def restic_cache(self) -> Path | None:
        if self.restic_cache_dir is not None:
            return self.restic_cache_dir
        return self.data_dir / "restic-cache" if self.data_dir is not None else None

    @property
    def proxmox_configured(self) -> bool:
        return bool(self.proxmox_host and self.proxmox_token_id and self.proxmox_token_secret)


@lru_cache
def get_settings() -> Settings:
    return Settings()
