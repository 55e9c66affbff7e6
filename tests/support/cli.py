"""``cairn`` run as a user runs it, against a served API: no terminal, a token, and the
secrets a command reads from the environment (never from its options)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

CAIRN = str(Path(sys.executable).with_name("cairn"))


async def cairn(
    url: str, token: str, env: dict[str, str], *args: str, cwd: Path | None = None
) -> tuple[int, str, str]:
    """``cairn *args`` without a terminal; ``env`` carries the secrets; exit code, out, err."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    process = await asyncio.create_subprocess_exec(
        CAIRN,
        *args,
        cwd=cwd,
        env={**base, "CAIRN_API_URL": url, "CAIRN_TOKEN": token, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 300)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
