"""``cairn restores create --from-file``: a dump file sent to the API as it is read
(docs/restore-from-upload.md), with a progress bar on a terminal; never read whole into
memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from cli.client import Api, CliError, problem_error
from cli.output import transfer_bar

CHUNK = 1 << 20


def upload_dump(api: Api, app_id: str, path: Path, dump_format: str, confirm: str) -> Any:
    """Sends ``path`` to ``POST /applications/{app}/restores/from-upload``; the restore the
    API started."""
    size = path.stat().st_size
    with path.open("rb") as dump, transfer_bar() as bar:
        task = bar.add_task(f"uploading {path.name}", total=size)

        def chunks() -> Iterator[bytes]:
            while chunk := dump.read(CHUNK):
                bar.advance(task, len(chunk))
                yield chunk

        try:
            response = api.client.post(
                f"/applications/{app_id}/restores/from-upload",
                params={"format": dump_format, "confirm": confirm},
                content=chunks(),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                },
                timeout=httpx.Timeout(60, read=None),
            )
        except httpx.HTTPError as exc:
            raise CliError(f"the upload to {api.url} failed: {exc}") from None
    if response.is_error:
        raise problem_error(response)
    return response.json()
