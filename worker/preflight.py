"""The worker's start-up check: the programs every backup and restore needs are runnable.

Without it a missing restic or PostgreSQL client is found by the first backup, hours
later, as a failed run; with it the worker refuses to start and says what to install or
which setting to fix.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

from adapters.pg_dump import DumpError, tool

PG_CLIENT_PROGRAMS: Final = ("pg_dump", "pg_restore", "psql")
_TIMEOUT_SECONDS: Final = 30


class PreflightError(Exception):
    """A required program is missing or broken; the message is one line an operator acts on."""


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _version(argv: list[str]) -> str:
    """The first line ``argv`` prints, or ``OSError``/``RuntimeError`` saying why not."""
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"no answer within {_TIMEOUT_SECONDS}s") from None
    if done.returncode != 0:
        why = _first_line(done.stderr) or _first_line(done.stdout) or "no output"
        raise RuntimeError(f"exit code {done.returncode}: {why}")
    line = _first_line(done.stdout)
    if not line:
        raise RuntimeError("printed no version")
    return line


def check_restic(binary: str) -> str:
    """``restic version``'s line, e.g. ``restic 0.16.4 compiled with go1.22 on linux/amd64``."""
    try:
        return _version([binary, "version"])
    except (OSError, RuntimeError) as exc:
        raise PreflightError(
            f"restic is not runnable as {binary!r} ({exc}); install restic or set "
            "CAIRN_RESTIC_BIN to its path"
        ) from None


def check_pg_client(bin_dir: Path | None) -> dict[str, str]:
    """``--version`` of each PostgreSQL client program the worker runs, found like the
    activities find them (``CAIRN_PG_BIN_DIR``, else PATH)."""
    where = f"in {bin_dir}" if bin_dir is not None else "on PATH"
    versions: dict[str, str] = {}
    for name in PG_CLIENT_PROGRAMS:
        try:
            path = tool(name, bin_dir)
        except DumpError as exc:
            raise PreflightError(
                f"{name} not found {where}; install the PostgreSQL client programs or set "
                "CAIRN_PG_BIN_DIR to the folder that holds them"
            ) from exc
        try:
            versions[name] = _version([path, "--version"])
        except (OSError, RuntimeError) as exc:
            raise PreflightError(
                f"{name} is not runnable as {path!r} ({exc}); install a working PostgreSQL "
                "client or set CAIRN_PG_BIN_DIR to the folder that holds one"
            ) from None
    return versions


def preflight(restic_bin: str, pg_bin_dir: Path | None) -> dict[str, str]:
    """Every required program's version line, by program name; ``PreflightError`` if one fails."""
    return {"restic": check_restic(restic_bin), **check_pg_client(pg_bin_dir)}
