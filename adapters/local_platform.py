"""Applications of kind ``local``: a PostgreSQL database and folders on the worker host."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from adapters.pg_dump import PgTarget
from adapters.platform import PointInTime


class LocalPlatform:
    kind = "local"

    def __init__(self, settings: dict[str, Any], secrets: dict[str, Any]) -> None:
        self.settings = settings
        self.secrets = secrets

    def database(self) -> PgTarget | None:
        db = self.settings.get("database")
        if not db:
            return None
        return PgTarget(
            host=db["host"],
            port=int(db["port"]),
            user=db.get("user"),
            dbname=db["dbname"],
            password=self.secrets.get("database_password"),
        )

    def volume_names(self) -> list[str]:
        return sorted(self.settings.get("volumes", {}))

    def snapshot(self, execution_id: str, volumes: list[str]) -> PointInTime:
        """Plain folders have no point-in-time copy: the upload reads them live, and says so."""
        folders = self.settings.get("volumes", {})
        missing = [name for name in volumes if not Path(folders[name]).is_dir()]
        if missing:
            raise FileNotFoundError(
                "volume folder(s) missing on the worker host: "
                + ", ".join(f"{name} ({folders[name]})" for name in missing)
            )
        return PointInTime(
            consistent=False,
            note="the local platform has no point-in-time snapshot for folders; files were read"
            " live, so a file changed during the upload may be captured mid-write",
            volumes={name: folders[name] for name in volumes},
        )

    def release(self, execution_id: str) -> None:
        """Nothing to release: no snapshot was made."""

    def quiesce(self) -> str:
        """Stops the application's writes with its configured stop command, if it has one."""
        return self._hook("stop")

    def resume(self) -> str:
        return self._hook("start")

    def _hook(self, name: str) -> str:
        argv = (self.settings.get("hooks") or {}).get(name)
        if not argv:
            past = {"stop": "stopped", "start": "started"}[name]
            return f"no {name} command configured; the application was not {past}"
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{name} command {argv[0]} exited with {done.returncode}: {done.stderr[-500:]}"
            )
        return f"ran the {name} command {argv[0]}"
