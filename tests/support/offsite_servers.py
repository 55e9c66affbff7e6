"""restic REST servers for offsite tests: Debian's ``rclone serve restic``, run for real.

One folder is served twice, as a real offsite deployment does: append-only for cairn's
everyday credentials, and with deletes allowed (another port, another user) for the
maintenance credentials only offsite retention holds.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

RCLONE = "rclone"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RestServer:
    """``rclone serve restic`` over ``root`` on a fixed loopback port (kept across restarts)."""

    root: Path
    append_only: bool
    username: str
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}

    def start(self) -> None:
        argv = [RCLONE, "serve", "restic", str(self.root), "--addr", f"127.0.0.1:{self.port}"]
        argv += ["--user", self.username, "--pass", self.password]
        if self.append_only:
            argv.append("--append-only")
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    ended = self.process.returncode
                    raise RuntimeError(f"rclone serve restic ended ({ended})") from None
                time.sleep(0.1)
        raise RuntimeError("rclone serve restic did not listen within 20 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@dataclass
class OffsiteSite:
    """The two endpoints over one folder."""

    root: Path
    everyday: RestServer
    maintenance: RestServer

    @classmethod
    def started(cls, root: Path) -> OffsiteSite:
        root.mkdir(parents=True, exist_ok=True)
        site = cls(
            root,
            RestServer(root, append_only=True, username="cairn"),
            RestServer(root, append_only=False, username="maintenance"),
        )
        site.everyday.start()
        site.maintenance.start()
        return site

    def stop(self) -> None:
        self.everyday.stop()
        self.maintenance.stop()

    def target_body(self, name: str = "offsite", **extra: object) -> dict[str, object]:
        """What a workspace admin sends to add this site as a target."""
        return {
            "name": name,
            "kind": "rest",
            "url": self.everyday.url,
            "credentials": self.everyday.credentials,
            "maintenance_url": self.maintenance.url,
            "maintenance_credentials": self.maintenance.credentials,
            **extra,
        }
