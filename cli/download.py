"""``cairn backups download``: one part of a backup into a local file, resumable.

The command asks the API for a short-lived link (docs/downloads.md), then streams the link
into ``<output>.part`` and renames it when complete, so an interrupted download is never
taken for a whole one. Run again, it asks for a new link and resumes a database dump from
the bytes already on disk (an archive made as it is sent starts again).
"""

from __future__ import annotations

from pathlib import Path

import click
import httpx

from cli.client import Api, CliError, app_option, problem_error, with_api
from cli.output import note, transfer_bar

CHUNK = 1 << 20


def _fetch(url: str, part_file: Path, resume: bool) -> int:
    """Streams ``url`` into ``part_file`` (appending from its size when ``resume``); the
    bytes written."""
    start = part_file.stat().st_size if resume and part_file.exists() else 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    with httpx.stream("GET", url, headers=headers, timeout=60) as response:
        if response.status_code == 416 and start:
            note(f"{part_file.name} cannot be resumed ({_detail(response)}); starting again")
            return _fetch(url, part_file, resume=False)
        if response.is_error:
            response.read()
            raise problem_error(response)
        resumed = response.status_code == 206
        total = response.headers.get("Content-Length")
        size = int(total) + (start if resumed else 0) if total else None
        written = start if resumed else 0
        with part_file.open("ab" if resumed else "wb") as out, transfer_bar() as bar:
            task = bar.add_task(part_file.name, total=size, completed=written)
            for chunk in response.iter_bytes(CHUNK):
                out.write(chunk)
                written += len(chunk)
                bar.update(task, completed=written)
        if size is not None and written != size:
            raise CliError(f"the download ended after {written} of {size} bytes; run it again")
        return written


def _detail(response: httpx.Response) -> str:
    response.read()
    try:
        return str(response.json().get("detail"))
    except ValueError:
        return response.text


@click.command("download")
@app_option
@click.argument("backup_id")
@click.option(
    "--part",
    required=True,
    help="database, volume:<name> or config (as 'cairn backups get' lists the backup's parts)",
)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="the file to write; an interrupted download continues from <output>.part",
)
@click.option(
    "--compression",
    type=click.Choice(["none", "gzip", "zstd"]),
    help="default: gzip for a volume's tar archive, none for the rest",
)
@with_api
def download(
    api: Api, app_id: str, backup_id: str, part: str, output: Path, compression: str | None
) -> None:
    """Download one part of a backup: the database as a pg_dump custom-format file, a volume
    as a tar archive, the configuration as YAML."""
    if output.exists():
        raise CliError(f"{output} exists; remove it or choose another --output")
    body = {"part": part, **({"compression": compression} if compression else {})}
    link = api.post(f"/applications/{app_id}/backups/{backup_id}/downloads", body)
    part_file = output.with_name(output.name + ".part")
    if part_file.exists():
        note(f"resuming from {part_file} ({part_file.stat().st_size} bytes)")
    try:
        written = _fetch(link["url"], part_file, resume=True)
    except httpx.HTTPError as exc:
        raise CliError(f"the download was cut ({exc}); run the same command to resume") from None
    part_file.rename(output)
    note(f"{output}: {written} bytes")
