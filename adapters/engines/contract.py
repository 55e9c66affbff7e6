"""What every engine of a named database gives a platform, in the same terms (docs/engines.md).

An application's named databases (``databases: {name: url}``) are reached by URL, the password
kept apart (sealed in the application's secrets). A platform asks ``schemes.engine_for`` for
the engine of a URL's scheme and calls only these methods, so a new engine is one module that
implements them (and its tests); the backup's manifest keeps what ``dump`` returns and hands
it back to ``restore`` and to verification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from adapters.engines.stream import EngineError
from adapters.restic import Progress, Repository, Restic

ProgressFn = Callable[[Progress], None]


class IdentityRefused(EngineError):
    """The server a named database's URL reaches now is not the one recorded at registration
    (another server at the address, another database, or the same one restarted or rebuilt):
    nothing is written to it. Never retried: only a platform administrator confirming the
    database again (``services/applications.py::confirm_named_database``) lets writes go."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"{where} is not the database registered: the server there answers with another"
            " identity than the one recorded (another server or database, or the registered one"
            " restarted or rebuilt; a platform administrator confirms it again); nothing was"
            " written to it",
            retryable=False,
        )


def check_identity(found: str, recorded: str, where: str) -> None:
    """The rule of every write to a named database's server: ``IdentityRefused`` unless the
    server answers now with the identity recorded at registration."""
    if found != recorded:
        raise IdentityRefused(where)


@dataclass(frozen=True)
class NamedDump:
    """A named database stored as one snapshot, with the figures a restore is verified
    against (rows per table, keys per logical database) and what its restore needs besides."""

    snapshot_id: str
    bytes_processed: int
    data_added: int
    figures: dict[str, int]
    server_version: str
    engine: str
    restore_with: dict[str, str] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        """What the manifest keeps of it (``BackedUp.of`` reads it back)."""
        return {
            "engine": self.engine,
            "figures": self.figures,
            "server_version": self.server_version,
            "restore_with": self.restore_with,
        }


@dataclass(frozen=True)
class BackedUp:
    """A named database's part as the manifest recorded it."""

    figures: dict[str, int]
    restore_with: dict[str, str]

    @classmethod
    def of(cls, details: dict[str, Any]) -> BackedUp:
        return cls(
            {k: int(v) for k, v in (details.get("figures") or {}).items()},
            dict(details.get("restore_with") or {}),
        )


class Engine(Protocol):
    """One engine (MariaDB/MySQL, Redis); ``url`` is password-free, ``password`` apart."""

    kind: str
    schemes: tuple[str, ...]

    def check_url(self, url: str) -> None:
        """``EngineError`` (not retryable) saying what is wrong with the URL."""
        ...

    def identity(self, url: str, password: str | None) -> str:
        """Connects (reachable, credentials right, the database neither missing nor one of
        the server's own: ``EngineError`` otherwise) and returns what the server says the
        data is: equal for two URLs that reach the same data, whatever their addresses.
        Recorded at registration; every write compares the server's answer with it."""
        ...

    def dump(
        self,
        url: str,
        password: str | None,
        restic: Restic,
        repo: Repository,
        tags: list[str],
        progress: ProgressFn,
    ) -> NamedDump:
        """A consistent dump into one new snapshot, its figures from the same snapshot."""
        ...

    def restore(
        self,
        url: str,
        password: str | None,
        restic: Restic,
        repo: Repository,
        snapshot_id: str,
        backed_up: BackedUp,
        run_id: str,
        identity: str,
    ) -> str:
        """Replaces the live data with the backup's, proven beside it first; a note. The
        server is asked for its identity right before each write (a staging copy, the swap,
        replication) and must answer ``identity``, the one recorded at registration
        (``check_identity``): ``IdentityRefused`` otherwise, nothing written."""
        ...

    def drill(
        self,
        url: str,
        password: str | None,
        restic: Restic,
        repo: Repository,
        snapshot_id: str,
        backed_up: BackedUp,
        drill_id: str,
        identity: str,
    ) -> dict[str, int]:
        """The backup loaded into a scratch copy named for ``drill_id``, never into the live
        data, and measured there (in the terms of ``NamedDump.figures``); the scratch copy is
        removed in every outcome. A scratch copy on the application's server is made only
        after the server answered ``identity`` (``check_identity``)."""
        ...

    def remove_drill(self, url: str, password: str | None, drill_id: str, identity: str) -> None:
        """Removes what drill ``drill_id`` left when it ended without its own removal (a
        worker killed mid-step); nothing on a server that does not answer ``identity``."""
        ...

    def size_bytes(self, url: str, password: str | None) -> int:
        """About how many bytes a dump reads (the quota check of a first backup)."""
        ...

    def measure(self, url: str, password: str | None) -> dict[str, int]:
        """The live figures, in the terms of ``NamedDump.figures``."""
        ...

    def differences(self, found: dict[str, int], backed_up: dict[str, int]) -> list[str]:
        """How ``found`` (measured after a restore) falls short of the backup's figures."""
        ...
