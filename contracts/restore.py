"""What crosses the Temporal boundary in a restore run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.states import RunStatus


@dataclass
class RestorePlan:
    restore_id: str
    database: bool
    volumes: list[str]
    # the platform's configuration objects (Kubernetes ConfigMaps and Secrets); plans
    # recorded before restores had this part read as False
    config: bool = False
    # named databases (MariaDB, Redis); plans recorded before there were any read as none
    databases: list[str] = field(default_factory=list)


@dataclass
class VolumeJob:
    restore_id: str
    volume: str


@dataclass
class NamedDatabaseJob:
    restore_id: str
    database: str  # a named database (the main PostgreSQL one is restore_database's)


@dataclass
class FinishRestore:
    restore_id: str
    status: RunStatus  # succeeded, failed or cancelled
    message: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
